"""Job 1: MobileNetV2 features for every new fruit image, appended to one incremental dataset.

    spark-submit --py-files fruits_spark.zip spark_jobs/extract_features.py \\
        --images s3://BUCKET/images/ --features s3://BUCKET/features/ [--rejects URI] \\
        [--weights imagenet|none|URI] [--image-size 224] \\
        [--model-cache s3://BUCKET/artifacts/models/] [--summary-json summary.json]

The features dataset holds one row per image path, ever: a rerun featurizes only the paths it has
never seen (as features or as rejects). Files that cannot become features are recorded with a
reason in the rejects dataset, so features + rejects always account for every input file.
The compiled model comes from ``--model-cache`` when it holds it (no TensorFlow imported), else it is
compiled and stored there (fruits_spark.model_cache).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import pandas as pd
from pyspark import StorageLevel
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

from fruits_contract import EXTRACT_FEATURES_JOB, Flag
from fruits_spark.errors import JobInputError, run_cli
from fruits_spark.fetch import fetch_failure, worker_fetcher
from fruits_spark.images import Listing, is_image_path, label_of, reject_reason_from_listing
from fruits_spark.inference import cached_featurizer, featurize_contents
from fruits_spark.model import IMAGENET, CompiledModel, validate_image_size
from fruits_spark.model_cache import default_cache_dir, load_or_compile
from fruits_spark.progress import logged_progress
from fruits_spark.session import spark_session
from fruits_spark.storage import HadoopFs, join_uri
from fruits_spark.summary import PhaseTimes, write_summary

log = logging.getLogger("extract_features")

FEATURES_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("features", ArrayType(FloatType(), False), False),
    ]
)
REJECTS_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("reason", StringType(), False),
    ]
)
IMAGES_SCHEMA = StructType([StructField("path", StringType(), False), StructField("label", StringType(), False)])
_UDF_RESULT = StructType([StructField("features", ArrayType(FloatType())), StructField("reason", StringType())])
MODEL_METADATA_FILE = "_fruits_model.json"
# Images per task, at most. Each PySpark task first spends 0.2-0.5 s re-reading every zip on the
# worker's path (pyspark.zip, py4j, --py-files; Python 3.11, CPython gh-103200), so small tasks spend
# half their time starting: 32 images per task took 13.8 s for 2,048 images, against 8.9 s for 1,024.
IMAGES_PER_PARTITION = 1024
ROWS_PER_FEATURES_FILE = 20_000


@dataclass(frozen=True)
class ExtractConfig:
    """The job's arguments, validated."""

    images: str
    features: str
    rejects: str
    weights: str = IMAGENET
    image_size: int = 224
    model_cache: str = field(default_factory=default_cache_dir)
    summary_json: str | None = None


@dataclass(frozen=True)
class ExtractSummary:
    """What one run did: ``n_inputs == n_known + n_featurized + n_rejected``.

    :param model_source: ``cache``, ``compiled`` or ``given`` (a model passed in); None when nothing
        was new, so no model was needed.
    :param seconds: wall seconds of each phase, for ``--summary-json``.
    """

    n_inputs: int
    n_known: int
    n_featurized: int
    n_rejected: int
    model_source: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def parse_args(argv: Sequence[str]) -> ExtractConfig:
    parser = argparse.ArgumentParser(prog=EXTRACT_FEATURES_JOB, description=__doc__.splitlines()[0])
    parser.add_argument(Flag.IMAGES, required=True, help="folder or s3:// prefix of <label>/<image> files")
    parser.add_argument(Flag.FEATURES, required=True, help="incremental features dataset (parquet)")
    parser.add_argument(Flag.REJECTS, help="rejected files dataset (default: FEATURES + '_rejects')")
    parser.add_argument(Flag.WEIGHTS, default=IMAGENET, help="imagenet (default), none, or a weights file")
    parser.add_argument("--image-size", type=int, default=224, help="square model input size in pixels")
    parser.add_argument(
        Flag.MODEL_CACHE,
        default=default_cache_dir(),
        help="folder or s3:// prefix of compiled models (default: $FRUITS_MODEL_CACHE, else a user cache folder)",
    )
    parser.add_argument(Flag.SUMMARY_JSON, help="local file to write the run's counts and phase times to, as JSON")
    args = parser.parse_args(argv)
    for flag, value in (
        (Flag.IMAGES, args.images),
        (Flag.FEATURES, args.features),
        (Flag.MODEL_CACHE, args.model_cache),
    ):
        if not value.strip():
            raise JobInputError(f"{flag} is empty; pass a folder or s3:// prefix")
    validate_image_size(args.image_size)
    features = args.features.rstrip("/")
    return ExtractConfig(
        images=args.images,
        features=features,
        rejects=(args.rejects or features + "_rejects").rstrip("/"),
        weights=args.weights,
        image_size=args.image_size,
        model_cache=args.model_cache,
        summary_json=args.summary_json,
    )


# --- extract -----------------------------------------------------------------------------------


