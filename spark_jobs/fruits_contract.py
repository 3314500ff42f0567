"""What the Airflow side and the Spark jobs agree on, in the one place both import.

The DAG builds the jobs' command lines, uploads only files the jobs will read, and checks the outputs
the jobs write; each of those is an agreement, and a drift shows only when a cluster runs. So both
sides take the names below from here. Standard library only: the Airflow side imports it without
pyspark (``spark_jobs/`` is on its path), and the jobs get it inside their ``--py-files`` zip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

# --- the images the jobs read ------------------------------------------------------------------

IMAGE_SUFFIXES: Final = (".jpg", ".jpeg", ".png")
# Hadoop's input formats skip names starting with these, and so does Spark's file listing.
HIDDEN_NAME_PREFIXES: Final = ("_", ".")


def is_image_name(name: str) -> bool:
    """Whether a file name has an image suffix, in any case."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def is_hidden_name(name: str) -> bool:
    """Whether Hadoop treats a file or folder name as hidden (never listed, never read)."""
    return name.startswith(HIDDEN_NAME_PREFIXES)


# --- the model's weights ------------------------------------------------------------------------

IMAGENET_WEIGHTS: Final = "imagenet"
RANDOM_WEIGHTS: Final = "none"
DEFAULT_WEIGHTS: Final = IMAGENET_WEIGHTS
# Fixed so every run with weights none builds the same network and incremental features agree.
RANDOM_WEIGHTS_SEED: Final = 42
DEFAULT_IMAGE_SIZE: Final = 224

# --- the compiled-model cache (fruits_spark.model_cache) -----------------------------------------
# The DAG looks an entry up before a cluster starts: when the run's model is there, no node needs
# TensorFlow (the primary gets the core nodes' packages).

# Bumped when the entry layout or the way a key's model is built changes: older entries are then ignored.
MODEL_CACHE_FORMAT: Final = 1
MODEL_CACHE_MANIFEST_SUFFIX: Final = ".json"
_MODEL_NAME: Final = "mobilenet_v2"


def weights_identity(weights: str, *, keras_version: str | None, file_sha256: str | None = None) -> str:
    """What names the weights: Keras's version for ImageNet's, the seed for random ones, a file's content hash.

    :param file_sha256: the hex sha256 of the weights file ``weights`` names (neither imagenet nor none).
    """
    if weights == IMAGENET_WEIGHTS:
        return f"imagenet-keras{keras_version or 'unknown'}"
    if weights == RANDOM_WEIGHTS:
        return f"none-seed{RANDOM_WEIGHTS_SEED}"
    if file_sha256 is None:
        raise ValueError(f"the identity of weights file {weights} needs its sha256")
    return f"file-sha256-{file_sha256[:32]}"


def model_cache_entry(*, weights_identity: str, image_size: int, converter: str) -> str:
    """The name of a cache entry, without suffix: ``<name>.tflite`` and ``<name>.json`` (its manifest)."""
    return f"{_MODEL_NAME}-{image_size}px-{weights_identity}-tf{converter}-v{MODEL_CACHE_FORMAT}"


# --- the PCA and its report ---------------------------------------------------------------------

DEFAULT_VARIANCE: Final = 0.95
# The fewest images a PCA is fitted on: a covariance needs two vectors. The DAG refuses a run with fewer
# images in the bucket before it starts a cluster; the pca job refuses fewer features.
PCA_MIN_IMAGES: Final = 2
PCA_COLUMN: Final = "pca_features"
VARIANCE_REPORT: Final = "explained_variance.json"
CSV_REPORT: Final = "pca_features.csv"
CUMULATIVE_PLOT: Final = "cumulative_variance.png"
SCATTER_PLOT: Final = "pca_scatter.png"
SEPARABILITY_REPORT: Final = "separability.json"
REPORT_FILES: Final = (VARIANCE_REPORT, CSV_REPORT, CUMULATIVE_PLOT, SCATTER_PLOT, SEPARABILITY_REPORT)

# --- the PCA's report: the separability check -------------------------------------------------

# A logistic regression on the PCA features, trained on all but a stratified hold-out of each label.
SEPARABILITY_HOLDOUT: Final = 0.25
SEPARABILITY_SEED: Final = 0
RANDOM_WEIGHTS_NOTE: Final = (
    "A first sign only: with MobileNetV2's random weights (weights 'none') the features, and so this accuracy, "
    "say little about the fruit; with ImageNet's they start to."
)


