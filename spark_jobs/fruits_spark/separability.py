"""A first sign of whether the PCA features will serve a classifier: can a linear model tell the labels apart?

A multinomial logistic regression (Spark ML, so it runs on the cluster's executors at any size) is
trained on the PCA features of all but a stratified hold-out of each label, and scored on the hold-out:
overall accuracy and accuracy per label. The split is deterministic (a seeded hash of each path), so a
rerun over the same images gives the same figures. With MobileNetV2's random weights (``--weights
none``) the features say little about the fruit, and neither does this check.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import StringIndexer
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from fruits_contract import SEPARABILITY_HOLDOUT, SEPARABILITY_SEED, Separability

log = logging.getLogger("pca")

# The L2 penalty (Spark's regParam): PCA features of few images are often linearly separable, where an
# unpenalized fit never converges. Features are not rescaled inside the fit (they are PCA scores).
REG_PARAM = 0.01
MAX_ITER = 200


def held_out_count(n_images: int, fraction: float) -> int:
    """How many of a label's ``n_images`` are held out: at least one and never all, when there are two."""
    if n_images < 2:
        return 0
    return min(n_images - 1, max(1, math.floor(n_images * fraction)))


def stratified_split(
    frame: DataFrame, fraction: float = SEPARABILITY_HOLDOUT, seed: int = SEPARABILITY_SEED
) -> DataFrame:
    """``frame`` with a boolean ``held_out``: ``held_out_count`` images of each label, chosen by a seeded hash."""
    by_label = Window.partitionBy("label")
    ranked = frame.withColumn(
        "_rank", F.row_number().over(by_label.orderBy(F.xxhash64(F.lit(seed), "path"), "path"))
    ).withColumn("_n", F.count(F.lit(1)).over(by_label))
    held_out_n = (
        F.when(F.col("_n") < 2, F.lit(0))
        .otherwise(F.least(F.col("_n") - 1, F.greatest(F.lit(1), F.floor(F.col("_n") * F.lit(fraction)))))
        .cast("int")
    )
    return ranked.withColumn("held_out", F.col("_rank") <= held_out_n).drop("_rank", "_n")


def skipped(reason: str) -> dict[str, Any]:
    log.info("separability check skipped: %s", reason)
    return {Separability.STATUS: "skipped", Separability.REASON: reason}


def separability(projected: DataFrame, fraction: float = SEPARABILITY_HOLDOUT) -> dict[str, Any]:
    """The check's figures for ``projected`` (``path, label, pca_features``), as ``separability.json`` holds them."""
    split = stratified_split(projected, fraction).select(
        "label", "held_out", array_to_vector(F.col("pca_features")).alias("x")
    )
    counts = {
        (row["label"], row["held_out"]): row["count"] for row in split.groupBy("label", "held_out").count().collect()
    }
    labels = sorted({label for label, _ in counts})
    n_test = sum(n for (_, held_out), n in counts.items() if held_out)
    n_train = sum(n for (_, held_out), n in counts.items() if not held_out)
    if len(labels) < 2:
        return skipped(f"{len(labels)} label(s): separability cannot be measured, a classifier needs at least two")
    if n_test == 0:
        return skipped("no label has two images, so none can be held out")

    indexed = StringIndexer(inputCol="label", outputCol="y", stringOrderType="alphabetAsc").fit(split).transform(split)
    train, test = indexed.where(~F.col("held_out")), indexed.where(F.col("held_out"))
    model = LogisticRegression(
        featuresCol="x",
        labelCol="y",
        family="multinomial",
        regParam=REG_PARAM,
        elasticNetParam=0.0,
        standardization=False,
        maxIter=MAX_ITER,
    ).fit(train)
    scored = (
        model.transform(test)
        .groupBy("label")
        .agg(F.count(F.lit(1)).alias("n_test"), F.sum((F.col("prediction") == F.col("y")).cast("int")).alias("correct"))
    )
    by_label = {row["label"]: (row["n_test"], row["correct"]) for row in scored.collect()}
    per_label = []
    for label in labels:
        tested, correct = by_label.get(label, (0, 0))
        accuracy = correct / tested if tested else None
        per_label.append({"label": label, "n_test": tested, "correct": correct, "accuracy": accuracy})
    accuracy = sum(correct for _, correct in by_label.values()) / n_test
    log.info("separability: accuracy %.3f on %d held-out images of %d labels", accuracy, n_test, len(labels))
    return {
        Separability.STATUS: "ok",
        Separability.HOLDOUT: fraction,
        Separability.N_TRAIN: n_train,
        Separability.N_TEST: n_test,
        Separability.ACCURACY: accuracy,
        Separability.PER_LABEL: per_label,
        Separability.MODEL: {
            "kind": "multinomial logistic regression (Spark ML)",
            "reg_param": REG_PARAM,
            "max_iter": MAX_ITER,
            "iterations": model.summary.totalIterations,
        },
    }
