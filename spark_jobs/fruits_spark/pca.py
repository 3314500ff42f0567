"""Job 2: standardize the features and reduce them with PCA, fitted once, plus a report.

    spark-submit --py-files fruits_spark.zip spark_jobs/pca.py \\
        --features s3://BUCKET/features/ --output s3://BUCKET/runs/RUN/pca/ \\
        [--variance 0.95 | --k N] [--report s3://BUCKET/runs/RUN/report/] \\
        [--images s3://BUCKET/images/ [--manifest s3://BUCKET/runs/RUN/manifest.json]]

With ``--images``, the PCA covers exactly the images listed there, each once, under its current label:
the features dataset's rows of files since moved, removed or rewritten are left out
(fruits_spark.listing). With ``--manifest`` too, the job checks it sees what ``extract_features`` saw:
the same listing, and a current row for each image the manifest counts as featurized. Without
``--images``, every row of ``--features`` is used.

PCA is fitted once over all components, which yields the whole explained-variance spectrum (the
covariance's eigendecomposition, fruits_spark.covariance); k is then the smallest number of
components reaching the threshold (or the given k), and the data are projected on those k. The
report is written before the parquet, so the parquet's ``_SUCCESS`` marks the whole output complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pyspark import StorageLevel
from pyspark.ml.feature import StandardScaler
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fruits_contract import DEFAULT_VARIANCE, PCA_COLUMN, PCA_JOB, PCA_MIN_IMAGES, Flag, ManifestKeys
from fruits_spark.covariance import covariance_matrix, principal_axes
from fruits_spark.errors import JobInputError, run_cli
from fruits_spark.listing import VERSION_COLUMNS, current_rows, list_images, listing_digest, versions_frame
from fruits_spark.pca_fit import PcaFit
from fruits_spark.progress import logged_progress
from fruits_spark.projection import project_on
from fruits_spark.report import write_report
from fruits_spark.session import spark_session
from fruits_spark.storage import SUCCESS_MARKER, HadoopFs, join_uri, parent_uri
from fruits_spark.summary import write_summary

log = logging.getLogger("pca")

REQUIRED_COLUMNS = ("path", "label", "features")


@dataclass(frozen=True)
class PcaConfig:
    """The job's arguments, validated. Exactly one of ``variance`` and ``k`` is set."""

    features: str
    output: str
    report: str
    variance: float | None = DEFAULT_VARIANCE
    k: int | None = None
    images: str | None = None
    manifest: str | None = None
    summary_json: str | None = None


