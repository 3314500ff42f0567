"""Why a run's EMR work failed: the failed job's own reason, EMR's, and the tails of the cluster's logs.

A job that fails writes its own one-line reason for machines (``runs/<run key>/failures/<job>.json``,
keys ``fruits_contract.JobFailure``). That line comes first (``with_job_error``): read from S3, never
from a log, and whatever EMR's FailureDetails say (often only "Unknown Error").

A run refused before any cluster (a task's one line: an empty landing folder, a bad variance, a missing
weights file) has no EMR side: its record (``refusal_report``) has the same ``summary`` and ``cause``
``refused``, in the refusing task's XCom ``refusal`` and, when the run's bucket is usable, in ``failure.json``.

EMR says why in two places. A failed step has ``FailureDetails``; a cluster that ends before its steps
complete (a bootstrap failure, VALIDATION_ERROR, INSTANCE_FAILURE, INTERNAL_ERROR, no capacity, a spot
loss, a termination from outside) has a ``StateChangeReason``, and its steps end CANCELLED. The sensor
needs the verdict at once (``progress``, ``find_failure``: a few API calls); the log tails take minutes
to reach S3 and are fetched afterwards (``with_log_tails``), while the cluster terminates.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.client import BaseClient

from fruits_airflow.emr_logs import (
    LOG_WAIT_SECONDS,
    STDERR_TAIL_LINES,
    bootstrap_stderr_uris,
    log_root,
    read_log_tail,
    step_log_uri,
    wait_for,
)
from fruits_airflow.paths import RunPaths
from fruits_airflow.s3_objects import read_object
from fruits_contract import JobFailure

log = logging.getLogger(__name__)

COMPLETED, RUNNING, FAILED = "COMPLETED", "RUNNING", "FAILED"
# The cause of a run refused before any cluster; a RunFailure's is "cluster" or "step".
REFUSED = "refused"
# The XCom key under which the refusing task pushes its record (Airflow keeps it when the task fails).
REFUSAL_XCOM_KEY = "refusal"
STEP_FAILED_STATES = frozenset({"FAILED", "CANCELLED", "INTERRUPTED"})
STEP_STATES_WITH_LOGS = frozenset({"FAILED", "INTERRUPTED"})
CLUSTER_ENDED_STATES = frozenset({"TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS"})
BOOTSTRAP_FAILURE = "BOOTSTRAP_FAILURE"


def progress(step_state: str, cluster_state: str) -> str:
    """COMPLETED; FAILED when the step failed or the cluster is ending before it completed; else RUNNING."""
    if step_state == COMPLETED:
        return COMPLETED
    if step_state in STEP_FAILED_STATES or cluster_state in CLUSTER_ENDED_STATES:
        return FAILED
    return RUNNING


def _joined(*parts: str | None) -> str:
    """The parts that say something, each once: EMR's Message often repeats its Reason."""
    kept: list[str] = []
    for part in parts:
        if part and part.strip() not in kept:
            kept.append(part.strip())
    return ": ".join(kept)


@dataclass(frozen=True)
class ClusterStatus:
    """A cluster's state and EMR's StateChangeReason for it."""

    id: str
    state: str
    reason_code: str | None
    reason_message: str | None
    log_uri: str | None

    @classmethod
    def from_response(cls, cluster: dict[str, Any]) -> ClusterStatus:
        status = cluster["Status"]
        reason = status.get("StateChangeReason", {})
        return cls(cluster["Id"], status["State"], reason.get("Code"), reason.get("Message"), cluster.get("LogUri"))

    def summary(self) -> str:
        details = _joined(self.reason_code, self.reason_message) or "no reason from EMR"
        return f"EMR cluster {self.id} {self.state} before the run's steps completed: {details}"


@dataclass(frozen=True)
class StepStatus:
    """A step's state and, once it failed, EMR's FailureDetails."""

    id: str
    name: str
    state: str
    reason: str | None = None
    message: str | None = None
    log_file: str | None = None

    @classmethod
    def from_response(cls, step: dict[str, Any]) -> StepStatus:
        details = step["Status"].get("FailureDetails", {})
        return cls(
            step["Id"],
            step["Name"],
            step["Status"]["State"],
            details.get("Reason"),
            details.get("Message"),
            details.get("LogFile"),
        )

    def summary(self) -> str:
        details = _joined(self.reason, self.message) or "no failure details from EMR"
        return f"EMR step {self.name} ({self.id}) {self.state}: {details}"


