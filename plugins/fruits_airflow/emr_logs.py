"""Where EMR archives a cluster's logs under its LogUri, and the tails of them that explain a failure.

```
<LogUri>/<cluster id>/steps/<step id>/{stdout,stderr}.gz
<LogUri>/<cluster id>/node/<instance id>/bootstrap-actions/<n>/{stdout,stderr}.gz
```

EMR pushes them to S3 a few minutes after the fact on a live cluster, and once more as the cluster
terminates, so the readers here wait a bounded time for them. For a step, both streams matter: Spark
logs to stderr, while spark-submit relays the Python driver's own output (the job's one-line error)
on stdout. A node runs its bootstrap actions in order and stops at the first that fails, so the
failed action is the last one with logs on its node.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from botocore.client import BaseClient

from fruits_airflow.s3_objects import list_objects, read_object

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 40
# EMR pushes logs to S3 about every five minutes.
LOG_WAIT_SECONDS = 330
LOG_POLL_SECONDS = 15

T = TypeVar("T")


def log_root(log_uri: str) -> tuple[str, str]:
    """The bucket and key prefix (ending in ``/``) of a cluster's LogUri (``s3n://`` and ``s3a://`` too)."""
    scheme, _, rest = log_uri.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme not in {"s3", "s3n", "s3a"} or not bucket:
        raise ValueError(f"LogUri {log_uri!r} is not an S3 URI")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def step_log_uri(log_uri: str, cluster_id: str, step_id: str, stream: str = "stderr") -> str:
    """Where EMR archives a step's ``stream`` log, given the cluster's LogUri."""
    bucket, prefix = log_root(log_uri)
    return f"s3://{bucket}/{prefix}{cluster_id}/steps/{step_id}/{stream}.gz"


def bootstrap_stderr_uris(s3_client: BaseClient, log_uri: str, cluster_id: str, reason: str = "") -> list[str]:
    """The stderr of the last bootstrap action that ran on each node, those of nodes ``reason`` names first.

    :param reason: EMR's message for the cluster's end, which names the node that failed, if any.
    """
    bucket, prefix = log_root(log_uri)
    nodes_prefix = f"{prefix}{cluster_id}/node/"
    last_action: dict[str, int] = {}
    for obj in list_objects(s3_client, bucket, nodes_prefix):
        match obj.key.removeprefix(nodes_prefix).split("/"):
            case [instance, "bootstrap-actions", number, "stderr.gz"] if number.isdigit():
                last_action[instance] = max(int(number), last_action.get(instance, 0))
    instances = sorted(last_action, key=lambda instance: (instance not in reason, instance))
    return [
        f"s3://{bucket}/{nodes_prefix}{instance}/bootstrap-actions/{last_action[instance]}/stderr.gz"
        for instance in instances
    ]


def read_log_tail(s3_client: BaseClient, uri: str, lines: int = STDERR_TAIL_LINES) -> str | None:
    """The last ``lines`` lines of a gzipped log on S3, or None when it is not there (yet)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body = read_object(s3_client, bucket, key)
    if body is None:
        return None
    text = gzip.decompress(body).decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def wait_for(fetch: Callable[[], T], what: str, wait_seconds: float, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fetch`` until it finds something or ``wait_seconds`` have passed; its last result.

    None and an empty list mean "not archived yet"; an empty log ("") is found: waiting would not fill it.
    """
    deadline = time.monotonic() + wait_seconds
    while (result := fetch()) in (None, []) and time.monotonic() < deadline:
        log.info("Waiting for EMR to archive %s", what)
        sleep(LOG_POLL_SECONDS)
    return result
