"""The S3 layout of the pipeline, in one place.

```
s3://BUCKET/images/<label>/<file>        the uploaded landing folder
s3://BUCKET/features/<weights id>/       features of every image, grown incrementally by the runs
s3://BUCKET/features_rejects/<weights id>/  images the featurizer could not read
s3://BUCKET/runs/<run key>/pca/          this run's PCA output (parquet + _SUCCESS)
s3://BUCKET/runs/<run key>/report/       this run's explained variance, CSV and plots
s3://BUCKET/runs/<run key>/failure.json  why this run's EMR work failed, when it did
s3://BUCKET/runs/<run key>/failures/<job>.json  a failed job's own reason (fruits_contract.JobFailure)
s3://BUCKET/runs/<run key>/manifest.json what extract_features covered (fruits_contract.ManifestKeys)
s3://BUCKET/runs/<run key>/summary.json  the checked run's report (fruits_contract.Summary)
s3://BUCKET/runs/_latest/<weights id>.json  the newest checked summary for each network
s3://BUCKET/logs/                        the clusters' LogUri
s3://BUCKET/artifacts/<version>/         the Spark jobs and bootstrap of one code version
s3://BUCKET/artifacts/models/            compiled models, written by extract_features, shared by every run
```

Each network has its own incremental dataset, named by its weights (``imagenet``, ``none``, or
``file-<hash>`` for a weights file), so a PCA never mixes features of two models and switching back to
earlier weights featurizes only what is new. A run that reprocesses every image gets its own
``runs/<run key>/features/`` (and ``features_rejects/``) instead, leaving the shared ones untouched.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from fruits_contract import (
    IMAGENET_WEIGHTS,
    JOB_FAILURES_DIR,
    LATEST_RUNS_PREFIX,
    MANIFEST_FILE,
    RANDOM_WEIGHTS,
    RUN_SUMMARY,
    job_failure_file,
)

IMAGES_PREFIX = "images/"
FEATURES_PREFIX = "features/"
REJECTS_PREFIX = "features_rejects/"
RUNS_PREFIX = "runs/"
LOGS_PREFIX = "logs/"
ARTIFACTS_PREFIX = "artifacts/"
# Beside the code versions (12 hex digits each), never one of them.
MODELS_PREFIX = f"{ARTIFACTS_PREFIX}models/"

_HADOOP_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def run_key(run_id: str) -> str:
    """A Hadoop-path-safe key for a DAG run id.

    Run ids contain ``:`` and ``+`` (``manual__2025-01-01T00:00:00+00:00``), which Hadoop paths
    reject, and may start with ``_`` or ``.``, which Hadoop treats as hidden. Those characters become
    ``_``; when anything had to change, a short hash of the original id keeps distinct run ids
    apart.
    """
    if not run_id:
        raise ValueError("a DAG run id is needed to name the run's S3 prefix")
    key = _HADOOP_UNSAFE.sub("_", run_id)
    if not key[0].isalnum():
        key = f"run{key}"
    if key != run_id:
        key = f"{key}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"
    return key


def weights_id(weights: str) -> str:
    """A folder name for the network that ``weights`` (a trigger-form value) builds."""
    if weights in (IMAGENET_WEIGHTS, RANDOM_WEIGHTS):
        return weights
    return f"file-{hashlib.sha256(weights.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class RunPaths:
    """Where one run reads and writes.

    :param bucket: the pipeline's bucket.
    :param run_key: the run's Hadoop-safe key, from ``run_key``.
    :param weights_id: the network's folder in the shared datasets, from ``weights_id``.
    :param own_features: when true, the run featurizes every image into its own prefix instead of
        adding the new images to the network's shared dataset.
    """

    bucket: str
    run_key: str
    weights_id: str = "imagenet"
    own_features: bool = False

    @classmethod
    def for_run(cls, bucket: str, run_id: str, *, reprocess_all: bool, weights: str) -> RunPaths:
        """The paths of a run, given the trigger form's choices."""
        return cls(bucket, run_key(run_id), weights_id(weights), own_features=reprocess_all)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    @property
    def run_prefix(self) -> str:
        return f"{RUNS_PREFIX}{self.run_key}/"

    @property
    def images_uri(self) -> str:
        return self.uri(IMAGES_PREFIX)

    @property
    def features_prefix(self) -> str:
        return f"{self.run_prefix}{FEATURES_PREFIX}" if self.own_features else f"{FEATURES_PREFIX}{self.weights_id}/"

    @property
    def features_uri(self) -> str:
        return self.uri(self.features_prefix)

    @property
    def rejects_prefix(self) -> str:
        return f"{self.run_prefix}{REJECTS_PREFIX}" if self.own_features else f"{REJECTS_PREFIX}{self.weights_id}/"

    @property
    def rejects_uri(self) -> str:
        return self.uri(self.rejects_prefix)

    @property
    def pca_prefix(self) -> str:
        return f"{self.run_prefix}pca/"

    @property
    def pca_uri(self) -> str:
        return self.uri(self.pca_prefix)

    @property
    def pca_success_key(self) -> str:
        return f"{self.pca_prefix}_SUCCESS"

    @property
    def report_prefix(self) -> str:
        return f"{self.run_prefix}report/"

    @property
    def report_uri(self) -> str:
        return self.uri(self.report_prefix)

    @property
    def failure_key(self) -> str:
        """The failure report of a run whose steps or cluster failed (``run_failures.RunFailure.to_dict``)."""
        return f"{self.run_prefix}failure.json"

    def job_failure_key(self, job: str) -> str:
        """Where a failed job of this run writes its own reason (``--failure``, keys ``fruits_contract.JobFailure``)."""
        return f"{self.run_prefix}{JOB_FAILURES_DIR}{job_failure_file(job)}"

    @property
    def manifest_key(self) -> str:
        """What extract_features covered: the images' digest and counts (``fruits_contract.ManifestKeys``)."""
        return f"{self.run_prefix}{MANIFEST_FILE}"

    @property
    def summary_key(self) -> str:
        """The report of a run whose output was checked (``fruits_contract.Summary``)."""
        return f"{self.run_prefix}{RUN_SUMMARY}"

    @property
    def latest_key(self) -> str:
        """The newest checked summary of the runs with this network, whichever run wrote it."""
        return f"{LATEST_RUNS_PREFIX}{self.weights_id}.json"

    @property
    def model_cache_uri(self) -> str:
        """The compiled-model cache of the steps' ``--model-cache``: one for every run and network."""
        return self.uri(MODELS_PREFIX)

    @property
    def logs_uri(self) -> str:
        return self.uri(LOGS_PREFIX)
