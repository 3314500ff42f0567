"""A run's summary: what it uploaded, featurized and rejected, what its PCA kept, and where its outputs are.

``check_output`` writes it beside the outputs, as ``s3://BUCKET/runs/<run key>/summary.json``, and puts it
(without the list of rejects) in the extra of the run's asset events. The run's report view reads it. Its
keys are ``fruits_contract.Summary``; a summary from another version may lack some, or hold more, and
readers take it so.

The counts of images come from the manifest ``extract_features`` wrote (``featurized`` now, ``reused``
from the dataset, ``rejected``), the upload's from its XCom (``uploaded``, ``removed``). A run that reused
another run's outputs (no cluster) says so (``cluster_created: false``, ``reused_run_id``), counts every
image as reused, and points its ``outputs`` at that run's PCA and report. A run that computed its outputs
also becomes its network's latest (``runs/_latest/<weights id>.json``), which the next run compares with.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from botocore.client import BaseClient

from fruits_airflow.output_check import OutputSummary, read_rows
from fruits_airflow.paths import RunPaths
from fruits_contract import (
    SEPARABILITY_REPORT,
    SUMMARY_MAX_REJECTS,
    VARIANCE_REPORT,
    ManifestKeys,
    Separability,
    Summary,
)

log = logging.getLogger(__name__)

# What the upload task reports, when it returns a dict (the landing sync's): files sent and removed.
UPLOAD_KEYS = (Summary.UPLOADED, Summary.REMOVED)


def summary_key(paths: RunPaths) -> str:
    """The run's ``summary.json`` (``fruits_contract.RUN_SUMMARY``)."""
    return paths.summary_key


def _json(s3_client: BaseClient, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())


def upload_counts(upload_result: Any) -> dict[str, Any]:
    """The upload task's XCom as summary keys: its count of uploaded files, or the counts of its dict."""
    if isinstance(upload_result, dict):
        return {key: upload_result[key] for key in UPLOAD_KEYS if key in upload_result}
    if isinstance(upload_result, int):
        return {Summary.UPLOADED: upload_result}
    return {}


def build_summary(
    s3_client: BaseClient,
    paths: RunPaths,
    checked: OutputSummary,
    *,
    dag_id: str,
    run_id: str,
    weights: str,
    upload_result: Any = None,
    variance: float | None = None,
    outputs: RunPaths | None = None,
    reused_run_id: str | None = None,
    cost: dict[str, Any] | None = None,
    cluster_size: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary of a run whose output passed the check, from its manifest, its report and its rejects.

    :param paths: the run's own paths (its summary's place, the features and rejects it used).
    :param checked: what ``output_check.verify_output`` found in ``outputs``.
    :param variance: the variance the run asked for; by default, the threshold the report names.
    :param outputs: where the checked PCA, report and manifest are: the reused run's, or (default) ``paths``.
    :param reused_run_id: the run whose outputs this one reused, when it created no cluster.
    :param cost: the run's bill (``fruits_airflow.cost``); $0 and no nodes when it reused outputs.
    :param cluster_size: the size the plan chose for the run's cluster, and why (``cluster.ClusterSize``).
    """
    outputs = outputs or paths
    reused = reused_run_id is not None
    manifest = checked.manifest
    report = _json(s3_client, outputs.bucket, f"{outputs.report_prefix}{VARIANCE_REPORT}")
    cumulative = report.get("cumulative") or []
    separability = _json(s3_client, outputs.bucket, f"{outputs.report_prefix}{SEPARABILITY_REPORT}")
    n_rejected, rejects = read_rows(
        s3_client, paths.bucket, paths.rejects_prefix, ["path", "label", "reason"], SUMMARY_MAX_REJECTS
    )
    return {
        Summary.DAG_ID: dag_id,
        Summary.RUN_ID: run_id,
        Summary.RUN_KEY: paths.run_key,
        Summary.CLUSTER_CREATED: not reused,
        Summary.REUSED_RUN_ID: reused_run_id,
        Summary.WEIGHTS: weights,
        **upload_counts(upload_result),
        Summary.FEATURIZED: 0 if reused else manifest.get(ManifestKeys.N_FEATURIZED, checked.n_features),
        Summary.REUSED: checked.n_features if reused else manifest.get(ManifestKeys.N_REUSED, 0),
        # The manifest counts the listed images' rejects; the dataset may hold earlier ones of removed images.
        Summary.REJECTED: manifest.get(ManifestKeys.N_REJECTED, n_rejected),
        Summary.REJECTS: rejects,
        Summary.N_IMAGES: checked.n_pca_rows,
        Summary.K: checked.k,
        Summary.THRESHOLD: variance if variance is not None else report.get("threshold"),
        Summary.VARIANCE_KEPT: cumulative[checked.k - 1] if len(cumulative) >= checked.k else None,
        Summary.SEPARABILITY_ACCURACY: separability.get(Separability.ACCURACY),
        Summary.IMAGES_DIGEST: manifest.get(ManifestKeys.IMAGES_DIGEST),
        Summary.CHECKED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
        Summary.COST: cost,
        Summary.CLUSTER_SIZE: cluster_size,
        Summary.OUTPUTS: {
            "pca": outputs.pca_uri,
            "report": outputs.report_uri,
            "manifest": outputs.uri(outputs.manifest_key),
            "features": paths.features_uri,
            "rejects": paths.rejects_uri,
            "summary": paths.uri(summary_key(paths)),
        },
    }


def write_summary(s3_client: BaseClient, paths: RunPaths, summary: dict[str, Any]) -> str:
    """Write ``summary.json`` beside the run's outputs; returns its URI.

    A run that computed its outputs (``cluster_created``) becomes its network's latest too.
    """
    body = json.dumps(summary, indent=2).encode()
    keys = [summary_key(paths)]
    if summary.get(Summary.CLUSTER_CREATED):
        keys.append(paths.latest_key)
    for key in keys:
        s3_client.put_object(Bucket=paths.bucket, Key=key, Body=body, ContentType="application/json")
    log.info("Run summary written to %s", paths.uri(keys[0]))
    return paths.uri(keys[0])


def event_extra(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as an asset event's extra: everything but the list of rejects, which only the file holds."""
    return {key: value for key, value in summary.items() if key != Summary.REJECTS}