@dataclass(frozen=True)
class LogTail:
    """The last lines of one of the cluster's logs; ``tail`` is None while EMR has not archived it."""

    name: str
    uri: str
    tail: str | None


@dataclass(frozen=True)
class RunFailure:
    """What ended a run's EMR work: ``cause`` is ``cluster`` or ``step``."""

    cause: str
    cluster: ClusterStatus
    steps: tuple[StepStatus, ...]
    failed_step: StepStatus | None
    logs: tuple[LogTail, ...] = ()
    job_error: str | None = None

    def emr_reason(self) -> str:
        """What EMR says: the cluster's StateChangeReason, or the failed step's FailureDetails."""
        if self.cause == "cluster" or self.failed_step is None:
            return self.cluster.summary()
        return self.failed_step.summary()

    def summary(self) -> str:
        """The first line to read: the failed job's own reason when it wrote one, else EMR's."""
        return self.job_error or self.emr_reason()

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable report: the summary, EMR's reason, the cluster, every step, the failed one and
        the log tails."""
        return {"summary": self.summary(), "emr_reason": self.emr_reason(), **dataclasses.asdict(self)}


def find_failure(emr_client: BaseClient, cluster_id: str, step_ids: Sequence[str]) -> RunFailure | None:
    """Why the run's steps did not all complete, or None when nothing on EMR says they failed.

    A cluster that ended with errors is the cause, whatever its steps say; then a failed step; then a
    cluster that ended otherwise (from outside) before the steps completed; then a cancelled step.
    """
    cluster = ClusterStatus.from_response(emr_client.describe_cluster(ClusterId=cluster_id)["Cluster"])
    listed = emr_client.list_steps(ClusterId=cluster_id, StepIds=list(step_ids))["Steps"] if step_ids else []
    order = {step_id: index for index, step_id in enumerate(step_ids)}
    steps = tuple(
        sorted((StepStatus.from_response(step) for step in listed), key=lambda s: order.get(s.id, len(order)))
    )
    stopped = [step for step in steps if step.state in STEP_FAILED_STATES]
    failed = [step for step in stopped if step.state == "FAILED"]
    cluster_ended_first = cluster.state in CLUSTER_ENDED_STATES and any(step.state != COMPLETED for step in steps)
    if cluster_ended_first and cluster.state == "TERMINATED_WITH_ERRORS":
        return RunFailure("cluster", cluster, steps, stopped[0] if stopped else None)
    if failed:
        return RunFailure("step", cluster, steps, failed[0])
    if cluster_ended_first or (cluster.state in CLUSTER_ENDED_STATES and not steps):
        return RunFailure("cluster", cluster, steps, stopped[0] if stopped else None)
    if stopped:
        return RunFailure("step", cluster, steps, stopped[0])
    return None


@dataclass(frozen=True)
class _LogReader:
    s3_client: BaseClient
    log_uri: str
    lines: int
    wait_seconds: float
    sleep: Callable[[float], None]

    def step_tails(self, cluster_id: str, step: StepStatus) -> tuple[LogTail, ...]:
        stderr_uri = step_log_uri(self.log_uri, cluster_id, step.id, "stderr")
        stderr = wait_for(self._tail(stderr_uri), stderr_uri, self.wait_seconds, self.sleep)
        stdout_uri = step_log_uri(self.log_uri, cluster_id, step.id, "stdout")
        return (
            LogTail(f"stdout of step {step.name} (the job's own messages)", stdout_uri, self._tail(stdout_uri)()),
            LogTail(f"stderr of step {step.name}", stderr_uri, stderr),
        )

    def bootstrap_tails(self, cluster: ClusterStatus) -> tuple[LogTail, ...]:
        bucket, prefix = log_root(self.log_uri)
        nodes_uri = f"s3://{bucket}/{prefix}{cluster.id}/node/"

        def listed() -> list[str]:
            return bootstrap_stderr_uris(self.s3_client, self.log_uri, cluster.id, cluster.reason_message or "")

        uris = wait_for(listed, nodes_uri, self.wait_seconds, self.sleep)
        uri = uris[0] if uris else nodes_uri
        return (LogTail("stderr of the failed bootstrap action", uri, self._tail(uri)() if uris else None),)

    def _tail(self, uri: str) -> Callable[[], str | None]:
        return lambda: read_log_tail(self.s3_client, uri, self.lines)


def with_log_tails(
    s3_client: BaseClient,
    failure: RunFailure,
    *,
    tail_lines: int = STDERR_TAIL_LINES,
    log_wait_seconds: float = LOG_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> RunFailure:
    """``failure`` with the tails of the logs that explain it: the failed step's, or the failed bootstrap action's.

    :param s3_client: a boto3 S3 client that can list and read the cluster's LogUri.
    :param failure: what ``find_failure`` found.
    :param tail_lines: how many of the last lines of each log to keep.
    :param log_wait_seconds: how long to wait for EMR to archive a log that is not there yet.
    :param sleep: waits between polls (tests pass a fake).
    """
    if not failure.cluster.log_uri:
        return failure
    reader = _LogReader(s3_client, failure.cluster.log_uri, tail_lines, log_wait_seconds, sleep)
    if failure.cause == "step" and failure.failed_step and failure.failed_step.state in STEP_STATES_WITH_LOGS:
        logs = reader.step_tails(failure.cluster.id, failure.failed_step)
    elif failure.cause == "cluster" and failure.cluster.reason_code == BOOTSTRAP_FAILURE:
        logs = reader.bootstrap_tails(failure.cluster)
    else:
        logs = ()
    return dataclasses.replace(failure, logs=logs)


def with_job_error(s3_client: BaseClient, failure: RunFailure, paths: RunPaths) -> RunFailure:
    """``failure`` with the failed step's job's own reason, from the file the job wrote for the DAG, if it did.

    A job killed from outside, a step cancelled, or a cluster that failed writes none: EMR's reason stays first.
    """
    step = failure.failed_step
    if failure.cause != "step" or step is None or step.state != FAILED:
        return failure
    body = read_object(s3_client, paths.bucket, paths.job_failure_key(step.name))
    if body is None:
        return failure
    try:
        message = json.loads(body).get(JobFailure.MESSAGE)
    except (ValueError, AttributeError):
        log.warning("%s is not a job's failure report; EMR's reason comes first", paths.job_failure_key(step.name))
        return failure
    return dataclasses.replace(failure, job_error=message) if isinstance(message, str) and message else failure


def refusal_report(line: str, *, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    """The record of a run that ``task_id`` refused before any cluster, shaped as ``failure.json``: the refusal's
    one line is its ``summary``; there is no EMR reason, no cluster, no log."""
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "reported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": line,
        "cause": REFUSED,
        "refused_by": task_id,
    }


def write_report(s3_client: BaseClient, paths: RunPaths, report: dict[str, Any]) -> str:
    """Write a run's failure record to ``s3://BUCKET/runs/<run key>/failure.json``; returns its URI."""
    s3_client.put_object(
        Bucket=paths.bucket,
        Key=paths.failure_key,
        Body=json.dumps(report, indent=2).encode(),
        ContentType="application/json",
    )
    return paths.uri(paths.failure_key)


def log_failure(failure: RunFailure) -> None:
    """Tell the failure in the task's log: the job's own reason, EMR's, then each log tail or where it will be."""
    log.error("%s", failure.summary())
    if failure.job_error:
        log.error("%s", failure.emr_reason())
    if failure.failed_step and failure.failed_step.log_file:
        log.error("EMR's log file for step %s: %s", failure.failed_step.name, failure.failed_step.log_file)
    for tail in failure.logs:
        if tail.tail is None:
            log.error(
                "No %s at %s yet: EMR may still be archiving it, look there in a few minutes.", tail.name, tail.uri
            )
        else:
            log.error("Last lines of the %s, %s:\n%s", tail.name, tail.uri, tail.tail)
