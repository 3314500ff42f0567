"""Run a cluster's bootstrap actions as EMR runs them on a node, and put their logs where EMR puts them.

Each action's script comes from S3 through the endpoint's API, and runs with its arguments, in the
order of RunJobFlow's ``BootstrapActions``, until one fails. One node stands for all of them here
(local_aws.node: its ``/mnt``, its stand-ins for sudo, dnf, yum and the AWS CLI). Each action's stdout
and stderr go to ``<LogUri>/<cluster id>/node/<instance id>/bootstrap-actions/<n>/{stdout,stderr}.gz``
(n from 1) as soon as it ends; locally they stay under ``<work root>/<cluster id>/node/``.

A failure gives EMR's reason for the cluster's end (code BOOTSTRAP_FAILURE), naming the primary
("master") instance and the action's number: a script that cannot be downloaded, or one that exits
non-zero.
"""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from threading import Event
from typing import IO

from botocore.exceptions import ClientError

from local_aws.emr_emulation import EmulatedCluster
from local_aws.iam_enforcement import NodeRoleMissingError
from local_aws.node import NodeRuntime
from local_aws.process_groups import run_cancellable
from local_aws.step_logs import S3_URI, upload_logs

logger = logging.getLogger(__name__)

LOG_NAMES = ("stdout", "stderr")
_CANNOT_EXECUTE = 126


@dataclass(frozen=True)
class BootstrapFailure:
    """Why a cluster failed to bootstrap: EMR's StateChangeReason message."""

    message: str


def bootstrap_log_uri(log_uri: str, cluster_id: str, instance_id: str, number: int, name: str) -> str:
    """Where EMR puts one log of a node's n-th bootstrap action (n from 1)."""
    return f"{log_uri.rstrip('/')}/{cluster_id}/node/{instance_id}/bootstrap-actions/{number}/{name}.gz"


@dataclass(frozen=True)
class _Action:
    """One bootstrap action of one cluster on its primary instance, with its local folder."""

    cluster: EmulatedCluster
    instance_id: str
    number: int
    script_uri: str
    args: list[str]
    folder: Path


class BootstrapActions:
    """Runs the bootstrap actions of clusters on the endpoint's node.

    :param runtime: the endpoint's S3, the work folders, the environment and the node.
    """

    def __init__(self, runtime: NodeRuntime) -> None:
        self._runtime = runtime

    def run(self, cluster: EmulatedCluster, cancel: Event) -> BootstrapFailure | None:
        """Run every action in order, stopping at the first that fails; ``cancel`` stops the running one.

        Returns None when all succeeded, or when ``cancel`` stopped them (the cluster is terminating).
        """
        if not cluster.bootstrap_actions:
            return None
        instance_id = cluster.primary_instance_id()
        with self._runtime.node.bootstrapping(cancel) as held:
            for number, action in enumerate(cluster.bootstrap_actions, start=1):
                if not held or cancel.is_set():
                    return None
                folder = self._runtime.work_root / cluster.id / "node" / instance_id / "bootstrap-actions" / str(number)
                folder.mkdir(parents=True, exist_ok=True)
                failure = self._run(
                    _Action(cluster, instance_id, number, action.script_path or "", list(action.args), folder), cancel
                )
                if failure is not None:
                    return failure
        return None

    def _run(self, action: _Action, cancel: Event) -> BootstrapFailure | None:
        with (action.folder / "stdout").open("wb") as stdout, (action.folder / "stderr").open("wb") as stderr:
            script = self._download(action, stderr)
            if script is None:
                failure: BootstrapFailure | None = BootstrapFailure(
                    f"Master instance ({action.instance_id}) failed attempting to download "
                    f"bootstrap action {action.number} file from S3"
                )
            else:
                failure = self._execute(action, script, stdout, stderr, cancel)
        log_uri = action.cluster.log_uri
        if log_uri:
            upload_logs(
                self._runtime.s3,
                action.folder,
                LOG_NAMES,
                lambda name: bootstrap_log_uri(log_uri, action.cluster.id, action.instance_id, action.number, name),
            )
        return failure

    def _download(self, action: _Action, stderr: IO[bytes]) -> Path | None:
        """The script, from S3 into the action's folder, executable; None when it cannot be had (said on stderr)."""
        match = S3_URI.match(action.script_uri)
        if match is None or not match["key"]:
            stderr.write(f"bootstrap action path {action.script_uri!r} is not an s3:// URI of a script\n".encode())
            return None
        try:
            body = self._runtime.s3.get_object(Bucket=match["bucket"], Key=match["key"])["Body"].read()
        except ClientError as error:
            stderr.write(f"cannot download {action.script_uri}: {error}\n".encode())
            return None
        script = action.folder / PurePosixPath(match["key"]).name
        script.write_bytes(body)
        script.chmod(0o755)
        return script

    def _execute(
        self, action: _Action, script: Path, stdout: IO[bytes], stderr: IO[bytes], cancel: Event
    ) -> BootstrapFailure | None:
        argv = [str(script), *action.args]
        logger.info("cluster %s bootstrap action %d runs: %s", action.cluster.id, action.number, shlex.join(argv))
        started = time.monotonic()
        try:
            exit_code = run_cancellable(
                argv,
                cwd=action.folder,
                env=self._runtime.node.bootstrap_environment(self._runtime.environ(action.cluster)),
                stdout=stdout,
                stderr=stderr,
                cancel=cancel,
                grace=self._runtime.kill_grace_seconds,
            )
        except OSError as error:
            stderr.write(f"{script.name}: {error.strerror}\n".encode())
            exit_code = _CANNOT_EXECUTE
        except NodeRoleMissingError as error:
            stderr.write(f"{script.name}: {error}\n".encode())
            exit_code = _CANNOT_EXECUTE
        logger.info(
            "cluster %s bootstrap action %d exited with %d after %.1f s",
            action.cluster.id,
            action.number,
            exit_code,
            time.monotonic() - started,
        )
        if exit_code == 0 or cancel.is_set():
            return None
        return BootstrapFailure(
            f"On the master instance ({action.instance_id}), bootstrap action {action.number} "
            "returned a non-zero return code"
        )
