"""The benchmark's pure helpers: what it reads from job logs, and how it judges and shows the figures."""

from __future__ import annotations

import pytest

from tools.bench import featurize_phase, n_featurized, summarize, table

EXTRACT_LOG = """\
2026-11-21 04:09:05,659 INFO extract_features: /x: 2048 images, 0 already done, 2048 new
2026-11-21 04:09:56,668 INFO fruits_spark.progress: featurize 2048 images: finished in 7.2 s
2026-11-21 04:10:03,707 INFO extract_features: featurized 2047, rejected 1 -> /f (rejects: /f_rejects)
"""
RERUN_LOG = "INFO extract_features: /x: 2048 images, 2048 already done, 0 new\n"


@pytest.fixture
def result() -> dict:
    ceiling = {
        "images_per_s": 500.0,
        "runtime": "LiteRT, 2 threads, batch 1",
        "litert_one_thread_batch_1_images_per_s": 300.0,
        "keras_predict_images_per_s": 100.0,
    }
    median = {
        "extract": {"wall_s": 20.0, "cpu_s": 30.0, "peak_memory_gb": 2.5, "images": 2000},
        "featurize_phase": {"images": 2000, "wall_s": 5.0},
        "rerun": {"wall_s": 4.0},
        "pca": {"wall_s": 9.0},
    }
    s3 = {
        "median": {
            "0": {"phase_images_per_s": 200.0, "wall_s": 30.0, "image_requests_per_image": 1.01},
            "30": {"phase_images_per_s": 170.0, "wall_s": 32.0, "image_requests_per_image": 1.01},
        },
        "runs": {"30": [{"rerun_image_object_requests": 0}]},
    }
    return {"ceiling": ceiling, "summary": summarize(ceiling, {"median": median}, s3)}


def test_featurize_phase_is_read_from_the_progress_line() -> None:
    assert featurize_phase(EXTRACT_LOG) == (2048, 7.2)


def test_a_log_without_featurize_phase_is_an_error() -> None:
    with pytest.raises(ValueError, match="featurize N images"):
        featurize_phase(RERUN_LOG)


@pytest.mark.parametrize(("log", "expected"), [(EXTRACT_LOG, 2047), (RERUN_LOG, 0)])
def test_featurized_count_comes_from_the_summary_line(log: str, expected: int) -> None:
    assert n_featurized(log) == expected


def test_goals_are_judged_on_the_median_figures(result: dict) -> None:
    goals = result["summary"]["goals"]

    assert goals["b_vs_a"]["value"] == pytest.approx(100 / 500)
    assert not goals["b_vs_a"]["met"]
    assert goals["b_peak_memory_gb"]["met"]
    assert goals["c_vs_b_wall"]["value"] == pytest.approx(4 / 20)
    assert goals["c_vs_b_wall"]["met"]
    assert goals["e_s3_30ms_vs_0ms"]["value"] == pytest.approx(170 / 200)
    assert goals["e_s3_30ms_vs_0ms"]["met"]
    assert goals["e_s3_rerun_image_object_requests"]["met"]


def test_table_shows_each_figure_and_goal_on_its_own_line(result: dict) -> None:
    lines = table(result).splitlines()

    assert any(line.startswith("(a) ceiling: LiteRT") and line.endswith("500 images/s") for line in lines)
    assert any(line.startswith("(b) extract_features end to end") and line.endswith("100 images/s") for line in lines)
    assert any(line.startswith("goal b_vs_a") and line.endswith("0.20  NOT met") for line in lines)
    assert any(line.startswith("goal c_vs_b_wall") and line.endswith("0.20  met") for line in lines)
    assert any(line.startswith("    at 30 ms per request") and line.endswith("170 images/s") for line in lines)
