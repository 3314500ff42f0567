"""Peak memory and CPU time of a process and all its descendants, sampled from Linux's /proc.

A Spark job run with spark-submit is a tree: the JVM, the driver's Python, PySpark's daemon and the
Python workers it forks. Its footprint is the sum of their resident sets at the same instant. Its CPU
time cannot be read from the OS once it has ended: the JVM does not reap PySpark's daemon, so the
workers' CPU time never reaches spark-submit's own account. Sampling both covers the whole tree
without psutil.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
TICK_SECONDS = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessStat:
    """What /proc/PID/stat says of one process."""

    parent: int
    cpu_s: float
    rss_bytes: int


def read_stats(proc: Path = PROC) -> dict[int, ProcessStat]:
    """Every live process by pid; processes that end while being read are skipped."""
    stats = {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name, in parentheses, may itself hold spaces and parentheses. After it come the
        # state, then numbers: the parent pid, ..., utime and stime in ticks, ..., rss in pages.
        fields = [int(field) for field in text.rsplit(")", 1)[1].split()[1:22]]
        parent, cpu_ticks, rss_pages = fields[0], fields[10] + fields[11], fields[20]
        stats[int(stat.parent.name)] = ProcessStat(parent, cpu_ticks * TICK_SECONDS, rss_pages * PAGE_BYTES)
    return stats


def descendants(root: int, stats: dict[int, ProcessStat]) -> set[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.parent, []).append(pid)
    tree, pending = set(), [root]
    while pending:
        pid = pending.pop()
        if pid not in tree:
            tree.add(pid)
            pending.extend(children.get(pid, []))
    return tree & stats.keys()


class ProcessTreeSampler:
    """Samples a process tree in a background thread while the ``with`` body runs.

    ``peak_rss_bytes`` is the largest summed resident set seen at one instant: pages that forked
    workers share are counted once per process, so it is an upper bound of what the tree holds.
    ``cpu_s`` adds up the last CPU time seen of every process that was ever in the tree.

    :param interval: seconds between samples; what happens between the last sample and a
        process's end is missed.
    """

    def __init__(self, root: int, interval: float = 0.2, proc: Path = PROC) -> None:
        self.root = root
        self.interval = interval
        self.proc = proc
        self.peak_rss_bytes = 0
        self.samples = 0
        self._cpu_by_pid: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-tree-sampler", daemon=True)

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu_by_pid.values())

    def sample(self) -> None:
        stats = read_stats(self.proc)
        tree = descendants(self.root, stats)
        self.peak_rss_bytes = max(self.peak_rss_bytes, sum(stats[pid].rss_bytes for pid in tree))
        self._cpu_by_pid.update({pid: stats[pid].cpu_s for pid in tree})
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
