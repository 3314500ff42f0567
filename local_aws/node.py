"""The one node that stands for every EMR node here: its data volume, its commands, its environment.

EMR runs a cluster's bootstrap actions on each node, then its steps with what they installed. Here a
folder, ``<state dir>/node`` by default, is that node's disk: EMR's first data volume ``/mnt`` is
``<node>/mnt``, so a virtualenv that a bootstrap action builds under ``/mnt`` is where the cluster's
Configurations name its Python (``node_path``). The folder is shared by every cluster of the endpoint
and kept between runs: a bootstrap action that is idempotent on a node (the project's script does
nothing when its requirements are unchanged) is then quick from the second cluster on.

The steps and the bootstrap actions run with the endpoint's URL and the credentials of the cluster's role,
and, about the region, with what a real EMR node has (``Node.environment``): nothing. EMR sets no region
variable on its nodes, and a fresh node has no AWS configuration file: this machine's ``AWS_REGION``,
``AWS_DEFAULT_REGION``, profile and configuration file stay off the node, so that what names no region on
a node (an ``aws s3 cp`` without ``--region``, a boto3 client of a job without the cluster's spark-env
``AWS_REGION``) signs for us-east-1 here as it would on AWS, and the endpoint refuses it
(local_aws.s3_regions). Spark's own ``s3://`` knows the cluster's region, as EMRFS does on EMR
(local_aws.spark_submit).

Bootstrap actions also get:

- ``<node>/bin`` first on PATH, holding the stand-ins of local_aws.node_commands (sudo, dnf, yum, aws);
- ``FRUITS_PIPELINE_HOME``, which the project's script reads for its home (``/mnt/fruits-pipeline``
  on EMR), mapped like any ``/mnt`` path;
- ``FRUITS_PIPELINE_INSTANCE_JSON``, where the script reads EMR's ``/mnt/var/lib/info/instance.json``,
  mapped too: the node writes it as EMR does, ``"isMaster": true`` since it is the primary node, where the
  steps' driver runs (a node made with ``primary=False`` is a core node, for tests of the core branch);
- no installer cache of this machine (``UV_CACHE_DIR``, ``PIP_CACHE_DIR`` are dropped): the node has its
  own, on its disk, and what it installs comes from the endpoint's S3 alone.

``NoInternet`` cuts the node off the internet as a private subnet does: the steps and the bootstrap
actions run with every proxy variable pointing at a local port where nothing listens, and the package
indexes' variables pointing there too, while ``NO_PROXY`` lets them reach the endpoint (127.0.0.1). An
HTTP client that would reach out (pip, uv, Keras's download, boto3 to AWS itself) then fails at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from botocore.client import BaseClient

from local_aws.emr_emulation import EmulatedCluster
from local_aws.node_commands import COMMANDS

NODE_DATA_VOLUME = PurePosixPath("/mnt")
# The project's bootstrap script builds its virtualenv under ${FRUITS_PIPELINE_HOME:-/mnt/fruits-pipeline}.
PIPELINE_HOME_VARIABLE = "FRUITS_PIPELINE_HOME"
PIPELINE_HOME = NODE_DATA_VOLUME / "fruits-pipeline"
# EMR's description of the node, which bootstrap actions read to tell the primary from the others.
INSTANCE_JSON = NODE_DATA_VOLUME / "var" / "lib" / "info" / "instance.json"
INSTANCE_JSON_VARIABLE = "FRUITS_PIPELINE_INSTANCE_JSON"
_LOCK_POLL_SECONDS = 0.2
_NOT_ON_THE_NODE = frozenset({"PYTHONPATH", "UV_CACHE_DIR", "PIP_CACHE_DIR", "PIP_FIND_LINKS", "UV_FIND_LINKS"})
# What would tell an AWS SDK or CLI the region: no EMR node has it (the module docstring says why).
REGION_VARIABLES = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"})
# The endpoint's address, the one a node may reach.
ENDPOINT_HOST = "127.0.0.1"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "FTP_PROXY")
INDEX_VARIABLES = ("PIP_INDEX_URL", "UV_INDEX_URL", "UV_DEFAULT_INDEX")


class NoInternet:
    """A local port where nothing listens (bound, never listening: a connection is refused at once, and no
    other process can take the port while this holds it), and the variables that send every proxy and
    package index there. Close it when the node is done."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((ENDPOINT_HOST, 0))
        self.port: int = self._socket.getsockname()[1]

    def variables(self) -> dict[str, str]:
        closed = f"http://{ENDPOINT_HOST}:{self.port}"
        proxies = {name: closed for name in PROXY_VARIABLES}
        return {
            **proxies,
            **{name.lower(): value for name, value in proxies.items()},
            **{name: f"{closed}/simple" for name in INDEX_VARIABLES},
            "NO_PROXY": ENDPOINT_HOST,
            "no_proxy": ENDPOINT_HOST,
        }

    def close(self) -> None:
        self._socket.close()


