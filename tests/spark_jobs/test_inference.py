"""The executor-side featurizer: batching, padding and the per-image results it must not change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fruits_spark.images import decode_image
from fruits_spark.inference import Featurizer, featurize_contents
from fruits_spark.model import FEATURE_LENGTH, CompiledModel


@pytest.fixture(scope="module")
def images(image_tree: dict, image_size: int) -> np.ndarray:
    return np.stack([decode_image(path.read_bytes(), image_size) for path in image_tree["good"][:6]])


@pytest.fixture(scope="module")
def one_by_one(random_model: CompiledModel, images: np.ndarray) -> np.ndarray:
    return Featurizer(random_model.tflite, num_threads=1, batch_size=1)(images)


@pytest.mark.parametrize("batch_size", [4, 6, 8])
def test_batches_and_their_padding_give_the_per_image_features(
    random_model: CompiledModel, images: np.ndarray, one_by_one: np.ndarray, batch_size: int
) -> None:
    features = Featurizer(random_model.tflite, num_threads=1, batch_size=batch_size)(images)

    assert features.shape == (len(images), FEATURE_LENGTH)
    np.testing.assert_allclose(features, one_by_one, rtol=1e-4, atol=1e-5)


def test_float64_images_are_accepted(random_model: CompiledModel, images: np.ndarray, one_by_one: np.ndarray) -> None:
    features = Featurizer(random_model.tflite, num_threads=1)(images[:2].astype(np.float64))

    np.testing.assert_allclose(features, one_by_one[:2], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_rejected_bytes_keep_their_row_between_featurized_images(
    random_model: CompiledModel, image_tree: dict, one_by_one: np.ndarray, batch_size: int
) -> None:
    good = [path.read_bytes() for path in image_tree["good"][:3]]
    contents = pd.Series([good[0], b"not an image", good[1], good[2]])

    result = featurize_contents(contents, Featurizer(random_model.tflite, num_threads=1, batch_size=batch_size))

    assert result["reason"].isna().tolist() == [True, False, True, True]
    assert result["features"][1] is None
    np.testing.assert_allclose(np.stack(result["features"][[0, 2, 3]]), one_by_one[:3], rtol=1e-4, atol=1e-5)
