"""A run's summary: what it uploaded, featurized and rejected, what its PCA kept, and where its outputs are.

``check_output`` writes it beside the outputs, as ``s3://BUCKET/runs/<run key>/summary.json``, and puts it
(without the list of rejects) in the extra of the run's asset events. The run's report view reads it. Its
keys are ``fruits_contract.Summary``; a summary from another version may lack some, or hold more (the
landing sync's ``removed`` and ``reused``), and readers take it so.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.client import BaseClient

from fruits_airflow.output_check import OutputSummary, read_rows
from fruits_airflow.paths import RunPaths
from fruits_contract import (
    RUN_SUMMARY,
    SEPARABILITY_REPORT,
    SUMMARY_MAX_REJECTS,
    VARIANCE_REPORT,
    Separability,
    Summary,
)

log = logging.getLogger(__name__)

# What the upload task may report besides its count, when it returns a dict (the landing sync's).
UPLOAD_KEYS = (Summary.UPLOADED, Summary.REMOVED, Summary.REUSED, Summary.FEATURIZED)


def summary_key(paths: RunPaths) -> str:
    return f"{paths.run_prefix}{RUN_SUMMARY}"


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
) -> dict[str, Any]:
    """The summary of a run whose output passed the check, from its report and its rejects."""
    variance = _json(s3_client, paths.bucket, f"{paths.report_prefix}{VARIANCE_REPORT}")
    cumulative = variance.get("cumulative") or []
    separability = _json(s3_client, paths.bucket, f"{paths.report_prefix}{SEPARABILITY_REPORT}")
    n_rejected, rejects = read_rows(
        s3_client, paths.bucket, paths.rejects_prefix, ["path", "label", "reason"], SUMMARY_MAX_REJECTS
    )
    return {
        Summary.DAG_ID: dag_id,
        Summary.RUN_ID: run_id,
        Summary.WEIGHTS: weights,
        Summary.FEATURIZED: checked.n_features,
        **upload_counts(upload_result),
        Summary.REJECTED: n_rejected,
        Summary.REJECTS: rejects,
        Summary.K: checked.k,
        Summary.THRESHOLD: variance.get("threshold"),
        Summary.VARIANCE_KEPT: cumulative[checked.k - 1] if len(cumulative) >= checked.k else None,
        Summary.SEPARABILITY_ACCURACY: separability.get(Separability.ACCURACY),
        Summary.OUTPUTS: {
            "pca": paths.pca_uri,
            "report": paths.report_uri,
            "features": paths.features_uri,
            "rejects": paths.rejects_uri,
            "summary": paths.uri(summary_key(paths)),
        },
    }


def write_summary(s3_client: BaseClient, paths: RunPaths, summary: dict[str, Any]) -> str:
    """Write ``summary.json`` beside the run's outputs; returns its URI."""
    key = summary_key(paths)
    s3_client.put_object(
        Bucket=paths.bucket, Key=key, Body=json.dumps(summary, indent=2).encode(), ContentType="application/json"
    )
    log.info("Run summary written to %s", paths.uri(key))
    return paths.uri(key)


def event_extra(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as an asset event's extra: everything but the list of rejects, which only the file holds."""
    return {key: value for key, value in summary.items() if key != Summary.REJECTS}
