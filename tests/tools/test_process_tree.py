"""The process-tree sampler behind the benchmark's peak memory: which processes count, and what they hold."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from tools.process_tree import ProcessTreeSampler, alive, descendants

MB = 1024 * 1024
# A child holding 64 MB (written, so resident) that says when it is ready, then sleeps.
CHILD = "import time; held = b'1' * 64 * 2**20; print('ready', flush=True); time.sleep({seconds})"
# A child that burns CPU for half a second, then says so and sleeps.
BUSY_CHILD = (
    "import time; end = time.process_time() + 0.5\n"
    "while time.process_time() < end: pass\n"
    "print('ready', flush=True); time.sleep({seconds})"
)
# Its parent waits for it: a two-level tree like spark-submit's JVM and its Python processes.
TREE_SCRIPT = "import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"


def _tree(seconds: float, child: str = CHILD) -> subprocess.Popen:
    script = TREE_SCRIPT.format(child=child.format(seconds=seconds))
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def _ready(parent: subprocess.Popen) -> subprocess.Popen:
    assert parent.stdout is not None
    assert parent.stdout.readline().strip() == "ready"
    return parent


def _end(parent: subprocess.Popen) -> None:
    for child in psutil.Process(parent.pid).children(recursive=True):
        child.terminate()
    parent.wait()


@pytest.fixture
def process_tree() -> Iterator[subprocess.Popen]:
    """A running parent whose child holds 64 MB; both end with the test."""
    parent = _ready(_tree(seconds=30))
    yield parent
    _end(parent)


@pytest.fixture
def busy_tree() -> Iterator[subprocess.Popen]:
    """A running parent whose child has used half a second of CPU; both end with the test."""
    parent = _ready(_tree(seconds=30, child=BUSY_CHILD))
    yield parent
    _end(parent)


def test_descendants_are_the_root_and_everything_below_it(process_tree: subprocess.Popen) -> None:
    tree = descendants(process_tree.pid)

    assert process_tree.pid in tree
    assert len(tree) == 2


def test_an_ended_root_has_no_descendants() -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()

    assert descendants(ended.pid) == set()
    assert alive({ended.pid}) == set()


def test_resident_memory_of_children_counts(process_tree: subprocess.Popen) -> None:
    sampler = ProcessTreeSampler(process_tree.pid)

    sampler.sample()

    assert sampler.peak_rss_bytes >= 64 * MB


def test_cpu_time_of_children_counts(busy_tree: subprocess.Popen) -> None:
    sampler = ProcessTreeSampler(busy_tree.pid)

    sampler.sample()

    assert sampler.cpu_s >= 0.5


def test_peak_memory_outlives_the_process_that_held_it() -> None:
    tree = _tree(seconds=0.5)
    with ProcessTreeSampler(tree.pid, interval=0.05) as sampler:
        tree.wait()

    assert sampler.peak_rss_bytes >= 64 * MB
    assert sampler.samples >= 2