class Separability:
    """The keys of ``separability.json``: ``status`` is ``ok``, or ``skipped`` with a ``reason``."""

    STATUS: Final = "status"
    REASON: Final = "reason"
    HOLDOUT: Final = "holdout_fraction"
    N_TRAIN: Final = "n_train"
    N_TEST: Final = "n_test"
    ACCURACY: Final = "accuracy"
    # one {label, n_test, correct, accuracy} per label; accuracy is null when none was held out
    PER_LABEL: Final = "per_label"
    MODEL: Final = "model"


# --- a run's summary: s3://BUCKET/runs/<run key>/summary.json, the Assets' event extra -----------

RUN_SUMMARY: Final = "summary.json"
# The longest list of rejects a summary carries (its count is always complete).
SUMMARY_MAX_REJECTS: Final = 500


class Summary:
    """The keys of a run's summary; readers take any of them as possibly absent (older runs)."""

    DAG_ID: Final = "dag_id"
    RUN_ID: Final = "run_id"
    RUN_KEY: Final = "run_key"
    CLUSTER_CREATED: Final = "cluster_created"  # false when the run reused another run's outputs
    REUSED_RUN_ID: Final = "reused_run_id"  # the run whose outputs this run reused, or null
    WEIGHTS: Final = "weights"
    UPLOADED: Final = "uploaded"  # files the upload sent (new or changed)
    REMOVED: Final = "removed"  # objects the upload removed from images/ (gone from the landing folder)
    FEATURIZED: Final = "featurized"  # images featurized by this run's cluster (0 when reused)
    REUSED: Final = "reused"  # images whose features were reused (all of them when the outputs were)
    REJECTED: Final = "rejected"  # listed images that cannot become features
    REJECTS: Final = "rejects"  # [{path, label, reason}], at most SUMMARY_MAX_REJECTS
    N_IMAGES: Final = "n_images"  # rows of the PCA: one per image with features
    K: Final = "k"
    THRESHOLD: Final = "threshold"  # the variance the run asked for
    IMAGES_DIGEST: Final = "images_digest"  # images_digest() of the images the PCA covers
    CHECKED_AT: Final = "checked_at"
    VARIANCE_KEPT: Final = "variance_kept"
    SEPARABILITY_ACCURACY: Final = "separability_accuracy"
    OUTPUTS: Final = "outputs"  # {name: s3 URI}
    COST: Final = "cost"  # the run's bill: {usd, node_hours, nodes: {type: n}, markets, lines, ...}; $0 when reused
    CLUSTER_SIZE: Final = "cluster_size"  # {core_count, images_to_featurize, reason}; null when reused


# --- the jobs' command lines --------------------------------------------------------------------

EXTRACT_FEATURES_JOB: Final = "extract_features"
PCA_JOB: Final = "pca"


class Flag:
    """The jobs' command-line flags: the DAG's steps pass them, each job's parser declares them."""

    IMAGES: Final = "--images"
    FEATURES: Final = "--features"
    REJECTS: Final = "--rejects"
    WEIGHTS: Final = "--weights"
    OUTPUT: Final = "--output"
    VARIANCE: Final = "--variance"
    REPORT: Final = "--report"
    MANIFEST: Final = "--manifest"
    # The compiled-model cache: a folder or s3:// prefix (fruits_spark.model_cache); the DAG's runs share
    # s3://BUCKET/artifacts/models/.
    MODEL_CACHE: Final = "--model-cache"
    # Keras's ImageNet weights file of the headless MobileNetV2, for a compile on nodes without internet;
    # the DAG passes s3://BUCKET/artifacts/keras/<Keras's file name> when the model cache misses it.
    IMAGENET_WEIGHTS: Final = "--imagenet-weights"
    # A local file for the run's counts and phase times as JSON (fruits_spark.summary), for tools.
    SUMMARY_JSON: Final = "--summary-json"
    # Where a job that fails writes why, as JSON (keys JobFailure): a local file or an s3:// URI.
    FAILURE: Final = "--failure"


