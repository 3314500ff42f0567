"""Generate a deterministic Fruits-360-like image tree: ``OUT/<label>/<n>_100.jpg``.

    python -m tools.sample_images --out sample-images --count 240 [--labels 8] [--seed 0]

Each image is a 100x100 JPEG of a fruit-like shape (body, highlight, stem) on white, with a per-image
variation in size, position, tilt and shade, so that labels differ and images within a label do too.
The same arguments always give the same bytes; no data is downloaded.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

IMAGE_SIZE = 100
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Fruit:
    """How one label looks: a colour and an ellipse's width and height as fractions of the image."""

    label: str
    colour: tuple[int, int, int]
    width: float
    height: float


FRUITS = (
    Fruit("Apple Red 1", (190, 30, 45), 0.70, 0.66),
    Fruit("Banana", (235, 205, 55), 0.86, 0.34),
    Fruit("Blueberry", (55, 65, 140), 0.40, 0.40),
    Fruit("Kiwi", (125, 95, 55), 0.62, 0.50),
    Fruit("Lemon", (245, 225, 70), 0.66, 0.50),
    Fruit("Orange", (245, 145, 30), 0.72, 0.72),
    Fruit("Pear 2", (165, 195, 75), 0.52, 0.76),
    Fruit("Strawberry", (215, 35, 60), 0.54, 0.62),
    Fruit("Plum", (95, 40, 95), 0.56, 0.56),
    Fruit("Lime", (110, 175, 60), 0.56, 0.50),
    Fruit("Apricot", (240, 170, 90), 0.58, 0.56),
    Fruit("Grape White", (200, 215, 130), 0.34, 0.36),
)


def draw_fruit(fruit: Fruit, rng: np.random.Generator) -> Image.Image:
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), WHITE)
    draw = ImageDraw.Draw(image)
    scale = rng.uniform(0.85, 1.1)
    width, height = fruit.width * IMAGE_SIZE * scale, fruit.height * IMAGE_SIZE * scale
    cx, cy = IMAGE_SIZE / 2 + rng.uniform(-6, 6), IMAGE_SIZE / 2 + rng.uniform(-6, 6)
    shade = rng.uniform(0.8, 1.1)
    colour = tuple(int(min(255, channel * shade)) for channel in fruit.colour)
    draw.ellipse([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], fill=colour)
    highlight = tuple(int(channel + (255 - channel) * 0.45) for channel in colour)
    hx, hy = cx - width / 5, cy - height / 5
    draw.ellipse([hx - width / 8, hy - height / 10, hx + width / 8, hy + height / 10], fill=highlight)
    stem_top = cy - height / 2
    draw.line([(cx, stem_top), (cx + rng.uniform(-4, 4), stem_top - 7)], fill=(95, 60, 25), width=3)
    tilt = rng.uniform(-25, 25)
    return image.rotate(tilt, resample=Image.Resampling.BICUBIC, fillcolor=WHITE)


def generate(out_dir: Path, count: int, n_labels: int = 8, seed: int = 0) -> list[Path]:
    """Write ``count`` images spread evenly over the first ``n_labels`` fruits; returns their paths."""
    if not 1 <= n_labels <= len(FRUITS):
        raise ValueError(f"n_labels must be 1 to {len(FRUITS)}, got {n_labels}")
    fruits = FRUITS[:n_labels]
    written = []
    for index in range(count):
        fruit = fruits[index % n_labels]
        number = index // n_labels
        rng = np.random.default_rng([seed, FRUITS.index(fruit), number])
        path = out_dir / fruit.label / f"{number}_100.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        draw_fruit(fruit, rng).save(path, format="JPEG", quality=92)
        written.append(path)
        if (index + 1) % 1000 == 0:
            log.info("%d/%d images", index + 1, count)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--count", type=int, default=240, help="number of images (default 240)")
    parser.add_argument("--labels", type=int, default=8, help=f"number of labels, 1 to {len(FRUITS)} (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.count < 1:
        parser.error("--count must be at least 1")
    if not 1 <= args.labels <= len(FRUITS):
        parser.error(f"--labels must be 1 to {len(FRUITS)}")
    paths = generate(args.out, args.count, args.labels, args.seed)
    print(f"{len(paths)} images over {min(args.labels, args.count)} labels in {args.out}/")


if __name__ == "__main__":
    main()
