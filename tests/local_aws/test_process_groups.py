"""stop_groups: a command and everything it started are gone once it returns."""

from __future__ import annotations

import subprocess
import sys
import time

from local_aws.process_groups import group_exists, stop_groups

# A leader that dies on SIGTERM, with a child that ignores SIGTERM, as PySpark's workers outlive a JVM.
CHILD = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(300)"
)
LEADER = f"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], stdout=subprocess.PIPE, text=True)
print(child.stdout.readline().strip(), flush=True)
time.sleep(300)
"""


def start_group() -> subprocess.Popen:
    leader = subprocess.Popen([sys.executable, "-c", LEADER], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert leader.stdout.readline().strip() == "ready"
    return leader


def test_a_member_that_ignores_sigterm_is_gone_when_its_leader_stopped_at_once() -> None:
    leader = start_group()

    started = time.monotonic()
    stop_groups([leader], grace=10)

    assert leader.returncode == -15, "the leader stops on SIGTERM, within the grace"
    assert not group_exists(leader.pid), "the child that ignored SIGTERM is left"
    assert time.monotonic() - started < 10


def test_every_group_is_stopped() -> None:
    leaders = [start_group(), start_group()]

    stop_groups(leaders, grace=10)

    assert [group_exists(leader.pid) for leader in leaders] == [False, False]


def test_a_group_already_gone_is_fine() -> None:
    leader = start_group()
    stop_groups([leader], grace=10)

    stop_groups([leader], grace=10)

    assert not group_exists(leader.pid)
