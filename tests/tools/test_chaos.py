"""tools.chaos's own logic, without running the DAG: landing changes, the report, the verdict."""

from __future__ import annotations

import random
from itertools import count
from pathlib import Path

import pytest

import tools.chaos
from local_aws.faults import ProcessFault
from tools.chaos import (
    FAULT_VARIABLES,
    FAULTS,
    SPOT_NODE_LOST,
    Outcome,
    _faults,
    change_landing,
    chaos,
    features_commit,
    passed,
    report,
)
from tools.demo import DemoRun
from tools.sample_images import generate


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    generate(tmp_path / "landing", 9, n_labels=3)
    return tmp_path / "landing"


def snapshot(landing: Path) -> dict[str, bytes]:
    return {path.relative_to(landing).as_posix(): path.read_bytes() for path in landing.glob("*/*.jpg")}


def test_landing_changes_are_seeded_and_change_the_folder(landing, tmp_path):
    twin = tmp_path / "twin"
    generate(twin, 9, n_labels=3)
    before = snapshot(landing)

    done = change_landing(landing, random.Random(3), count().__next__)
    again = change_landing(twin, random.Random(3), count().__next__)

    assert done == again
    assert snapshot(landing) == snapshot(twin)
    assert snapshot(landing) != before


def test_the_report_ends_with_the_counts_and_the_seed_is_printed():
    outcomes = [
        Outcome(1, "pca killed mid-write", "first run", "failed", reason="Step pca failed: exit -9"),
        Outcome(2, "none", "add 1", "success", lost=1, duplicated=2, leaked=["j-1"]),
    ]

    lines = report(outcomes, 42).splitlines()

    assert "seed 42" in lines
    assert lines[-1] == "runs 2, failed 1, images lost 1, duplicated rows 2, leaked clusters 1, problems 0"
    assert not passed(outcomes)


def test_chaos_passes_only_when_the_last_run_succeeds_and_nothing_was_lost():
    assert passed([Outcome(1, "s3 errors", "first run", "failed", reason="x"), Outcome(2, "none", "", "success")])
    assert not passed([Outcome(1, "none", "first run", "failed", reason="x")])


def test_the_features_commit_fault_names_the_task_commit_of_the_run_s_features():
    assert features_commit("none") == "PUT /fruits-demo/features/none/_temporary/0/task_"
    assert "extract_features killed mid-write" in FAULTS


def test_a_fault_that_never_struck_is_said_and_not_counted_as_survived():
    outcomes = [
        Outcome(1, "pca killed mid-write", "first run", "failed", reason="Step pca failed", injected=["step killed"]),
        Outcome(2, "extract_features killed mid-write", "delete 1", "success"),
        Outcome(3, "none", "add 1", "success"),
    ]

    lines = report(outcomes, 7).splitlines()

    assert "fault not injected" not in lines[1]
    assert "fault not injected; delete 1" in lines[2]
    assert "fault not injected" not in lines[3]
    assert "faults injected 1, survived 1, not injected 1" in lines
    assert passed(outcomes)


def test_each_run_records_the_faults_the_endpoint_injected(tmp_path, monkeypatch):
    """chaos's bookkeeping, the DAG run replaced: the injected kinds come from the run's endpoint."""
    struck = iter([("step killed",), ()])

    def run_demo(*args, **kwargs) -> DemoRun:
        failure = {"summary": "Step pca failed: exit -9"}
        return DemoRun("failed", "manual__x", tmp_path / "log", {}, failure=failure, injected=next(struck))

    monkeypatch.setattr(tools.chaos, "run_demo", run_demo)

    outcomes = chaos(2, 3, 4, tmp_path, "none", fault_names=["pca killed mid-write", "cluster terminated during pca"])

    assert [o.injected for o in outcomes] == [["step killed"], []]
    assert [o.fault_not_injected for o in outcomes] == [False, True]


def test_the_node_lost_fault_strikes_at_an_image_fetch_of_a_cluster_with_spot_core_nodes():
    plan = _faults(5)[SPOT_NODE_LOST]

    assert plan.lose_node == ProcessFault(step="extract_features", at="GET /fruits-demo/images/")
    assert FAULT_VARIABLES[SPOT_NODE_LOST] == {"single_node_max_images": 0, "core_market": "SPOT"}
    assert SPOT_NODE_LOST in FAULTS
