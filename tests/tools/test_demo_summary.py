"""What `make demo` prints when a run failed: the job's own line first, then EMR's reason and the log tails."""

from __future__ import annotations

from pathlib import Path

from tools.demo import DemoRun, failure_summary

JOB_ERROR = "pca: error: --features s3://fruits-demo/features/none holds 1 image(s); PCA needs at least 2"


def failed_run(failure: dict | None) -> DemoRun:
    return DemoRun("failed", "manual__1", Path("/tmp/dags-test.log"), {"j-1": "TERMINATED"}, failure=failure)


def test_the_first_line_is_the_job_s_own_and_nothing_repeats() -> None:
    failure = {
        "summary": JOB_ERROR,
        "emr_reason": "EMR step pca (s-2) FAILED: The step's command exited with code 2",
        "logs": [
            {"name": "stdout of step pca", "uri": "s3://b/stdout.gz", "tail": f"starting\n{JOB_ERROR}"},
            {"name": "stderr of step pca", "uri": "s3://b/stderr.gz", "tail": "Command exiting with ret '2'"},
        ],
    }

    lines = failure_summary(failed_run(failure)).splitlines()

    assert lines[0] == f"demo: error: {JOB_ERROR}"
    assert lines[2] == "  EMR step pca (s-2) FAILED: The step's command exited with code 2"
    assert "    Command exiting with ret '2'" in lines
    assert "(not archived)" not in lines[-1]


def test_an_empty_log_is_not_called_unarchived() -> None:
    failure = {"summary": "EMR step pca (s-2) FAILED", "logs": [{"name": "stderr", "uri": "s3://b/e.gz", "tail": ""}]}

    lines = failure_summary(failed_run(failure)).splitlines()

    assert lines[0] == "demo: error: EMR step pca (s-2) FAILED"
    assert lines[-1] == "    (empty)"
    assert len([line for line in lines if "EMR step pca" in line]) == 1
