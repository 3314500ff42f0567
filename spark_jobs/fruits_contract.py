"""What the Airflow side and the Spark jobs agree on, with the standard library alone.

Both sides import it as ``fruits_contract``: the DAG's tasks from ``spark_jobs/`` on Airflow's path, the
jobs from the ``--py-files`` zip. Written once here, never twice.

The run's manifest (``runs/<run key>/manifest.json``, written by ``extract_features``) says which images
the run covered and how their features were obtained; its ``images_digest`` is what the DAG compares
with the images in S3, before creating a cluster, to tell whether anything changed since a successful
run. The run's summary (``runs/<run key>/summary.json``, written by ``check_output`` once the output is
checked) is the run's report: what the upload did, what was featurized or reused, where the outputs
are. ``runs/_latest/<weights id>.json`` holds a copy of the newest checked summary for each network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

MANIFEST_FILE = "manifest.json"
SUMMARY_FILE = "summary.json"
# Run keys never start with "_" (fruits_airflow.paths.run_key), so no run's prefix can be this one.
LATEST_RUNS_PREFIX = "runs/_latest/"


class ManifestKeys:
    """The keys of ``manifest.json``."""

    IMAGES = "images"  # the --images URI the run listed
    IMAGES_DIGEST = "images_digest"  # images_digest() of that listing
    N_IMAGES = "n_images"  # image files listed
    N_FEATURIZED = "n_featurized"  # images new or changed since their last features: featurized by this run
    N_REUSED = "n_reused"  # images whose features of the same content were already in the dataset
    N_REJECTED = "n_rejected"  # listed images that cannot become features (this run's or earlier)
    N_FEATURES = "n_features"  # listed images that have features: the rows of the run's PCA
    N_STALE_ROWS = "n_stale_rows"  # rows of the features dataset no listed image has any more
    FEATURES = "features"  # the --features dataset


class SummaryKeys:
    """The keys of ``summary.json``, the report of a run whose output was checked."""

    DAG_ID = "dag_id"
    RUN_ID = "run_id"
    RUN_KEY = "run_key"
    CLUSTER_CREATED = "cluster_created"  # false when the run reused another run's outputs
    REUSED_RUN_ID = "reused_run_id"  # the run whose outputs this run reused, or null
    UPLOADED = "uploaded"  # files the upload sent (new or changed)
    REMOVED = "removed"  # objects the upload removed from images/ (gone from the landing folder)
    FEATURIZED = "featurized"  # images featurized by this run's cluster (0 when reused)
    REUSED = "reused"  # images whose features were reused (all of them when the outputs were)
    REJECTED = "rejected"  # images that cannot become features
    N_IMAGES = "n_images"  # rows of the PCA: one per image with features
    K = "k"
    VARIANCE = "variance"
    WEIGHTS = "weights"
    IMAGES_DIGEST = "images_digest"
    PCA = "pca"  # the PCA output's URI (the reused run's when reused)
    REPORT = "report"  # the report's URI (likewise)
    CHECKED_AT = "checked_at"


def is_image_name(name: str) -> bool:
    """Whether a file name or key is an input image, by its suffix in any case."""
    return name.lower().endswith(IMAGE_SUFFIXES)


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
