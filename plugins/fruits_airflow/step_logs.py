"""Why an EMR step failed, told in the Airflow log: its FailureDetails and the tails of its logs.

EMR archives each step's logs to ``<LogUri>/<cluster id>/steps/<step id>/{stderr,stdout}.gz``, a few
minutes after the fact on a live cluster; ``explain_step_failures`` waits a bounded time for them, so
that nobody needs the AWS console to learn why a run failed. Both streams matter: Spark logs to
stderr, while spark-submit relays the Python driver's own output (the job's one-line error) on stdout.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

FAILED_STATES = frozenset({"FAILED", "CANCELLED", "INTERRUPTED"})
STATES_WITH_LOGS = frozenset({"FAILED", "INTERRUPTED"})
STDERR_TAIL_LINES = 40
# EMR pushes logs to S3 about every five minutes.
LOG_WAIT_SECONDS = 330
LOG_POLL_SECONDS = 15


@dataclass(frozen=True)
class StepFailure:
    """One step that did not complete, and what EMR and its stderr say about it."""

    step_id: str
    name: str
    state: str
    reason: str | None
    message: str | None
    log_file: str | None
    stderr_uri: str | None
    stderr_tail: str | None
    stdout_tail: str | None = None

    def summary(self) -> str:
        details = ": ".join(part for part in (self.reason, self.message) if part) or "no failure details from EMR"
        return f"EMR step {self.name} ({self.step_id}) {self.state}: {details}"


def step_log_uri(log_uri: str, cluster_id: str, step_id: str, stream: str = "stderr") -> str:
    """Where EMR archives a step's ``stream`` log, given the cluster's LogUri (``s3n://``, ``s3a://`` too)."""
    scheme, _, rest = log_uri.partition("://")
    if scheme not in {"s3", "s3n", "s3a"} or not rest:
        raise ValueError(f"LogUri {log_uri!r} is not an S3 URI")
    return f"s3://{rest.rstrip('/')}/{cluster_id}/steps/{step_id}/{stream}.gz"


def read_log_tail(s3_client: BaseClient, uri: str, lines: int = STDERR_TAIL_LINES) -> str | None:
    """The last ``lines`` lines of a gzipped log on S3, or None when it is not there (yet)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None
        raise
    text = gzip.decompress(body).decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _failed_steps(emr_client: BaseClient, cluster_id: str, step_ids: Sequence[str]) -> list[dict[str, Any]]:
    steps = emr_client.list_steps(ClusterId=cluster_id, StepIds=list(step_ids))["Steps"]
    order = {step_id: index for index, step_id in enumerate(step_ids)}
    failed = [step for step in steps if step["Status"]["State"] in FAILED_STATES]
    return sorted(failed, key=lambda step: order.get(step["Id"], len(order)))


def _wait_for_tail(
    s3_client: BaseClient, uri: str, lines: int, wait_seconds: float, sleep: Callable[[float], None]
) -> str | None:
    deadline = time.monotonic() + wait_seconds
    while (tail := read_log_tail(s3_client, uri, lines)) is None and time.monotonic() < deadline:
        log.info("Waiting for EMR to archive %s", uri)
        sleep(LOG_POLL_SECONDS)
    return tail


def explain_step_failures(
    emr_client: BaseClient,
    s3_client: BaseClient,
    cluster_id: str,
    step_ids: Sequence[str],
    *,
    tail_lines: int = STDERR_TAIL_LINES,
    log_wait_seconds: float = LOG_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> list[StepFailure]:
    """Log every failed, cancelled or interrupted step of ``step_ids``, with its stderr tail, and return them.

    :param emr_client: a boto3 EMR client.
    :param s3_client: a boto3 S3 client that can read the cluster's LogUri.
    :param cluster_id: the cluster the steps ran on.
    :param step_ids: the steps to look at, in the order they were added.
    :param tail_lines: how many of the last stderr lines to show.
    :param log_wait_seconds: how long to wait for EMR to archive a stderr that is not there yet.
    :param sleep: waits between polls (tests pass a fake).
    """
    log_uri = emr_client.describe_cluster(ClusterId=cluster_id)["Cluster"].get("LogUri")
    failures = []
    for step in _failed_steps(emr_client, cluster_id, step_ids):
        state = step["Status"]["State"]
        details = step["Status"].get("FailureDetails", {})
        uri = step_log_uri(log_uri, cluster_id, step["Id"]) if log_uri and state in STATES_WITH_LOGS else None
        tail = _wait_for_tail(s3_client, uri, tail_lines, log_wait_seconds, sleep) if uri else None
        stdout_uri = step_log_uri(log_uri, cluster_id, step["Id"], "stdout") if uri else None
        stdout_tail = read_log_tail(s3_client, stdout_uri, tail_lines) if stdout_uri else None
        failure = StepFailure(
            step_id=step["Id"],
            name=step["Name"],
            state=state,
            reason=details.get("Reason"),
            message=details.get("Message"),
            log_file=details.get("LogFile"),
            stderr_uri=uri,
            stderr_tail=tail,
            stdout_tail=stdout_tail,
        )
        failures.append(failure)
        _log_failure(failure)
    return failures


def _log_failure(failure: StepFailure) -> None:
    log.error("%s (EMR log file: %s)", failure.summary(), failure.log_file or "none")
    if failure.stdout_tail:
        log.error("Last lines of the step's stdout (the job's own messages):\n%s", failure.stdout_tail)
    if failure.stderr_tail is not None:
        log.error("Last lines of %s:\n%s", failure.stderr_uri, failure.stderr_tail)
    elif failure.stderr_uri:
        log.error(
            "No stderr at %s yet: EMR may still be archiving it, look there in a few minutes.", failure.stderr_uri
        )
