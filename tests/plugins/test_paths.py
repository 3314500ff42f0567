from __future__ import annotations

import re

import pytest

from fruits_airflow.paths import RunPaths, run_key

HADOOP_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@pytest.mark.parametrize(
    "run_id",
    [
        "manual__2025-03-01T10:15:30.123456+00:00",
        "scheduled__2025-03-01T00:00:00+00:00",
        "_hidden/looking run",
        ".dotted",
        "été:ünïcode",
    ],
)
def test_run_keys_are_hadoop_path_safe(run_id):
    assert HADOOP_SAFE.fullmatch(run_key(run_id))


def test_a_safe_run_id_is_its_own_key():
    assert run_key("backfill_2025-03-01") == "backfill_2025-03-01"


def test_a_run_key_keeps_the_run_id_readable():
    key = run_key("manual__2025-03-01T10:15:30+00:00")

    assert key.startswith("manual__2025-03-01T10_15_30_00_00-")


def test_run_ids_that_differ_only_in_unsafe_characters_get_different_keys():
    assert run_key("a:b") != run_key("a+b")
    assert run_key("a:b") != run_key("a_b")


def test_the_same_run_id_always_gets_the_same_key():
    assert run_key("manual__2025-03-01T10:15:30+00:00") == run_key("manual__2025-03-01T10:15:30+00:00")


def test_an_empty_run_id_is_refused():
    with pytest.raises(ValueError, match="run id"):
        run_key("")


def test_a_default_run_adds_to_the_shared_features_and_writes_its_own_pca():
    paths = RunPaths.for_run("fruits", "manual__1", reprocess_all=False, weights="imagenet")

    assert paths.images_uri == "s3://fruits/images/"
    assert paths.features_uri == "s3://fruits/features/imagenet/"
    assert paths.rejects_uri == "s3://fruits/features_rejects/imagenet/"
    assert paths.pca_uri == "s3://fruits/runs/manual__1/pca/"
    assert paths.report_uri == "s3://fruits/runs/manual__1/report/"
    assert paths.pca_success_key == "runs/manual__1/pca/_SUCCESS"
    assert paths.logs_uri == "s3://fruits/logs/"


@pytest.mark.parametrize(
    ("weights", "folder"), [("imagenet", "imagenet"), ("none", "none"), ("s3://w/m.h5", "file-2027407cb2")]
)
def test_each_network_grows_its_own_shared_features(weights, folder):
    paths = RunPaths.for_run("fruits", "manual__1", reprocess_all=False, weights=weights)

    assert paths.features_uri == f"s3://fruits/features/{folder}/"
    assert paths.rejects_uri == f"s3://fruits/features_rejects/{folder}/"


def test_two_weights_files_never_share_features():
    first = RunPaths.for_run("fruits", "manual__1", reprocess_all=False, weights="s3://w/a.weights.h5")
    second = RunPaths.for_run("fruits", "manual__1", reprocess_all=False, weights="s3://w/b.weights.h5")

    assert first.features_uri != second.features_uri


@pytest.mark.parametrize("weights", ["imagenet", "none", "s3://w/m.h5"])
def test_reprocessing_gets_the_runs_own_features(weights):
    paths = RunPaths.for_run("fruits", "manual__1", reprocess_all=True, weights=weights)

    assert paths.features_uri == "s3://fruits/runs/manual__1/features/"
    assert paths.rejects_uri == "s3://fruits/runs/manual__1/features_rejects/"
    assert paths.features_prefix == "runs/manual__1/features/"


def test_a_run_s_failure_report_sits_beside_its_outputs_never_inside_them():
    paths = RunPaths.for_run("b", "manual__2026-01-01T00:00:00+00:00", reprocess_all=False, weights="imagenet")

    assert paths.failure_key == f"{paths.run_prefix}failure.json"
    assert not paths.failure_key.startswith((paths.pca_prefix, paths.report_prefix, paths.features_prefix))
