"""Peak memory and CPU time of a process and all its descendants, sampled with psutil.

A Spark job run with spark-submit is a tree: the JVM, the driver's Python, PySpark's daemon and the
Python workers it forks. Its footprint is the sum of their resident sets at the same instant. Its CPU
time cannot be read from the OS once it has ended: the JVM does not reap PySpark's daemon, so the
workers' CPU time never reaches spark-submit's own account. Sampling both covers the whole tree.
"""

from __future__ import annotations

import threading
from types import TracebackType

import psutil


def descendants(root: int) -> set[int]:
    """``root`` and every live process below it; empty once ``root`` has ended."""
    try:
        process = psutil.Process(root)
        return {root, *(child.pid for child in process.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still exist, zombies (ended, not yet reaped) included."""
    return {pid for pid in pids if psutil.pid_exists(pid)}


class ProcessTreeSampler:
    """Samples a process tree in a background thread while the ``with`` body runs.

    ``peak_rss_bytes`` is the largest summed resident set seen at one instant: pages that forked
    workers share are counted once per process, so it is an upper bound of what the tree holds.
    ``cpu_s`` adds up the last CPU time seen of every process that was ever in the tree.

    :param root: the pid at the top of the tree.
    :param interval: seconds between samples; what happens between the last sample and a
        process's end is missed.
    """

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self.peak_rss_bytes = 0
        self.samples = 0
        self._cpu_by_pid: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-tree-sampler", daemon=True)

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu_by_pid.values())

    def sample(self) -> None:
        rss_bytes = 0
        for pid in descendants(self.root):
            try:
                process = psutil.Process(pid)
                with process.oneshot():
                    rss, times = process.memory_info().rss, process.cpu_times()
            except psutil.Error:  # ended while being read
                continue
            rss_bytes += rss
            self._cpu_by_pid[pid] = times.user + times.system
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss_bytes)
        self.samples += 1

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> ProcessTreeSampler:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