def list_images(fs: HadoopFs, images_uri: str) -> Listing:
    """Every image file under ``images_uri`` (any depth, any case of extension); others ignored."""
    try:
        kind = fs.kind(images_uri)
    except OSError as error:
        raise JobInputError(f"--images {images_uri} cannot be read ({error}); check the URI and access to it") from None
    if kind is None:
        raise JobInputError(f"--images {images_uri} does not exist; pass the folder of <label>/<image> files")
    if kind == "file":
        raise JobInputError(f"--images {images_uri} is a file; pass the folder that holds the label folders")
    to_read, rejected, labels = [], {}, {}
    for entry in fs.list_files(images_uri):
        if not is_image_path(entry.path):
            continue
        labels[entry.path] = label_of(entry.path)
        reason = reject_reason_from_listing(entry.path, entry.size)
        if reason is None:
            to_read.append(entry.path)
        else:
            rejected[entry.path] = reason
    if not labels:
        raise JobInputError(f"--images {images_uri} holds no .jpg, .jpeg or .png files")
    return Listing(to_read=sorted(to_read), rejected=rejected, labels=labels)


def known_paths(spark: SparkSession, fs: HadoopFs, config: ExtractConfig) -> set[str]:
    """Paths already in the features or rejects dataset: a rerun must not touch them again.

    One Spark job for both datasets, reading the ``path`` column alone; none at all when neither
    holds a data file yet (a first run), which one listing each tells.
    """
    datasets = ((config.features, FEATURES_SCHEMA), (config.rejects, REJECTS_SCHEMA))
    if not any(_holds_data(fs, uri) for uri, _ in datasets):
        return set()
    features, rejects = (spark.read.schema(schema).parquet(uri).select("path") for uri, schema in datasets)
    return {row.path for row in features.union(rejects).collect()}


def _holds_data(fs: HadoopFs, uri: str) -> bool:
    """Whether any file under ``uri`` is one Spark's readers would read (not hidden by ``_`` or ``.``)."""
    return any(not entry.path.rsplit("/", 1)[-1].startswith(("_", ".")) for entry in fs.list_files(uri))


def unseen(listing: Listing, known: set[str]) -> Listing:
    return Listing(
        to_read=[path for path in listing.to_read if path not in known],
        rejected={path: reason for path, reason in listing.rejected.items() if path not in known},
        labels={path: label for path, label in listing.labels.items() if path not in known},
    )


def image_frame(spark: SparkSession, listing: Listing) -> DataFrame:
    """``path, label`` of the files to read, spread evenly over the cores in partitions of at most
    IMAGES_PER_PARTITION images; the executors fetch the files' bytes themselves (fruits_spark.fetch)."""
    rows = [(path, listing.labels[path]) for path in listing.to_read]
    slots = spark.sparkContext.defaultParallelism
    partitions = slots * max(1, math.ceil(len(rows) / (slots * IMAGES_PER_PARTITION)))
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, min(partitions, len(rows))), IMAGES_SCHEMA)


# --- transform ---------------------------------------------------------------------------------


