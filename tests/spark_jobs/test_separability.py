"""The separability check against scikit-learn's logistic regression on the same split, and its split's strata."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType
from sklearn.linear_model import LogisticRegression

from fruits_contract import Separability
from fruits_spark.separability import REG_PARAM, held_out_count, separability, stratified_split

PROJECTED_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("pca_features", ArrayType(FloatType(), False), False),
    ]
)
# Overlapping blobs (some held-out images are misclassified), one label of a single image.
SIZES = {"Apple Red 1": 41, "Banana": 30, "Kiwi": 13, "Lone Lemon": 1}
K = 5


def _blobs(seed: int = 7) -> list[tuple[str, str, list[float]]]:
    rng = np.random.default_rng(seed)
    rows = []
    for index, (label, size) in enumerate(SIZES.items()):
        centre = rng.normal(scale=1.2, size=K)
        points = centre + rng.normal(size=(size, K))
        rows += [
            (f"s3://b/images/{label}/{index}_{i}.jpg", label, p.astype(np.float32).tolist())
            for i, p in enumerate(points)
        ]
    return rows


@pytest.fixture(scope="module")
def projected(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(_blobs(), PROJECTED_SCHEMA).repartition(3)


@pytest.fixture(scope="module")
def split_rows(projected: DataFrame) -> list:
    return stratified_split(projected).collect()


@pytest.fixture(scope="module")
def report(projected: DataFrame) -> dict:
    return separability(projected)


def test_each_label_holds_out_a_quarter_and_keeps_some_for_training(split_rows):
    for label, size in SIZES.items():
        held = [row for row in split_rows if row.label == label and row.held_out]
        kept = [row for row in split_rows if row.label == label and not row.held_out]
        expected = 0 if size < 2 else max(1, math.floor(size * 0.25))
        assert (len(held), len(kept)) == (expected, size - expected), label


def test_the_split_is_the_same_on_every_run(projected, split_rows):
    again = stratified_split(projected.repartition(5)).collect()
    assert {row.path for row in again if row.held_out} == {row.path for row in split_rows if row.held_out}


def test_held_out_count_never_takes_a_labels_last_training_image():
    assert [held_out_count(n, 0.25) for n in (0, 1, 2, 3, 4, 8, 9)] == [0, 0, 1, 1, 1, 2, 2]
    assert held_out_count(2, 0.9) == 1


def test_accuracies_agree_with_scikit_learn_on_the_same_split(split_rows, report):
    labels = sorted(SIZES)
    x_train = np.array([row.pca_features for row in split_rows if not row.held_out], dtype=np.float64)
    y_train = np.array([labels.index(row.label) for row in split_rows if not row.held_out])
    test = [row for row in split_rows if row.held_out]
    # Spark minimizes mean loss + regParam/2 |w|^2; scikit-learn C * total loss + 1/2 |w|^2.
    oracle = LogisticRegression(C=1 / (REG_PARAM * len(x_train)), tol=1e-10, max_iter=10_000)
    predicted = oracle.fit(x_train, y_train).predict(np.array([row.pca_features for row in test], dtype=np.float64))
    correct = predicted == np.array([labels.index(row.label) for row in test])

    assert report[Separability.STATUS] == "ok"
    assert report[Separability.N_TEST] == len(test)
    assert report[Separability.N_TRAIN] == len(x_train)
    assert 0.5 < report[Separability.ACCURACY] < 1.0, "the blobs overlap: a perfect score would test nothing"
    assert report[Separability.ACCURACY] == pytest.approx(correct.mean())
    for entry in report[Separability.PER_LABEL]:
        in_label = np.array([row.label == entry["label"] for row in test])
        assert entry["n_test"] == in_label.sum()
        assert entry["correct"] == correct[in_label].sum(), entry["label"]


def test_a_label_with_nothing_held_out_has_no_accuracy(report):
    lone = next(entry for entry in report[Separability.PER_LABEL] if entry["label"] == "Lone Lemon")
    assert lone == {"label": "Lone Lemon", "n_test": 0, "correct": 0, "accuracy": None}


def test_a_single_label_is_skipped_with_its_reason(spark):
    rows = [row for row in _blobs() if row[1] == "Banana"]
    report = separability(spark.createDataFrame(rows, PROJECTED_SCHEMA))
    assert report[Separability.STATUS] == "skipped"
    assert "at least two" in report[Separability.REASON]
