"""`make chaos`, short: the real DAG through a step killed mid-write, then S3 errors, loses and doubles nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.chaos import Outcome, chaos, passed, report

SEED = 26
FAULT_NAMES = ["extract_features killed mid-write", "s3 errors"]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, project_node_dir: Path) -> list[Outcome]:
    state_dir = tmp_path_factory.mktemp("chaos")
    return chaos(len(FAULT_NAMES), SEED, 6, state_dir, "none", node_dir=project_node_dir, fault_names=FAULT_NAMES)


def test_a_step_killed_mid_write_fails_the_run_with_emr_s_reason_in_one_line(outcomes):
    killed = outcomes[0]

    assert killed.state == "failed"
    assert killed.injected == ["step killed"]
    assert "extract_features" in killed.reason
    assert "exited with code -9: killed by SIGKILL" in killed.reason


def test_the_next_run_through_s3_errors_leaves_the_features_equal_to_the_landing_folder(outcomes):
    after = outcomes[1]

    assert after.state == "success", after.problems
    assert (after.lost, after.duplicated, after.problems) == (0, 0, [])


def test_no_cluster_is_left_active_and_the_report_counts_it(outcomes):
    assert [outcome.leaked for outcome in outcomes] == [[], []]
    assert passed(outcomes)
    assert report(outcomes, SEED).splitlines()[-1] == (
        "runs 2, failed 1, images lost 0, duplicated rows 0, leaked clusters 0, problems 0"
    )
