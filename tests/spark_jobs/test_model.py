"""The compiled model against Keras's own MobileNetV2, and the three ways to get weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fruits_spark
from fruits_spark.errors import JobInputError
from fruits_spark.images import decode_image
from fruits_spark.inference import Featurizer
from fruits_spark.model import (
    FEATURE_LENGTH,
    CompiledModel,
    build_keras_model,
    compile_model,
    fingerprint,
    randomize_weights,
)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def decoded_images(image_tree: dict, image_size: int) -> np.ndarray:
    return np.stack([decode_image(path.read_bytes(), image_size) for path in image_tree["good"]])


def test_litert_features_match_keras_on_the_same_weights(
    random_model: CompiledModel, decoded_images: np.ndarray, image_size: int
) -> None:
    keras_model = build_keras_model("none", image_size)
    expected = keras_model.predict(decoded_images, verbose=0)

    actual = Featurizer(random_model.tflite, num_threads=2)(decoded_images)

    assert actual.shape == (len(decoded_images), FEATURE_LENGTH)
    assert _cosine(actual, expected).min() >= 0.9999


def test_random_weights_give_informative_features(random_model: CompiledModel, decoded_images: np.ndarray) -> None:
    features = Featurizer(random_model.tflite, num_threads=1)(decoded_images)

    assert features.std(axis=0).mean() > 0.01
    assert np.abs(features).mean() > 0.1


def test_random_weights_are_the_same_every_time(random_model: CompiledModel, image_size: int) -> None:
    rebuilt = build_keras_model("none", image_size)

    assert fingerprint(rebuilt, image_size) == random_model.fingerprint


def test_weights_file_is_loaded(tmp_path: Path, decoded_images: np.ndarray, image_size: int) -> None:
    source = build_keras_model("none", image_size)
    randomize_weights(source, seed=7)
    weights_file = tmp_path / "mobilenet_v2.weights.h5"
    source.save_weights(weights_file)

    compiled = compile_model(str(weights_file), image_size)

    assert compiled.fingerprint == fingerprint(source, image_size)
    features = Featurizer(compiled.tflite, num_threads=2)(decoded_images[:4])
    assert _cosine(features, source.predict(decoded_images[:4], verbose=0)).min() >= 0.9999


def test_unreadable_weights_file_is_a_clear_error(tmp_path: Path, image_size: int) -> None:
    not_weights = tmp_path / "weights.weights.h5"
    not_weights.write_text("not hdf5")

    with pytest.raises(JobInputError, match=r"--weights .* is not a Keras MobileNetV2 weights file"):
        build_keras_model(str(not_weights), image_size)


def test_missing_weights_file_is_a_clear_error(tmp_path: Path, image_size: int) -> None:
    with pytest.raises(JobInputError, match=r"--weights .*nowhere.h5 cannot be read"):
        build_keras_model(str(tmp_path / "nowhere.h5"), image_size)


@pytest.mark.parametrize("size", [8, 1000])
def test_image_size_out_of_range_is_refused(size: int) -> None:
    with pytest.raises(JobInputError, match="--image-size"):
        build_keras_model("none", size)


IMAGENET_PROBE = """
import sys
import numpy as np
from fruits_spark.model import build_keras_model
model = build_keras_model("imagenet", int(sys.argv[2]))
np.save(sys.argv[1], np.concatenate([w.numpy().ravel() for w in model.weights]))
"""


def test_imagenet_weights_load_from_the_keras_cache(
    keras_cache: tuple[Path, object], image_size: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keras looks in its cache before downloading: a file placed there is what `imagenet` loads."""
    home, source = keras_cache
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv("PYTHONPATH", str(Path(fruits_spark.__file__).parents[1]))

    loaded = tmp_path / "loaded.npy"
    subprocess.run([sys.executable, "-c", IMAGENET_PROBE, str(loaded), str(image_size)], check=True)

    expected = np.concatenate([w.numpy().ravel() for w in source.weights])
    np.testing.assert_array_equal(np.load(loaded), expected)


def test_missing_weights_uri_names_the_jvms_reason(spark, tmp_path: Path, image_size: int) -> None:
    from fruits_spark.storage import HadoopFs

    missing = f"file:{tmp_path}/nowhere.weights.h5"

    with pytest.raises(JobInputError, match=r"cannot be read \(java\.io\.FileNotFoundException: .*nowhere"):
        build_keras_model(missing, image_size, HadoopFs(spark))


def test_imagenet_weights_load_from_the_given_file_without_keras_s_cache(
    keras_cache: tuple[Path, object], image_size: int
) -> None:
    """On nodes without internet the DAG passes the bucket's copy of Keras's file: that is what `imagenet` loads."""
    home, source = keras_cache
    bucket_copy = next((home / "models").glob("*_no_top.h5"))

    model = build_keras_model("imagenet", image_size, imagenet_weights=str(bucket_copy))

    assert fingerprint(model, image_size) == fingerprint(source, image_size)


def test_a_missing_imagenet_weights_file_is_one_clear_line(tmp_path: Path, image_size: int) -> None:
    with pytest.raises(JobInputError, match=r"^--imagenet-weights .*nowhere.h5 cannot be read .*publish-imagenet"):
        build_keras_model("imagenet", image_size, imagenet_weights=str(tmp_path / "nowhere.h5"))