def extract_features_argv(
    *,
    images: str,
    features: str,
    rejects: str,
    weights: str,
    model_cache: str,
    manifest: str,
    failure: str,
    imagenet_weights: str | None = None,
) -> list[str]:
    """The arguments of ``extract_features.py`` for one run."""
    return [
        *(Flag.IMAGES, images, Flag.FEATURES, features, Flag.REJECTS, rejects),
        *(Flag.WEIGHTS, weights, Flag.MODEL_CACHE, model_cache, Flag.MANIFEST, manifest, Flag.FAILURE, failure),
        *((Flag.IMAGENET_WEIGHTS, imagenet_weights) if imagenet_weights else ()),
    ]


def pca_argv(
    *, features: str, output: str, variance: float, report: str, images: str, manifest: str, failure: str
) -> list[str]:
    """The arguments of ``pca.py`` for one run; ``repr`` keeps every digit of the variance."""
    return [
        *(Flag.FEATURES, features, Flag.OUTPUT, output, Flag.VARIANCE, repr(float(variance)), Flag.REPORT, report),
        *(Flag.IMAGES, images, Flag.MANIFEST, manifest, Flag.FAILURE, failure),
    ]


# --- a job's failure, for machines: s3://BUCKET/runs/<run key>/failures/<job>.json ---------------
# A job that fails writes its own one-line reason there (``--failure``) before it exits, so the DAG
# reports the job's words first, never a line found in a log, and not EMR's FailureDetails (often
# "Unknown Error").

JOB_FAILURES_DIR: Final = "failures/"


def job_failure_file(job: str) -> str:
    """The name of a job's failure file in the run's JOB_FAILURES_DIR, e.g. ``pca.json``."""
    return f"{job}.json"


class JobFailure:
    """The keys of a job's failure file."""

    JOB: Final = "job"  # EXTRACT_FEATURES_JOB or PCA_JOB
    MESSAGE: Final = "message"  # the job's one line, as it printed it: "pca: error: ..."
    KIND: Final = "kind"  # INPUT_ERROR (the user can fix it, the message says how) or UNEXPECTED_ERROR
    EXIT_CODE: Final = "exit_code"


INPUT_ERROR: Final = "input"
UNEXPECTED_ERROR: Final = "unexpected"


# --- what a run covered, and its report ---------------------------------------------------------
# The manifest (runs/<run key>/manifest.json, written by extract_features) says which images the run
# covered and how their features were obtained; its images_digest is what the DAG compares with the
# images in S3, before creating a cluster, to tell whether anything changed since a checked run. The
# summary (RUN_SUMMARY, keys Summary, written by check_output once the output is checked) is the run's
# report. runs/_latest/<weights id>.json holds the newest summary of a run that computed its outputs,
# for each network.

MANIFEST_FILE: Final = "manifest.json"
# Run keys never start with "_" (fruits_airflow.paths.run_key), so no run's prefix can be this one.
LATEST_RUNS_PREFIX: Final = "runs/_latest/"


class ManifestKeys:
    """The keys of ``manifest.json``."""

    IMAGES: Final = "images"  # the --images URI the run listed
    IMAGES_DIGEST: Final = "images_digest"  # images_digest() of that listing
    N_IMAGES: Final = "n_images"  # image files listed
    N_FEATURIZED: Final = "n_featurized"  # images new or changed since their last features: featurized now
    N_REUSED: Final = "n_reused"  # images whose features of the same content were already in the dataset
    N_REJECTED: Final = "n_rejected"  # listed images that cannot become features (this run's or earlier)
    N_FEATURES: Final = "n_features"  # listed images that have features: the rows of the run's PCA
    N_STALE_ROWS: Final = "n_stale_rows"  # rows of the features dataset that no listed image has any more
    FEATURES: Final = "features"  # the --features dataset


def images_digest(images: Iterable[tuple[str, int, int]]) -> str:
    """A digest of a listing of images: ``(path relative to images/, size, modification time in ms)``.

    The modification time counts in whole seconds: S3 lists it to the second, so the DAG (boto3) and
    the jobs (Hadoop's FileSystem) agree on it. Any file added, removed, moved or rewritten changes it.
    """
    lines = sorted(f"{path}\t{size}\t{modified // 1000}" for path, size, modified in images)
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()
