"""A step's controller, stdout and stderr logs: written locally while it runs, then put where EMR puts them.

EMR writes ``<LogUri>/<cluster id>/steps/<step id>/{controller,stdout,stderr}.gz``; the DAG's failure
reporting reads ``stderr.gz`` from there, so the same keys hold the same gzip-compressed logs here. The
controller log says what ran locally in place of the step, which EMR's controller log cannot.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from botocore.client import BaseClient
from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)

LOG_NAMES = ("controller", "stdout", "stderr")
S3_URI = re.compile(r"^s3[an]?://(?P<bucket>[^/]+)/?(?P<key>.*)$", re.DOTALL)
_ERROR_LINE = re.compile(r"^[\w.]*(?:Error|Exception)\b")
# Progress lines (TensorFlow's "INFO: ...", Spark's and Python's timestamped INFO) never say why a step failed.
_PROGRESS_LINE = re.compile(r"^[\d/:,.\- T]*\s*(?:INFO|DEBUG|TRACE)\b")
_TAIL_LINES = 400
_MAX_MESSAGE = 1024


def step_log_uri(log_uri: str, cluster_id: str, step_id: str, name: str) -> str:
    """Where EMR puts one of a step's logs, in the scheme of the cluster's LogUri (s3:// or s3n://)."""
    return f"{log_uri.rstrip('/')}/{cluster_id}/steps/{step_id}/{name}.gz"


class StepLogs:
    """The local log files of one step, in its work folder."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.stdout = folder / "stdout"
        self.stderr = folder / "stderr"
        self.controller = folder / "controller"

    def note(self, line: str) -> None:
        """Append a timestamped line to the controller log."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self.controller.open("a", encoding="utf-8") as stream:
            stream.write(f"{stamp} {line}\n")

    def command_exited(self, exit_code: int) -> None:
        """End stderr as EMR's command-runner.jar ends it, so a failed step's stderr always says how it ended.

        spark-submit relays the Python driver's own output (a job's one-line error) on stdout, and Spark's
        own log may be quiet: without this line, such a step's stderr would be empty.
        """
        with self.stderr.open("a", encoding="utf-8") as stream:
            stream.write(f"Command exiting with ret '{exit_code}'\n")

    def failure_message(self) -> str | None:
        """The line of stderr that best says why the step failed: the last exception line, else the last line
        that is no progress line; None when there is none (then EMR's FailureDetails carry no Message)."""
        if not self.stderr.exists():
            return None
        with self.stderr.open(encoding="utf-8", errors="replace") as stream:
            tail = [line.strip() for line in deque(stream, maxlen=_TAIL_LINES) if line.strip()]
        errors = [line for line in tail if _ERROR_LINE.match(line)]
        said = errors or [line for line in tail if not _PROGRESS_LINE.match(line)]
        return said[-1][:_MAX_MESSAGE] if said else None

    def upload(self, s3: BaseClient, log_uri: str | None, cluster_id: str, step_id: str) -> None:
        """Put the logs under ``log_uri`` gzip-compressed; a cluster without a LogUri keeps them locally."""
        if log_uri:
            upload_logs(s3, self.folder, LOG_NAMES, lambda name: step_log_uri(log_uri, cluster_id, step_id, name))


def upload_logs(s3: BaseClient, folder: Path, names: Iterable[str], uri_of: Callable[[str], str]) -> None:
    """Put each log file ``folder/<name>`` that exists at ``uri_of(name)``, gzip-compressed, as EMR archives logs."""
    for name in names:
        path = folder / name
        if not path.exists():
            continue
        uri = uri_of(name)
        match = S3_URI.match(uri)
        if match is None:
            logger.warning("%s is not an s3:// URI; the logs stay in %s", uri, folder)
            return
        try:
            s3.put_object(Bucket=match["bucket"], Key=match["key"], Body=gzip.compress(path.read_bytes()))
        except ClientError as error:
            logger.warning("could not write %s (%s); the logs stay in %s", uri, error, folder)
            return
