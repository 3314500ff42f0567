"""Fixtures for the Spark job tests: one local SparkSession, generated images, a compiled model."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image
from pyspark.sql import SparkSession

from fruits_spark.model import CompiledModel, build_keras_model, imagenet_weights_file, randomize_weights
from fruits_spark.model_cache import default_cache_dir, load_or_compile
from fruits_spark.session import configure
from tools.sample_images import generate

if TYPE_CHECKING:  # Keras imports TensorFlow (7 s): only the tests that build a Keras model pay for it.
    import keras

TEST_IMAGE_SIZE = 96
GOOD_IMAGES = 24


@pytest.fixture(scope="session")
def spark() -> SparkSession:
    # PySpark starts its Python workers with $PYSPARK_PYTHON, else whatever `python3` is on PATH.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    session = configure(builder, "fruits-tests").getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    # py4j logs from __del__ at interpreter exit, after pytest has closed the streams.
    logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def spark_submit(spark_submit_executable: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run a script with the venv's spark-submit on local[2], without the tests' PYTHONPATH."""

    def run(script: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        command = [str(spark_submit_executable), "--master", "local[2]"]
        base_env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        return subprocess.run(
            [*command, str(script), *args], env={**base_env, **(env or {})}, capture_output=True, text=True, timeout=600
        )

    return run


@pytest.fixture(scope="session")
def image_size() -> int:
    """A small model input keeps the tests quick; the code is the same at 224."""
    return TEST_IMAGE_SIZE


@pytest.fixture(scope="session")
def random_model(image_size: int) -> CompiledModel:
    """Through the session's model cache, so that spark-submit runs of the same model find it there."""
    model, _ = load_or_compile("none", image_size, default_cache_dir())
    return model


@pytest.fixture(scope="session")
def keras_cache(tmp_path_factory: pytest.TempPathFactory, image_size: int) -> tuple[Path, keras.Model]:
    """A Keras home whose cache holds 'ImageNet' weights made here (nothing can be downloaded), and
    the model they came from. Keras reads ``KERAS_HOME`` once, so only new processes can use it."""
    home = tmp_path_factory.mktemp("keras-home")
    model = build_keras_model("none", image_size)
    randomize_weights(model, seed=5)
    cached = imagenet_weights_file(image_size, keras_home=home)
    cached.parent.mkdir(parents=True)
    legacy_h5 = home / "legacy.h5"
    model.save(legacy_h5)
    legacy_h5.rename(cached)
    return home, model


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def write_odd_images(root: Path) -> dict[str, Path]:
    """Valid images in unusual shapes: each must be converted and featurized."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)
    odd = {
        "grayscale": root / "Kiwi" / "gray.jpg",
        "cmyk": root / "Kiwi" / "cmyk.jpeg",
        "rgba_png": root / "Lemon" / "alpha.png",
        "palette_png": root / "Lemon" / "palette.PNG",
        "large": root / "Banana" / "large.jpg",
        "upper_case": root / "Banana" / "UPPER.JPG",
        "nested": root / "Banana" / "more" / "Apple Red 1" / "deep.jpg",
    }
    for path in odd.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert("L").save(odd["grayscale"])
    Image.fromarray(pixels).convert("CMYK").save(odd["cmyk"], format="JPEG")
    rgba = Image.fromarray(pixels).convert("RGBA")
    rgba.putalpha(Image.fromarray((pixels[:, :, 0] > 128).astype(np.uint8) * 255))
    rgba.save(odd["rgba_png"])
    Image.fromarray(pixels).convert("P").save(odd["palette_png"])
    Image.fromarray(np.tile(pixels, (40, 60, 1))).save(odd["large"], quality=80)
    odd["upper_case"].write_bytes(_jpeg(Image.fromarray(pixels)))
    odd["nested"].write_bytes(_jpeg(Image.fromarray(pixels)))
    return odd


def write_bad_files(root: Path) -> dict[str, Path]:
    """Files with an image extension that cannot become features, keyed by what is wrong."""
    good = _jpeg(Image.new("RGB", (100, 100), (200, 30, 40)))
    bad = {
        "empty": root / "Kiwi" / "empty.jpg",
        "truncated": root / "Kiwi" / "truncated.jpg",
        "not_an_image": root / "Orange" / "notes.png",
        "hidden": root / "Orange" / "_hidden.jpg",
    }
    for path in bad.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    bad["empty"].write_bytes(b"")
    bad["truncated"].write_bytes(good[: len(good) // 2])
    bad["not_an_image"].write_text("not a picture\n")
    bad["hidden"].write_bytes(good)
    return bad


@pytest.fixture(scope="session")
def image_tree(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A Fruits-360-like tree: generated fruit, odd-but-valid images, bad files and ignored files."""
    root = tmp_path_factory.mktemp("images") / "Test"
    good = generate(root, GOOD_IMAGES, n_labels=4)
    odd = write_odd_images(root)
    bad = write_bad_files(root)
    (root / "README.txt").write_text("ignored: not an image extension\n")
    (root / "Kiwi" / "Thumbs.db").write_bytes(b"\x00\x01")
    return {"root": root, "good": good, "odd": odd, "bad": bad}


@pytest.fixture
def fresh_tree(image_tree: dict, tmp_path: Path) -> Path:
    """A private copy of the image tree that a test may add files to."""
    return Path(shutil.copytree(image_tree["root"], tmp_path / "Test"))
