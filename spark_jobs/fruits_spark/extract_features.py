"""Job 1: MobileNetV2 features for every new or changed fruit image, appended to one incremental dataset.

    spark-submit --py-files fruits_spark.zip spark_jobs/extract_features.py \\
        --images s3://BUCKET/images/ --features s3://BUCKET/features/ [--rejects URI] \\
        [--weights imagenet|none|URI] [--image-size 224] \\
        [--model-cache s3://BUCKET/artifacts/models/] [--manifest s3://BUCKET/runs/RUN/manifest.json] \\
        [--summary-json summary.json]

Each row carries the path, size and modification time of the file it was computed from: a rerun
featurizes only the files whose path, size or modification time it has never seen (as features or
as rejects): new files, moved ones, and files rewritten in place. The dataset only grows; readers
keep its current rows (fruits_spark.listing). Files that cannot become features are recorded with a
reason in the rejects dataset, so features + rejects always account for every input file.
The compiled model comes from ``--model-cache`` when it holds it (no TensorFlow imported), else it is
compiled and stored there (fruits_spark.model_cache). Two reports share the run's counts: the
manifest (``--manifest``, fruits_contract.ManifestKeys) says what the run covered, for the DAG; the
``--summary-json`` file adds the phases' times, for tools.
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
from pyspark.sql.types import ArrayType, FloatType, LongType, StringType, StructField, StructType

from fruits_contract import EXTRACT_FEATURES_JOB, Flag, ManifestKeys
from fruits_spark.errors import JobInputError, run_cli
from fruits_spark.fetch import fetch_failure, worker_fetcher
from fruits_spark.images import Listing
from fruits_spark.inference import cached_featurizer, featurize_contents
from fruits_spark.listing import VERSION_COLUMNS, VERSIONS_SCHEMA, list_images, listing_digest
from fruits_spark.model import IMAGENET, CompiledModel, validate_image_size
from fruits_spark.model_cache import default_cache_dir, load_or_compile
from fruits_spark.progress import logged_progress
from fruits_spark.session import spark_session
from fruits_spark.storage import HadoopFs, join_uri, parent_uri
from fruits_spark.summary import PhaseTimes, write_summary

log = logging.getLogger("extract_features")

FEATURES_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("features", ArrayType(FloatType(), False), False),
        StructField("size", LongType(), False),
        StructField("modified", LongType(), False),
    ]
)
REJECTS_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("reason", StringType(), False),
        StructField("size", LongType(), False),
        StructField("modified", LongType(), False),
    ]
)
IMAGES_SCHEMA = VERSIONS_SCHEMA
_UDF_RESULT = StructType([StructField("features", ArrayType(FloatType())), StructField("reason", StringType())])
MODEL_METADATA_FILE = "_fruits_model.json"
# Images per task, at most. Each PySpark task first spends 0.2-0.5 s re-reading every zip on the
# worker's path (pyspark.zip, py4j, --py-files; Python 3.11, CPython gh-103200), so small tasks spend
# half their time starting: 32 images per task took 13.8 s for 2,048 images, against 8.9 s for 1,024.
IMAGES_PER_PARTITION = 1024
ROWS_PER_FEATURES_FILE = 20_000
# What identifies the content features were computed from: path, size, modification time (ms).
Version = tuple[str, int, int]


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
    manifest: str | None = None
    imagenet_weights: str | None = None


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
    parser.add_argument(Flag.MANIFEST, help="where to write the run's manifest (JSON), e.g. runs/RUN/manifest.json")
    parser.add_argument(Flag.FAILURE, help="where to write why the job failed, as JSON (a file or s3:// URI)")
    parser.add_argument(
        Flag.IMAGENET_WEIGHTS,
        help="Keras's ImageNet weights file (path or s3://) to compile --weights imagenet with, instead of a download",
    )
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
        manifest=args.manifest,
        imagenet_weights=args.imagenet_weights,
    )


# --- extract -----------------------------------------------------------------------------------


def known_versions(spark: SparkSession, fs: HadoopFs, config: ExtractConfig) -> tuple[set[Version], set[Version]]:
    """``(path, size, modified)`` of every row of the features and of the rejects dataset.

    One Spark job for both datasets, reading those columns alone; none at all when neither holds a
    data file yet (a first run), which one listing each tells. Rows written before the datasets carried
    size and modification time match no listed file: their images are featurized again, once.
    """
    datasets = ((config.features, FEATURES_SCHEMA), (config.rejects, REJECTS_SCHEMA))
    if not any(_holds_data(fs, uri) for uri, _ in datasets):
        return set(), set()
    features, rejects = (
        spark.read.schema(schema).parquet(uri).select(*VERSION_COLUMNS, F.lit(dataset).alias("dataset"))
        for dataset, (uri, schema) in enumerate(datasets)
    )
    known: tuple[set[Version], set[Version]] = (set(), set())
    for row in features.union(rejects).collect():
        known[row.dataset].add((row.path, row.size, row.modified))
    return known


def _holds_data(fs: HadoopFs, uri: str) -> bool:
    """Whether any file under ``uri`` is one Spark's readers would read (not hidden by ``_`` or ``.``)."""
    return any(not entry.path.rsplit("/", 1)[-1].startswith(("_", ".")) for entry in fs.list_files(uri))


