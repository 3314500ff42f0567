"""The covariance summed per partition in Spark, against numpy's own on the whole matrix."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.functions import array_to_vector
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from fruits_spark.covariance import covariance_matrix, principal_axes


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    rng = np.random.default_rng(7)
    return (rng.normal(size=(53, 6)) * [5.0, 1.0, 0.5, 2.0, 0.1, 3.0] + [100.0, -3.0, 0, 7, 1e3, 2]).astype(np.float32)


def test_the_covariance_of_many_partitions_some_empty_is_numpy_s(spark: SparkSession, matrix: np.ndarray) -> None:
    padding = [[0.0] * matrix.shape[1]] * 27
    rows = [(index, vector) for index, vector in enumerate([*matrix.tolist(), *padding])]
    # 80 rows in 8 partitions of 10; without the padding rows, the last two partitions are empty.
    frame = spark.createDataFrame(spark.sparkContext.parallelize(rows, 8), "index long, features array<float>")
    frame = frame.where(F.col("index") < len(matrix))
    assert frame.rdd.glom().map(len).collect() == [10, 10, 10, 10, 10, 3, 0, 0]
    vectors = frame.select(array_to_vector("features").alias("vector"))

    from_arrays = covariance_matrix(frame, "features", matrix.shape[1])
    from_vectors = covariance_matrix(vectors, "vector", matrix.shape[1])

    expected = np.cov(matrix.astype(np.float64), rowvar=False)
    np.testing.assert_allclose(from_arrays, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(from_vectors, expected, rtol=1e-9, atol=1e-9)


def test_fewer_than_two_vectors_have_no_covariance(spark: SparkSession) -> None:
    frame = spark.createDataFrame([([1.0, 2.0],)], "features array<double>")

    with pytest.raises(ValueError, match="at least 2 vectors, got 1"):
        covariance_matrix(frame, "features", 2)


def test_axes_come_largest_variance_first_each_with_its_largest_entry_positive() -> None:
    rng = np.random.default_rng(1)
    rotation = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    variances = np.array([0.5, 4.0, 0.0, 1.5])
    covariance = rotation @ np.diag(variances) @ rotation.T

    ratios, axes = principal_axes(covariance)

    np.testing.assert_allclose(ratios, [4.0 / 6, 1.5 / 6, 0.5 / 6, 0.0], atol=1e-12)
    np.testing.assert_allclose(np.abs(axes[:, :3]), np.abs(rotation[:, [1, 3, 0]]), atol=1e-9)
    largest = axes[np.argmax(np.abs(axes), axis=0), np.arange(4)]
    assert (largest > 0).all()
    np.testing.assert_allclose(axes.T @ covariance @ axes, np.diag(ratios * 6.0), atol=1e-9)


def test_constant_features_explain_nothing() -> None:
    ratios, axes = principal_axes(np.zeros((3, 3)))

    np.testing.assert_array_equal(ratios, np.zeros(3))
    np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-12)