def featurize(images: DataFrame, model: Broadcast, fingerprint: str, num_threads: int) -> DataFrame:
    """``path, label, features, reason``: features for decodable images, a reason for the rest.

    :param images: ``path, label`` of the files to featurize.
    :param model: the broadcast TFLite bytes; each Python worker loads them once.
    """

    @F.pandas_udf(_UDF_RESULT)
    def featurize_batches(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        featurizer = cached_featurizer(fingerprint, num_threads, lambda: model.value)
        for contents in worker_fetcher().prefetched(batches):
            yield featurize_contents(contents, featurizer)

    result = featurize_batches(F.col("path"))
    return images.select("path", "label", result["features"].alias("features"), result["reason"].alias("reason"))


# --- load --------------------------------------------------------------------------------------


def check_model_matches(fs: HadoopFs, config: ExtractConfig, model: CompiledModel) -> None:
    """Refuse to mix features of two different networks in one dataset."""
    metadata_uri = join_uri(config.features, MODEL_METADATA_FILE)
    if not fs.exists(metadata_uri):
        return
    recorded = json.loads(fs.read_bytes(metadata_uri))
    if recorded["fingerprint"] != model.fingerprint:
        raise JobInputError(
            f"--features {config.features} holds features of another model (weights "
            f"{recorded['weights']!r}, fingerprint {recorded['fingerprint']}) than this run's (weights "
            f"{model.weights!r}, fingerprint {model.fingerprint}); pass a new --features location"
        )


def record_model(fs: HadoopFs, config: ExtractConfig, model: CompiledModel) -> None:
    metadata = {"fingerprint": model.fingerprint, "weights": model.weights, "image_size": model.image_size}
    fs.write_bytes(join_uri(config.features, MODEL_METADATA_FILE), json.dumps(metadata).encode())


def append(frame: DataFrame, uri: str, n_rows: int) -> None:
    files = max(1, math.ceil(n_rows / ROWS_PER_FEATURES_FILE))
    frame.coalesce(files).write.mode("append").parquet(uri)


# --- the job -----------------------------------------------------------------------------------


def run(spark: SparkSession, config: ExtractConfig, model: CompiledModel | None = None) -> ExtractSummary:
    """Featurize what is new under ``config.images``.

    :param model: a model compiled beforehand (tests share one); by default the run loads the one
        ``config`` names from its cache (or compiles it), and only when there is something new.
    """
    times = PhaseTimes()
    fs = HadoopFs(spark)
    with times.phase("list"):
        listing = list_images(fs, config.images)
        fs.ensure_writable_dir(config.features, "--features")
        fs.ensure_writable_dir(config.rejects, "--rejects")
    with times.phase("known_paths"):
        known = known_paths(spark, fs, config)
    new = unseen(listing, known)
    n_known = listing.n_inputs - new.n_inputs
    log.info("%s: %d images, %d already done, %d new", config.images, listing.n_inputs, n_known, new.n_inputs)
    if new.n_inputs == 0:
        log.info("nothing new to featurize; %s is unchanged", config.features)
        return ExtractSummary(listing.n_inputs, n_known, 0, 0, seconds=times.seconds)

    with times.phase("model"):
        source = "given" if model is not None else None
        if model is None:
            model, source = load_or_compile(config.weights, config.image_size, config.model_cache, fs)
        check_model_matches(fs, config, model)
    result = spark.createDataFrame([], FEATURES_SCHEMA).withColumn("reason", F.lit(None).cast(StringType()))
    if new.to_read:
        broadcast_model = spark.sparkContext.broadcast(model.tflite)
        num_threads = int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))
        result = featurize(image_frame(spark, new), broadcast_model, model.fingerprint, num_threads)
    result = result.persist(StorageLevel.MEMORY_AND_DISK)
    with times.phase("featurize"), logged_progress(spark.sparkContext, f"featurize {len(new.to_read)} images"):
        n_featurized, n_unreadable = _count_featurized(result)
    n_rejected = n_unreadable + len(new.rejected)
    if n_featurized + n_rejected != new.n_inputs:
        raise RuntimeError(f"{new.n_inputs} new inputs but {n_featurized} features + {n_rejected} rejects")

    rejects = result.where(F.col("reason").isNotNull()).select("path", "label", "reason")
    rejects = rejects.unionByName(
        spark.createDataFrame(
            [(path, new.labels[path], reason) for path, reason in sorted(new.rejected.items())],
            REJECTS_SCHEMA,
        )
    )
    features = result.where(F.col("reason").isNull()).select("path", "label", "features")
    with times.phase("write"):
        record_model(fs, config, model)
        with logged_progress(spark.sparkContext, f"write {n_featurized} feature rows"):
            append(features, config.features, n_featurized)
        append(rejects, config.rejects, n_rejected)
    result.unpersist()
    log.info(
        "featurized %d, rejected %d -> %s (rejects: %s)", n_featurized, n_rejected, config.features, config.rejects
    )
    return ExtractSummary(listing.n_inputs, n_known, n_featurized, n_rejected, source, times.seconds)


def _count_featurized(result: DataFrame) -> tuple[int, int]:
    """``(features, unreadable)`` in one pass, which also fills ``result``'s cache for the writes."""
    try:
        row = result.agg(
            F.count_if(F.col("reason").isNull()).alias("featurized"),
            F.count_if(F.col("reason").isNotNull()).alias("unreadable"),
        ).first()
    except Exception as error:  # py4j's Py4JJavaError around the failed task's Python error
        message = fetch_failure(error)
        if message is None:
            raise
        raise JobInputError(f"--images {message}; check the access to it") from None
    assert row is not None, "an aggregation without grouping yields one row"
    return int(row.featurized), int(row.unreadable)


def summary_document(config: ExtractConfig, summary: ExtractSummary, seconds: dict[str, float]) -> dict:
    """What ``--summary-json`` holds: the counts, the model's source and each phase's wall seconds."""
    return {
        "job": "extract_features",
        "images": config.images,
        "features": config.features,
        "rejects": config.rejects,
        **{key: value for key, value in asdict(summary).items() if key != "seconds"},
        "seconds": seconds,
    }


def main(argv: Sequence[str]) -> None:
    started = time.monotonic()
    config = parse_args(argv)
    with spark_session("extract_features") as spark:
        session_started = time.monotonic()
        summary = run(spark, config)
        stopping = time.monotonic()
    if config.summary_json:
        seconds = {
            "session_start": round(session_started - started, 3),
            **summary.seconds,
            "session_stop": round(time.monotonic() - stopping, 3),
            "total": round(time.monotonic() - started, 3),
        }
        write_summary(config.summary_json, summary_document(config, summary, seconds))


def cli(argv: Sequence[str] | None = None) -> None:
    run_cli(main, argv, prog=EXTRACT_FEATURES_JOB)
