"""Stopping a command and everything it started: its whole process group, then waiting until it is empty.

Spark steps, ``airflow dags test`` and Airflow's services start children of their own (PySpark's
daemon and workers, task runners, executor workers) which may outlive their parent; each such
command is started with ``start_new_session=True`` and stopped here, group and all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

_POLL_SECONDS = 0.2


def signal_group(process: subprocess.Popen, signum: int) -> None:
    """Signal the group that ``process`` leads; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def group_exists(pgid: int) -> bool:
    """Whether any process of the group is left (killed members count until they are reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_groups(processes: Iterable[subprocess.Popen], grace: float) -> None:
    """SIGTERM each process's whole group, SIGKILL what is left after ``grace``; return once all are gone.

    SIGTERM first, so that JVMs and Airflow services stop cleanly; SIGKILL then for the rest of each
    group, whose members may outlive their leader; then wait (at most ``grace`` more) until the groups
    are empty, as killed members are reaped by init a moment later.
    """
    processes = list(processes)
    for process in processes:
        signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    for process in processes:
        signal_group(process, signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(group_exists(process.pid) for process in processes):
        time.sleep(0.1)


def run_cancellable(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout: IO[bytes],
    stderr: IO[bytes],
    cancel: threading.Event,
    grace: float,
) -> int:
    """Run ``argv`` to its end in a session of its own and return its exit code; ``cancel`` stops its group.

    :raises OSError: when the command cannot start.
    """
    process = subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True
    )
    while True:
        try:
            return process.wait(timeout=_POLL_SECONDS)
        except subprocess.TimeoutExpired:
            if cancel.is_set():
                started = time.monotonic()
                stop_groups([process], grace)
                logger.info("stopped process group %d in %.1f s", process.pid, time.monotonic() - started)