def unseen(listing: Listing, known: set[Version]) -> Listing:
    """The listed files whose current content has neither features nor a reject yet."""

    def new(path: str) -> bool:
        return (path, *listing.versions[path]) not in known

    return Listing(
        to_read=[path for path in listing.to_read if new(path)],
        rejected={path: reason for path, reason in listing.rejected.items() if new(path)},
        labels={path: label for path, label in listing.labels.items() if new(path)},
        versions={path: version for path, version in listing.versions.items() if new(path)},
    )


def image_frame(spark: SparkSession, listing: Listing) -> DataFrame:
    """``path, label, size, modified`` of the files to read, spread evenly over the cores in partitions of at most
    IMAGES_PER_PARTITION images; the executors fetch the files' bytes themselves (fruits_spark.fetch)."""
    rows = [(path, listing.labels[path], *listing.versions[path]) for path in listing.to_read]
    slots = spark.sparkContext.defaultParallelism
    partitions = slots * max(1, math.ceil(len(rows) / (slots * IMAGES_PER_PARTITION)))
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, min(partitions, len(rows))), IMAGES_SCHEMA)


# --- transform ---------------------------------------------------------------------------------


def featurize(images: DataFrame, model: Broadcast, fingerprint: str, num_threads: int) -> DataFrame:
    """``path, label, size, modified, features, reason``: features for decodable images, a reason for the rest.

    :param images: ``path, label, size, modified`` of the files to featurize.
    :param model: the broadcast TFLite bytes; each Python worker loads them once.
    """

    @F.pandas_udf(_UDF_RESULT)
    def featurize_batches(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        featurizer = cached_featurizer(fingerprint, num_threads, lambda: model.value)
        for contents in worker_fetcher().prefetched(batches):
            yield featurize_contents(contents, featurizer)

    result = featurize_batches(F.col("path"))
    return images.select(
        "path", "label", "size", "modified", result["features"].alias("features"), result["reason"].alias("reason")
    )


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


def discard_uncommitted(fs: HadoopFs, uri: str) -> None:
    """Remove what a killed run left in ``uri``'s ``_temporary/`` before appending to it.

    Readers skip that folder, but Hadoop's committer (algorithm 1) commits every task output it finds
    under ``_temporary/0/`` with the job's own: the committed tasks of a run killed before its job
    commit would land beside their images' features of this run, twice. The DAG runs one run at a
    time (``max_active_runs=1``), so no live job writes there.
    """
    leftover = join_uri(uri, "_temporary")
    if fs.exists(leftover):
        log.warning("removing %s: the uncommitted output of a run that was killed", leftover)
        fs.delete(leftover, recursive=True)


# --- the job -----------------------------------------------------------------------------------


def run(spark: SparkSession, config: ExtractConfig, model: CompiledModel | None = None) -> ExtractSummary:
    """Featurize the images under ``config.images`` that are new or changed, and write the manifest.

    :param model: a model compiled beforehand (tests share one); by default the run loads the one
        ``config`` names from its cache (or compiles it), and only when there is something new.
    """
    times = PhaseTimes()
    fs = HadoopFs(spark)
    with times.phase("list"):
        listing = list_images(fs, config.images)
        fs.ensure_writable_dir(config.features, "--features")
        fs.ensure_writable_dir(config.rejects, "--rejects")
        if config.manifest:
            fs.ensure_writable_dir(parent_uri(config.manifest), "--manifest")
    with times.phase("known_versions"):
        known_features, known_rejects = known_versions(spark, fs, config)
    new = unseen(listing, known_features | known_rejects)
    n_known = listing.n_inputs - new.n_inputs
    log.info(
        "%s: %d images, %d already done, %d new or changed", config.images, listing.n_inputs, n_known, new.n_inputs
    )
    n_featurized = n_rejected = 0
    if new.n_inputs == 0:
        log.info("nothing new to featurize; %s is unchanged", config.features)
        source = None
    else:
        n_featurized, n_rejected, source = featurize_new(spark, fs, config, new, model, times)
    summary = ExtractSummary(listing.n_inputs, n_known, n_featurized, n_rejected, source, times.seconds)
    if config.manifest:
        with times.phase("manifest"):
            write_manifest(fs, config, listing, summary, known_features, known_rejects)
    current = {(path, *version) for path, version in listing.versions.items()}
    if not current & known_features and n_featurized == 0:
        raise JobInputError(
            f"no image could be decoded: all {listing.n_inputs} under {Flag.IMAGES} {config.images} were rejected, "
            f"with their reasons in {config.rejects}; replace them with readable .jpg, .jpeg or .png files"
        )
    return summary


def featurize_new(
    spark: SparkSession,
    fs: HadoopFs,
    config: ExtractConfig,
    new: Listing,
    model: CompiledModel | None,
    times: PhaseTimes,
) -> tuple[int, int, str]:
    """Featurize ``new`` and append its features and rejects; returns how many of each, and the model's source."""
    with times.phase("model"):
        source = "given" if model is not None else None
        if model is None:
            model, source = load_or_compile(
                config.weights, config.image_size, config.model_cache, fs, imagenet_weights=config.imagenet_weights
            )
        check_model_matches(fs, config, model)
    result = spark.createDataFrame([], IMAGES_SCHEMA)
    result = result.withColumn("features", F.lit(None).cast(ArrayType(FloatType())))
    result = result.withColumn("reason", F.lit(None).cast(StringType()))
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

    rejects = result.where(F.col("reason").isNotNull()).select(*REJECTS_SCHEMA.fieldNames())
    rejects = rejects.unionByName(
        spark.createDataFrame(
            [(path, new.labels[path], reason, *new.versions[path]) for path, reason in sorted(new.rejected.items())],
            REJECTS_SCHEMA,
        )
    )
    features = result.where(F.col("reason").isNull()).select(*FEATURES_SCHEMA.fieldNames())
    with times.phase("write"):
        record_model(fs, config, model)
        discard_uncommitted(fs, config.features)
        discard_uncommitted(fs, config.rejects)
        with logged_progress(spark.sparkContext, f"write {n_featurized} feature rows"):
            append(features, config.features, n_featurized)
        append(rejects, config.rejects, n_rejected)
    result.unpersist()
    log.info(
        "featurized %d, rejected %d -> %s (rejects: %s)", n_featurized, n_rejected, config.features, config.rejects
    )
    assert source is not None, "a model was given, loaded or compiled"
    return n_featurized, n_rejected, source


def write_manifest(
    fs: HadoopFs,
    config: ExtractConfig,
    listing: Listing,
    summary: ExtractSummary,
    known_features: set[Version],
    known_rejects: set[Version],
) -> None:
    """The run's manifest (``fruits_contract.ManifestKeys``): what the DAG compares before its next cluster."""
    assert config.manifest is not None, "written only when --manifest names a file"
    current = {(path, *version) for path, version in listing.versions.items()}
    n_reused = len(current & known_features)
    n_rejected = len(current & known_rejects) + summary.n_rejected
    manifest = {
        ManifestKeys.IMAGES: config.images,
        ManifestKeys.IMAGES_DIGEST: listing_digest(fs, config.images, listing),
        ManifestKeys.N_IMAGES: listing.n_inputs,
        ManifestKeys.N_FEATURIZED: summary.n_featurized,
        ManifestKeys.N_REUSED: n_reused,
        ManifestKeys.N_REJECTED: n_rejected,
        ManifestKeys.N_FEATURES: n_reused + summary.n_featurized,
        ManifestKeys.N_STALE_ROWS: len(known_features - current),
        ManifestKeys.FEATURES: config.features,
    }
    fs.write_bytes(config.manifest, json.dumps(manifest, indent=2).encode())
    log.info("manifest: %s", manifest)


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
