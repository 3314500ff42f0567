"""The benchmark's pure helpers: the marginal rate and fixed cost, and how it judges and shows the figures."""

from __future__ import annotations

import pytest

from tools.bench import parse_args
from tools.bench_jobs import JobRun, run_figures
from tools.bench_report import BASELINE, BEFORE, EMPTY_JOB, PROJECT, rate_and_fixed_cost, summarize, table


def _sized(wall_2048: float, wall_8192: float, memory: float) -> dict:
    phases = {"session_start": 3.0, "featurize": wall_2048 - 10.0}
    return {
        "2048": {"wall_s": wall_2048, "cpu_s": 1.0, "peak_memory_gb": memory, "seconds": phases},
        "8192": {"wall_s": wall_8192, "cpu_s": 1.0, "peak_memory_gb": memory + 0.5, "seconds": phases},
    }


CEILING = {
    "images_per_s": 300.0,
    "runtime": "LiteRT, 2 threads, batch 1",
    "litert_one_thread_batch_1_images_per_s": 160.0,
    "keras_predict_images_per_s": 90.0,
}


@pytest.fixture
def result() -> dict:
    # The project: 256 images/s and 12 s fixed; the baseline: 96 images/s and 40 s fixed; the empty job 10 s.
    comparison = {
        "median": {
            PROJECT: _sized(20.0, 44.0, 2.0),
            BASELINE: _sized(61.333, 125.333, 3.5),
            EMPTY_JOB: {"wall_s": 10.0},
        }
    }
    once = {"rerun": {"wall_s": 4.0}, "pca": {"wall_s": 9.0}}
    s3 = {
        "median": {
            "0": {"phase_images_per_s": 200.0, "wall_s": 30.0, "image_requests_per_image": 1.01},
            "30": {"phase_images_per_s": 170.0, "wall_s": 32.0, "image_requests_per_image": 1.01},
        },
        "runs": {"30": [{"rerun_image_object_requests": 0}]},
    }
    return {"ceiling": CEILING, "summary": summarize(CEILING, comparison, once, s3)}


@pytest.fixture
def reduced() -> dict:
    """A ``--reduced --before`` run: no baseline, no (c) to (e); before: 200 images/s and 25 s fixed."""
    comparison = {
        "median": {
            PROJECT: _sized(20.0, 44.0, 2.0),
            BEFORE: _sized(35.24, 65.96, 1.5),
            EMPTY_JOB: {"wall_s": 10.0},
        }
    }
    return {"ceiling": CEILING, "summary": summarize(CEILING, comparison)}


def test_marginal_rate_and_fixed_cost_come_from_the_two_sizes() -> None:
    rate, fixed = rate_and_fixed_cost({2048: 20.0, 8192: 44.0})

    assert rate == pytest.approx(6144 / 24)
    assert fixed == pytest.approx(20.0 - 2048 / rate)


def test_goals_are_judged_on_the_median_figures(result: dict) -> None:
    goals = result["summary"]["goals"]

    assert goals["speedup_at_2048_vs_baseline"]["value"] == pytest.approx(61.333 / 20.0)
    assert goals["speedup_at_2048_vs_baseline"]["met"]
    assert goals["marginal_rate_vs_ceiling"]["value"] == pytest.approx(256 / 300)
    assert goals["marginal_rate_vs_ceiling"]["met"]
    assert goals["fixed_cost_vs_empty_job"]["value"] == pytest.approx(1.2)
    assert goals["fixed_cost_vs_empty_job"]["met"]
    assert goals["peak_memory_gb"]["met"]
    assert goals["e_s3_30ms_vs_0ms"]["value"] == pytest.approx(170 / 200)
    assert goals["e_s3_rerun_image_object_requests"]["met"]


def test_a_fixed_cost_above_one_and_a_half_empty_jobs_is_not_met() -> None:
    comparison = {
        "median": {PROJECT: _sized(40.0, 64.0, 2.0), BASELINE: _sized(61.0, 125.0, 3.5), EMPTY_JOB: {"wall_s": 16.0}}
    }

    goals = summarize(CEILING, comparison)["goals"]

    assert goals["fixed_cost_vs_empty_job"]["value"] == pytest.approx(32.0 / 16.0)
    assert not goals["fixed_cost_vs_empty_job"]["met"]
    assert not goals["speedup_at_2048_vs_baseline"]["met"]


def test_the_empty_job_and_each_fixed_cost_as_its_multiple_are_in_the_figures(reduced: dict) -> None:
    figures = reduced["summary"]["figures"]

    assert figures["empty_job_s"] == 10.0
    assert figures[PROJECT]["fixed_cost_vs_empty_job"] == pytest.approx(1.2)
    assert figures[BEFORE]["fixed_cost_vs_empty_job"] == pytest.approx(2.5, abs=0.01)
    assert figures[BEFORE]["marginal_vs_ceiling"] == pytest.approx(200 / 300, abs=0.01)
    assert BASELINE not in figures


def test_table_shows_each_figure_and_goal_on_its_own_line(result: dict) -> None:
    lines = table(result).splitlines()

    assert any(line.startswith("(a) ceiling: LiteRT") and line.endswith("300 images/s") for line in lines)
    assert any(line.strip().startswith("empty Spark job") and line.endswith("10.0 s") for line in lines)
    assert any(
        line.strip().startswith("end to end, 2048 images") and line.endswith("20.0 s, CPU 1.0 s") for line in lines
    )
    assert any(line.strip().startswith("marginal rate") and line.endswith("96 images/s, 0.32 of (a)") for line in lines)
    assert any(line.strip().startswith("fixed cost") and line.endswith("12.0 s, 1.20x the empty job") for line in lines)
    assert any(line.startswith("goal fixed_cost_vs_empty_job") and line.endswith("1.20  met") for line in lines)
    assert any(line.startswith("    at 30 ms per request") and line.endswith("170 images/s") for line in lines)


def test_a_reduced_table_shows_the_before_tree_beside_this_one_and_no_absent_section(reduced: dict) -> None:
    text = table(reduced)

    assert "extract_features of --before" in text
    assert "25.0 s, 2.50x the empty job" in text
    assert "baseline" not in text
    assert "(c)" not in text
    assert "(e)" not in text


def test_reduced_runs_at_smaller_sizes_unless_told() -> None:
    assert parse_args(["--reduced"]).sizes == [1024, 4096]
    assert parse_args(["--reduced", "--sizes", "64", "32"]).sizes == [32, 64]
    assert parse_args([]).sizes == [2048, 8192]


def test_a_before_folder_without_the_job_is_one_clear_error(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--before", str(tmp_path)])

    assert exit_info.value.code == 2
    assert f"--before {tmp_path} holds no extract_features.py; pass a spark_jobs folder" in capsys.readouterr().err


def test_a_run_s_figures_count_featurized_images_only_for_a_job_that_featurizes() -> None:
    extract = JobRun(30.0, 50.0, 1.3, 0.5, {"n_featurized": 2048, "seconds": {"featurize": 19.0}})
    pca = JobRun(12.0, 15.0, 0.9, 0.2, {"k": 40, "seconds": {"fit": 4.0}})

    assert run_figures(extract)["n_featurized"] == 2048
    assert run_figures(pca) == {
        "wall_s": 12.0,
        "cpu_s": 15.0,
        "peak_memory_gb": 0.9,
        "other_cpu_s": 0.2,
        "seconds": {"fit": 4.0},
    }
