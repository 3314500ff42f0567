"""What the run's report view shows, read from S3 through ``aws_default`` as the tasks read it.

Everything comes from the run's prefix, ``s3://BUCKET/runs/<run key>/``: ``summary.json`` (written by
``check_output``), ``failure.json`` (by ``report_failure``), and the PCA's ``report/``
(``explained_variance.json``, ``separability.json`` and the two plots). Each may be missing (a run still
going, a run that failed before its PCA, a run of an older version): the view shows what there is.
Nothing is cached: each request reads S3 again with the connection's credentials.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.client import BaseClient

from fruits_airflow.paths import RunPaths, run_key
from fruits_airflow.s3_objects import read_object
from fruits_contract import CUMULATIVE_PLOT, SCATTER_PLOT, SEPARABILITY_REPORT, VARIANCE_REPORT

PLOTS = (CUMULATIVE_PLOT, SCATTER_PLOT)
# A plot larger than this is not embedded in the page (the job's plots are about 50 to 150 kB).
MAX_PLOT_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class RunReport:
    """The run's documents, each None when S3 has no such file; ``plots`` maps a file name to its PNG bytes.

    :param paths: where the run's documents are (only its run key matters here, not its features' place).
    """

    paths: RunPaths
    summary: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    variance: dict[str, Any] | None = None
    separability: dict[str, Any] | None = None
    plots: dict[str, bytes] = field(default_factory=dict)

    @property
    def run_uri(self) -> str:
        return self.paths.uri(self.paths.run_prefix)

    @property
    def report_uri(self) -> str:
        return self.paths.report_uri

    @property
    def is_empty(self) -> bool:
        return not (self.summary or self.failure or self.variance or self.separability or self.plots)


def _json(s3_client: BaseClient, bucket: str, key: str) -> dict[str, Any] | None:
    body = read_object(s3_client, bucket, key)
    if body is None:
        return None
    value = json.loads(body)
    return value if isinstance(value, dict) else None


def read_run_report(s3_client: BaseClient, bucket: str, run_id: str) -> RunReport:
    """The documents of the run ``run_id`` under ``s3://bucket/runs/<run key>/``.

    :raises botocore.exceptions.ClientError: when S3 refuses a read (other than a missing file).
    """
    paths = RunPaths(bucket, run_key(run_id))
    plots = {}
    for name in PLOTS:
        body = read_object(s3_client, bucket, f"{paths.report_prefix}{name}", MAX_PLOT_BYTES)
        if body is not None:
            plots[name] = body
    return RunReport(
        paths=paths,
        summary=_json(s3_client, bucket, paths.summary_key),
        failure=_json(s3_client, bucket, paths.failure_key),
        variance=_json(s3_client, bucket, f"{paths.report_prefix}{VARIANCE_REPORT}"),
        separability=_json(s3_client, bucket, f"{paths.report_prefix}{SEPARABILITY_REPORT}"),
        plots=plots,
    )
