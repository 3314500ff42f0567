"""The one node that stands for every EMR node here: its data volume, its commands, its environment.

EMR runs a cluster's bootstrap actions on each node, then its steps with what they installed. Here a
folder, ``<state dir>/node`` by default, is that node's disk: EMR's first data volume ``/mnt`` is
``<node>/mnt``, so a virtualenv that a bootstrap action builds under ``/mnt`` is where the cluster's
Configurations name its Python (``node_path``). The folder is shared by every cluster of the endpoint
and kept between runs: a bootstrap action that is idempotent on a node (the project's script does
nothing when its requirements are unchanged) is then quick from the second cluster on.

Bootstrap actions run with the steps' environment (the endpoint's URL, region and credentials), and:

- ``<node>/bin`` first on PATH, holding the stand-ins of local_aws.node_commands (sudo, dnf, yum, aws);
- ``FRUITS_PIPELINE_HOME``, which the project's script reads for its home (``/mnt/fruits-pipeline``
  on EMR), mapped like any ``/mnt`` path;
- ``FRUITS_PIPELINE_INSTANCE_JSON``, where the script reads EMR's ``/mnt/var/lib/info/instance.json``,
  mapped too: the node writes it as EMR does, ``"isMaster": true`` since it is the primary node, where the
  steps' driver runs (a node made with ``primary=False`` is a core node, for tests of the core branch);
- ``UV_CACHE_DIR``, this machine's uv cache, so that uv installs what it has already downloaded.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
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

    def bootstrap_environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment of a bootstrap action: ``environ`` without PYTHONPATH, plus the module docstring's."""
        env = {name: value for name, value in environ.items() if name != "PYTHONPATH"}
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", os.defpath)])
        env[PIPELINE_HOME_VARIABLE] = self.node_path(str(PIPELINE_HOME))
        env[INSTANCE_JSON_VARIABLE] = self.node_path(str(INSTANCE_JSON))
        cache = uv_cache_dir(environ)
        if cache:
            env["UV_CACHE_DIR"] = cache
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
    """

    s3: BaseClient
    work_root: Path
    environ: Callable[[EmulatedCluster], Mapping[str, str]]
    node: Node
    kill_grace_seconds: float = 10.0


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


def uv_cache_dir(environ: Mapping[str, str]) -> str | None:
    """This machine's uv cache: ``$UV_CACHE_DIR``, else what the endpoint's uv says; None without uv."""
    if environ.get("UV_CACHE_DIR"):
        return environ["UV_CACHE_DIR"]
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists():
        return None
    try:
        found = subprocess.run([str(uv), "cache", "dir"], capture_output=True, text=True, timeout=30, env=dict(environ))
    except subprocess.TimeoutExpired:
        return None
    return found.stdout.strip() if found.returncode == 0 and found.stdout.strip() else None


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
