"""The bench's yardstick, run for real through spark-submit: it must start, run its Python task and stop."""

from __future__ import annotations

from pathlib import Path

from tools.bench_jobs import empty_job


def test_the_empty_job_runs_one_python_task_and_reports_its_phases(tmp_path: Path) -> None:
    run = empty_job(tmp_path, "empty")

    assert run.summary["job"] == "empty_spark_job"
    assert set(run.summary["seconds"]) == {"session_start", "python_task", "session_stop"}
    assert run.wall_s > sum(run.summary["seconds"].values())
    assert run.peak_memory_gb > 0
