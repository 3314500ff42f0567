"""The /proc sampler behind the benchmark's peak memory: which processes count, and what they hold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.process_tree import PAGE_BYTES, TICK_SECONDS, ProcessTreeSampler, descendants, read_stats

MB = 1024 * 1024
# A child holding 64 MB (written, so resident) that says when it is ready, then sleeps.
CHILD = "import time; held = b'1' * 64 * 2**20; print('ready', flush=True); time.sleep({seconds})"
# Its parent waits for it: a two-level tree like spark-submit's JVM and its Python processes.
TREE_SCRIPT = "import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"


def _tree(seconds: float) -> subprocess.Popen:
    script = TREE_SCRIPT.format(child=CHILD.format(seconds=seconds))
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def _stat_line(pid: int, command: str, parent: int) -> str:
    """A /proc/PID/stat line: utime 100 + pid and stime 50 ticks, rss 1000 + pid pages."""
    before_times = f"S {parent} {pid} {pid} 0 -1 4194304 0 0 0 0"
    after_times = "0 0 20 0 4 0 12345 999999"
    return f"{pid} ({command}) {before_times} {100 + pid} 50 {after_times} {1000 + pid} 18446744073709551615 1\n"


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    for pid, command, parent in [(1, "init", 0), (10, "java", 1), (11, "python (driver) x", 10), (12, "w", 11)]:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat_line(pid, command, parent))
    (tmp_path / "self").mkdir()
    return tmp_path


@pytest.fixture
def process_tree() -> Iterator[subprocess.Popen]:
    """A running parent whose child holds 64 MB; both end with the test."""
    parent = _tree(seconds=30)
    assert parent.stdout.readline().strip() == "ready"
    yield parent
    for pid in descendants(parent.pid, read_stats()) - {parent.pid}:
        os.kill(pid, signal.SIGTERM)
    parent.wait()


def test_stats_are_read_past_command_names_with_spaces_and_parentheses(fake_proc: Path) -> None:
    driver = read_stats(fake_proc)[11]

    assert driver.parent == 10
    assert driver.cpu_s == pytest.approx((111 + 50) * TICK_SECONDS)
    assert driver.rss_bytes == 1011 * PAGE_BYTES


def test_descendants_are_the_root_and_everything_below_it(fake_proc: Path) -> None:
    assert descendants(10, read_stats(fake_proc)) == {10, 11, 12}


def test_a_sample_sums_the_tree_below_the_root(fake_proc: Path) -> None:
    sampler = ProcessTreeSampler(10, proc=fake_proc)

    sampler.sample()

    assert sampler.peak_rss_bytes == (1010 + 1011 + 1012) * PAGE_BYTES
    assert sampler.cpu_s == pytest.approx((110 + 111 + 112 + 3 * 50) * TICK_SECONDS)


def test_resident_memory_of_children_counts(process_tree: subprocess.Popen) -> None:
    sampler = ProcessTreeSampler(process_tree.pid)

    sampler.sample()

    assert sampler.peak_rss_bytes >= 64 * MB


def test_peak_memory_outlives_the_process_that_held_it() -> None:
    tree = _tree(seconds=0.5)
    with ProcessTreeSampler(tree.pid, interval=0.05) as sampler:
        tree.wait()

    assert sampler.peak_rss_bytes >= 64 * MB
    assert sampler.samples >= 2
