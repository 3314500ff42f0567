"""Which files are input images, what label each carries, and how one becomes a model input.

Decoding is pure Python (PIL + numpy) so the same function runs on the driver in tests and inside
the pandas UDF on executors.
"""

from __future__ import annotations

import io
import posixpath
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from fruits_contract import is_hidden_name, is_image_name

# Larger files are rejected without being read: Spark's binary reader cannot hold > 2 GB in one row.
MAX_FILE_BYTES = 256 * 1024 * 1024
# A decompression-bomb guard well above any photo (a 100-megapixel camera is 1e8).
MAX_PIXELS = 250_000_000
WHITE = (255, 255, 255)
# MobileNetV2's input scaling, x / 127.5 - 1, for each of the 256 byte values: looking the pixels up
# gives the very same float32 values as the arithmetic, at a fifth of its cost (two passes and two
# 600 kB temporaries per 224x224 image were 0.4 ms, half of the whole decode).
_MODEL_RANGE = np.arange(256, dtype=np.float32) / 127.5 - 1.0

ImageFile.LOAD_TRUNCATED_IMAGES = False
# PIL's own guard (89 Mpx) would refuse large photos that the draft decode below handles well.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageRejectedError(Exception):
    """An input file that cannot become features; the message is the reject reason."""


@dataclass(frozen=True)
class Listing:
    """The input files under a source folder, split into what is worth reading and what is not.

    :param to_read: paths of image files Spark can read.
    :param rejected: ``path -> reason`` for image files rejected from their listing alone.
    :param labels: ``path -> label`` for every image file, read or rejected.
    :param versions: ``path -> (size, modification time in ms)`` for every image file: what identifies
        the content features were computed from.
    """

    to_read: list[str]
    rejected: dict[str, str]
    labels: dict[str, str]
    versions: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def n_inputs(self) -> int:
        return len(self.labels)


def is_image_path(path: str) -> bool:
    return is_image_name(path)


def label_of(path: str) -> str:
    """The Fruits-360 label: the name of the folder that holds the image."""
    return posixpath.basename(posixpath.dirname(path))


def reject_reason_from_listing(path: str, size: int) -> str | None:
    """Why a file is rejected before reading it, or None when it must be decoded to tell."""
    name = posixpath.basename(path)
    if size == 0:
        return "empty file (0 bytes)"
    if size > MAX_FILE_BYTES:
        return f"file too large ({size} bytes > {MAX_FILE_BYTES})"
    if is_hidden_name(name):
        return "hidden file name (starts with '_' or '.'), which Spark does not read; rename it"
    return None


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB on the white background of Fruits-360, whatever the source mode (L, CMYK, RGBA, P, I;16)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I;16") or image.mode == "I":
        scaled = np.asarray(image, dtype=np.float64) * (255.0 / 65535.0)
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def decode_image(content: bytes, image_size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Decode image bytes to a ``(size, size, 3)`` float32 array scaled for MobileNetV2, in [-1, 1].

    :param out: a float32 array of that shape to decode into, reused from image to image by the
        featurizer: a fresh 600 kB array per image costs ~150 page faults, as much as the decoding.
    :raises ImageRejectedError: for bytes that are not a complete image; the message is the reason.
    """
    if not content:
        raise ImageRejectedError("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(content))
        # JPEG decodes straight to a smaller scale: big photos cost little time and memory.
        image.draft("RGB", (image_size, image_size))
        image.load()
    except Image.DecompressionBombError as error:
        raise ImageRejectedError(f"image too large ({error})") from None
    except UnidentifiedImageError:
        raise ImageRejectedError("not an image (unknown or unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejectedError(f"truncated or corrupt image ({error})") from None
    rgb = _to_rgb(image).resize((image_size, image_size), Image.Resampling.BILINEAR)
    # mode="clip" (a no-op: bytes are valid indices) lets numpy write straight into `out`.
    return _MODEL_RANGE.take(np.asarray(rgb), out=out, mode="clip")
