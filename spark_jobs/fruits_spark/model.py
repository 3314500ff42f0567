"""MobileNetV2 built once on the driver: weights resolved, fingerprinted and compiled to TFLite.

Only the driver imports TensorFlow. Executors receive the compiled model as broadcast bytes and run
it with the much lighter LiteRT interpreter (see ``inference.py``), which is also several times
faster than Keras ``predict`` on CPUs and gives the same features (tested against Keras itself).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fruits_contract import IMAGENET_WEIGHTS, RANDOM_WEIGHTS, RANDOM_WEIGHTS_SEED
from fruits_spark.errors import JobInputError

if TYPE_CHECKING:
    import keras

    from fruits_spark.storage import HadoopFs

log = logging.getLogger(__name__)

IMAGENET = IMAGENET_WEIGHTS
RANDOM = RANDOM_WEIGHTS
FEATURE_LENGTH = 1280
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 512


@dataclass(frozen=True)
class CompiledModel:
    """The feature extractor as shipped to executors.

    :param tflite: the compiled model, broadcast to executors.
    :param fingerprint: a hash of the weights and input size; features from two runs are
        comparable only when their fingerprints are equal.
    :param weights: what ``--weights`` said, for logs and the dataset's metadata.
    :param image_size: the square input size in pixels.
    """

    tflite: bytes
    fingerprint: str
    weights: str
    image_size: int


def imagenet_weights_file(image_size: int, keras_home: Path | None = None) -> Path:
    """Where Keras caches (and looks first for) the ImageNet weights of the headless MobileNetV2.

    :param keras_home: the Keras home folder; by default ``$KERAS_HOME``, else ``~/.keras``.
    """
    keras_home = keras_home or Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    size = image_size if image_size in (96, 128, 160, 192, 224) else 224
    return keras_home / "models" / f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"


def validate_image_size(image_size: int) -> None:
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise JobInputError(
            f"--image-size {image_size} is out of range; use {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} (224 is standard)"
        )


def _mobilenet_v2(image_size: int, weights: str | None) -> keras.Model:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3), include_top=False, weights=weights, pooling="avg"
    )


def randomize_weights(model: keras.Model, seed: int = RANDOM_WEIGHTS_SEED) -> None:
    """He-normal conv kernels from a seeded numpy generator, batch norm left at identity.

    Keras's default initializers shrink the signal through MobileNetV2's 50-odd layers until the
    pooled features are ~1e-12, which makes random-weight features (and their PCA) meaningless.
    Variance-preserving kernels keep them O(1), and numpy's generator is the same on every machine.
    """
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            fan_in = layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, keras.layers.Conv2D):
            fan_in = layer.kernel.shape[0] * layer.kernel.shape[1] * layer.kernel.shape[2]
        else:
            continue
        kernel = layer.kernel
        kernel.assign(rng.normal(0.0, np.sqrt(2.0 / fan_in), kernel.shape).astype("float32"))


def read_weights_file(uri: str, fs: HadoopFs | None) -> bytes:
    """The bytes of the weights file ``--weights`` names, read through ``fs`` (``s3://``) or as a local path."""
    try:
        return fs.read_bytes(uri) if fs is not None else Path(uri).read_bytes()
    except OSError as error:
        raise JobInputError(f"--weights {uri} cannot be read ({_first_line(error)})") from None


def _load_weights_file(model: keras.Model, uri: str, fs: HadoopFs | None) -> None:
    with tempfile.TemporaryDirectory(prefix="fruits-weights-") as tmp:
        local = Path(tmp) / Path(uri.rstrip("/")).name
        local.write_bytes(read_weights_file(uri, fs))
        try:
            model.load_weights(str(local))
        except Exception as error:
            raise JobInputError(
                f"--weights {uri} is not a Keras MobileNetV2 weights file without the classification "
                f"head (.weights.h5, .keras or legacy .h5): {_first_line(error)}"
            ) from None


def _imagenet_from_file(image_size: int, uri: str, fs: HadoopFs | None) -> keras.Model:
    """ImageNet's MobileNetV2 from Keras's weights file at ``uri`` (the bucket's copy, on nodes without internet)."""
    with tempfile.TemporaryDirectory(prefix="fruits-imagenet-") as tmp:
        local = Path(tmp) / Path(uri.rstrip("/")).name
        try:
            local.write_bytes(fs.read_bytes(uri) if fs is not None else Path(uri).read_bytes())
        except OSError as error:
            raise JobInputError(
                f"--imagenet-weights {uri} cannot be read ({_first_line(error)}); put Keras's file there "
                "(make publish-imagenet-weights)"
            ) from None
        try:
            return _mobilenet_v2(image_size, str(local))
        except Exception as error:
            raise JobInputError(
                f"--imagenet-weights {uri} is not Keras's headless MobileNetV2 ImageNet file: {_first_line(error)}"
            ) from None


def build_keras_model(
    weights: str, image_size: int, fs: HadoopFs | None = None, *, imagenet_weights: str | None = None
) -> keras.Model:
    """The headless, average-pooled MobileNetV2 with the weights ``--weights`` names.

    :param weights: ``imagenet`` (``imagenet_weights`` when given, else Keras's cache, else a download),
        ``none`` (seeded random) or a path or URI of a weights file.
    :param fs: reads a weights URI (``s3://`` on EMR); None reads it as a local path.
    :param imagenet_weights: the path or URI of Keras's ImageNet weights file.
    """
    validate_image_size(image_size)
    if weights == RANDOM:
        model = _mobilenet_v2(image_size, None)
        randomize_weights(model)
        return model
    if weights == IMAGENET and imagenet_weights:
        return _imagenet_from_file(image_size, imagenet_weights, fs)
    if weights == IMAGENET:
        try:
            return _mobilenet_v2(image_size, IMAGENET)
        except Exception as error:
            raise JobInputError(
                f"--weights imagenet could not be loaded ({_first_line(error)}); put the Keras file at "
                f"{imagenet_weights_file(image_size)}, or pass --weights none or a weights file"
            ) from None
    model = _mobilenet_v2(image_size, None)
    _load_weights_file(model, weights, fs)
    return model


def fingerprint(model: keras.Model, image_size: int) -> str:
    digest = hashlib.sha256(str(image_size).encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def to_tflite(model: keras.Model) -> bytes:
    """Compile the Keras model for LiteRT, hiding the converter's chatter on stdout."""
    import tensorflow as tf

    with contextlib.redirect_stdout(io.StringIO()):
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def compile_model(
    weights: str, image_size: int, fs: HadoopFs | None = None, *, imagenet_weights: str | None = None
) -> CompiledModel:
    model = build_keras_model(weights, image_size, fs, imagenet_weights=imagenet_weights)
    compiled = CompiledModel(to_tflite(model), fingerprint(model, image_size), weights, image_size)
    log.info(
        "model: MobileNetV2 %dx%d, weights %s, fingerprint %s, %.1f MB compiled",
        image_size,
        image_size,
        weights,
        compiled.fingerprint,
        len(compiled.tflite) / 1e6,
    )
    return compiled


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