def parse_args(argv: Sequence[str]) -> PcaConfig:
    parser = argparse.ArgumentParser(prog=PCA_JOB, description=__doc__.splitlines()[0])
    parser.add_argument(Flag.FEATURES, required=True, help="features dataset written by extract_features")
    parser.add_argument(Flag.OUTPUT, required=True, help="where to write the PCA features (parquet)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(Flag.VARIANCE, type=float, help=f"variance to keep, in (0, 1] (default {DEFAULT_VARIANCE})")
    target.add_argument("--k", type=int, help="number of components to keep")
    parser.add_argument(Flag.REPORT, help="report folder (default: 'report' beside --output)")
    parser.add_argument(Flag.IMAGES, help="the images the PCA covers (default: every row of --features)")
    parser.add_argument(Flag.MANIFEST, help="extract_features' manifest of the same --images, checked")
    parser.add_argument(Flag.SUMMARY_JSON, help="local file to write the run's figures and times to, as JSON")
    parser.add_argument(Flag.FAILURE, help="where to write why the job failed, as JSON (a file or s3:// URI)")
    args = parser.parse_args(argv)
    if args.manifest and not args.images:
        raise JobInputError("--manifest needs --images: the manifest is checked against their listing")
    if args.variance is not None and not 0.0 < args.variance <= 1.0:
        raise JobInputError(f"--variance {args.variance} is out of range; pass a fraction in (0, 1], e.g. 0.95")
    if args.k is not None and args.k < 1:
        raise JobInputError(f"--k {args.k} is out of range; pass at least 1")
    output = args.output.rstrip("/")
    report = (args.report or join_uri(parent_uri(output), "report")).rstrip("/")
    if report == output or report.startswith(output + "/"):
        raise JobInputError(f"--report {report} is inside --output {output}; pass a folder beside it")
    variance = args.variance if args.variance is not None or args.k is not None else DEFAULT_VARIANCE
    return PcaConfig(
        args.features.rstrip("/"), output, report, variance, args.k, args.images, args.manifest, args.summary_json
    )


# --- extract -----------------------------------------------------------------------------------


def read_features(spark: SparkSession, fs: HadoopFs, uri: str) -> DataFrame:
    """The complete features dataset, or a clear error when it is missing, partial or unusable."""
    if fs.input_kind(uri, Flag.FEATURES) is None:
        raise JobInputError(f"--features {uri} does not exist; run extract_features first")
    if not fs.exists(join_uri(uri, SUCCESS_MARKER)):
        raise JobInputError(f"--features {uri} has no {SUCCESS_MARKER} marker: extract_features did not finish")
    # mergeSchema: files written before the size and modification time columns lack them.
    frame = spark.read.option("mergeSchema", "true").parquet(uri)
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise JobInputError(f"--features {uri} lacks the column(s) {', '.join(missing)}; is it a features dataset?")
    for column in VERSION_COLUMNS:
        if column not in frame.columns:
            frame = frame.withColumn(column, F.lit(None).cast("long"))
    return frame.select(*REQUIRED_COLUMNS, *(c for c in VERSION_COLUMNS if c not in REQUIRED_COLUMNS))


def current_features(spark: SparkSession, fs: HadoopFs, features: DataFrame, config: PcaConfig) -> DataFrame:
    """The rows of the images under ``config.images`` as they are now, checked against the manifest if any."""
    if config.images is None:
        return features.select(*REQUIRED_COLUMNS)
    listing = list_images(fs, config.images)
    current = current_rows(features, versions_frame(spark, listing)).select(*REQUIRED_COLUMNS)
    if config.manifest is None:
        return current
    manifest = json.loads(fs.read_bytes(config.manifest))
    if manifest[ManifestKeys.IMAGES_DIGEST] != listing_digest(fs, config.images, listing):
        raise JobInputError(
            f"--images {config.images} changed since extract_features listed them ({config.manifest}); run both again"
        )
    n_current = current.count()
    if n_current != manifest[ManifestKeys.N_FEATURES]:
        raise JobInputError(
            f"--features {config.features} has current rows for {n_current} image(s) but {config.manifest} "
            f"counts {manifest[ManifestKeys.N_FEATURES]}; run extract_features with the same --images first"
        )
    return current


def feature_length(features: DataFrame, uri: str) -> tuple[int, int]:
    """``(n_images, n_features)``, checking every vector has the same length."""
    lengths = features.groupBy(F.size("features").alias("length")).count().collect()
    n_images = sum(row["count"] for row in lengths)
    if n_images < PCA_MIN_IMAGES:
        raise JobInputError(f"--features {uri} holds {n_images} image(s); PCA needs at least {PCA_MIN_IMAGES}")
    if len(lengths) != 1:
        found = sorted(row.length for row in lengths)
        raise JobInputError(f"--features {uri} mixes feature vectors of lengths {found}")
    return n_images, lengths[0].length


# --- transform ---------------------------------------------------------------------------------


def standardize(features: DataFrame) -> DataFrame:
    """``path, label, scaled``: each feature centred and divided by its (sample) standard deviation.

    A constant feature scales to 0, as in Spark's StandardScaler.
    """
    vectors = features.select("path", "label", array_to_vector(F.col("features")).alias("vector"))
    scaler = StandardScaler(withMean=True, withStd=True, inputCol="vector", outputCol="scaled").fit(vectors)
    return scaler.transform(vectors).select("path", "label", "scaled")


def choose_k(explained_variance_ratio: np.ndarray, threshold: float) -> int:
    """The smallest k whose cumulative explained variance reaches ``threshold``."""
    cumulative = np.cumsum(explained_variance_ratio)
    # Rounding can leave the full sum a hair under 1.0; a threshold of 1 still means "all".
    reached = np.flatnonzero(cumulative >= threshold - 1e-9)
    return int(reached[0]) + 1 if reached.size else len(explained_variance_ratio)


def fit_pca(scaled: DataFrame, n_images: int, n_features: int, config: PcaConfig) -> PcaFit:
    """The whole spectrum of ``scaled``'s covariance (fruits_spark.covariance), and k from ``config``."""
    # Before the covariance's pass over every vector, not after it.
    if config.k is not None and config.k > n_features:
        raise JobInputError(f"--k {config.k} exceeds the {n_features} features; pass at most {n_features}")
    ratios, axes = principal_axes(covariance_matrix(scaled, "scaled", n_features))
    if config.k is not None:
        k = config.k
    else:
        assert config.variance is not None, "PcaConfig holds a variance when it holds no k"
        k = choose_k(ratios, config.variance)
    return PcaFit(k, config.variance, n_images, n_features, ratios, axes)


def project(scaled: DataFrame, fit: PcaFit) -> DataFrame:
    """``path, label, pca_features``: the scaled vectors on the first k principal axes."""
    return project_on(scaled, fit.components[:, : fit.k]).withColumnRenamed("projected", PCA_COLUMN)


# --- the job -----------------------------------------------------------------------------------


def run(spark: SparkSession, config: PcaConfig) -> PcaFit:
    fs = HadoopFs(spark)
    features = current_features(spark, fs, read_features(spark, fs, config.features), config)
    fs.ensure_writable_dir(config.output, "--output")
    fs.ensure_writable_dir(config.report, "--report")
    # An earlier, complete output is no longer complete once this run starts replacing it.
    fs.delete(join_uri(config.output, SUCCESS_MARKER))

    n_images, n_features = feature_length(features, config.features)
    scaled = standardize(features).persist(StorageLevel.MEMORY_AND_DISK)
    with logged_progress(spark.sparkContext, f"fit PCA on {n_images} x {n_features}"):
        fit = fit_pca(scaled, n_images, n_features, config)
    log.info("k = %d components keep %.4f of the variance", fit.k, fit.cumulative[fit.k - 1])

    projected = project(scaled, fit).persist(StorageLevel.MEMORY_AND_DISK)
    write_report(fs, fit, projected, scaled, config.report)
    with logged_progress(spark.sparkContext, f"write {n_images} PCA rows"):
        projected.write.mode("overwrite").parquet(config.output)
    projected.unpersist()
    scaled.unpersist()
    log.info("PCA features: %s; report: %s", config.output, config.report)
    return fit


def main(argv: Sequence[str]) -> None:
    started = time.monotonic()
    config = parse_args(argv)
    with spark_session("pca") as spark:
        session_started = time.monotonic()
        fit = run(spark, config)
        stopping = time.monotonic()
    if config.summary_json:
        summary = {
            "job": PCA_JOB,
            "features": config.features,
            "output": config.output,
            "n_images": fit.n_images,
            "n_features": fit.n_features,
            "k": fit.k,
            "cumulative_variance": float(fit.cumulative[fit.k - 1]),
            "seconds": {
                "session_start": round(session_started - started, 3),
                "run": round(stopping - session_started, 3),
                "session_stop": round(time.monotonic() - stopping, 3),
                "total": round(time.monotonic() - started, 3),
            },
        }
        write_summary(config.summary_json, summary)


def cli(argv: Sequence[str] | None = None) -> None:
    run_cli(main, argv, prog=PCA_JOB)