class Node:
    """The node's folder: ``mnt/`` (EMR's ``/mnt``, with its ``instance.json``) and ``bin/`` (the stand-ins),
    created on first use.

    :param root: the folder; created if missing.
    :param primary: whether the node is the primary one (EMR's ``isMaster``), as the endpoint's node is.
    """

    def __init__(self, root: Path, *, primary: bool = True) -> None:
        self.root = root.absolute()
        self.bin = self.root / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        (self.root / "mnt").mkdir(exist_ok=True)
        for name in COMMANDS:
            _write_stand_in(self.bin / name, name)
        instance = Path(self.node_path(str(INSTANCE_JSON)))
        instance.parent.mkdir(parents=True, exist_ok=True)
        _write_whole(instance, json.dumps(instance_description(primary=primary)))

    def node_path(self, path: str) -> str:
        """Where a node's path is here: ``/mnt/...`` under the node's folder; any other path as it is."""
        posix = PurePosixPath(path)
        if posix == NODE_DATA_VOLUME or NODE_DATA_VOLUME in posix.parents:
            return str(self.root / "mnt" / posix.relative_to(NODE_DATA_VOLUME))
        return path

    def environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """``environ`` as bare about the region as an EMR node's: no region variable, no profile, and the AWS
        configuration file a fresh node has (none, under the node's folder)."""
        env = {name: value for name, value in environ.items() if name not in REGION_VARIABLES}
        env["AWS_CONFIG_FILE"] = str(self.root / "home" / ".aws" / "config")
        return env

    def bootstrap_environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment of a bootstrap action: ``environ`` as bare about the region as a node's, without
        PYTHONPATH nor this machine's installer caches, plus the module docstring's."""
        env = {name: value for name, value in self.environment(environ).items() if name not in _NOT_ON_THE_NODE}
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", os.defpath)])
        env[PIPELINE_HOME_VARIABLE] = self.node_path(str(PIPELINE_HOME))
        env[INSTANCE_JSON_VARIABLE] = self.node_path(str(INSTANCE_JSON))
        return env

    @contextmanager
    def bootstrapping(self, cancelled: threading.Event) -> Iterator[bool]:
        """Hold the node for one cluster's bootstrap: clusters, and endpoints sharing the folder, take turns.

        Yields True once the node is held, False if ``cancelled`` was set while waiting for it.
        """
        # flock treats each open() apart, so threads of this endpoint wait for each other too.
        with (self.root / ".bootstrap.lock").open("w") as lock:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if cancelled.wait(_LOCK_POLL_SECONDS):
                        yield False
                        return
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class NodeRuntime:
    """What the clusters' bootstrap actions and steps run with.

    :param s3: a boto3 S3 client of the endpoint: bootstrap scripts come from it, logs go to it.
    :param work_root: where each cluster keeps its local work folders and logs, ``<work root>/<cluster id>/``.
    :param environ: the environment a cluster's actions and steps start from: the endpoint's URL and
        region, and the credentials of the cluster's instance profile role.
    :param node: the node they run on.
    :param kill_grace_seconds: how long a cancelled command has between SIGTERM and SIGKILL.
    :param region: the clusters' region, which Spark's ``s3://`` knows as EMRFS does; None: Spark's default.
    """

    s3: BaseClient
    work_root: Path
    environ: Callable[[EmulatedCluster], Mapping[str, str]]
    node: Node
    kill_grace_seconds: float = 10.0
    region: str | None = None


def instance_description(*, primary: bool) -> dict[str, object]:
    """EMR's ``instance.json`` of a primary node (NameNode, ResourceManager) or of a core node (DataNode,
    NodeManager); the instance group's id is left out, as nothing here reads it."""
    return {
        "isMaster": primary,
        "isRunningNameNode": primary,
        "isRunningDataNode": not primary,
        "isRunningJobTracker": False,
        "isRunningTaskTracker": False,
        "isRunningResourceManager": primary,
        "isRunningNodeManager": not primary,
    }


def _write_stand_in(path: Path, name: str) -> None:
    script = Path(__file__).with_name("node_commands.py").absolute()
    text = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(script))} {name} "$@"\n'
    if not path.exists() or path.read_text() != text:
        _write_whole(path, text, mode=0o755)


def _write_whole(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` in one step: several endpoints, in several processes, may share a node
    (the tests' does), and a bootstrap running on it must never read a half-written file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    partial.write_text(text)
    partial.chmod(mode)
    os.replace(partial, path)
