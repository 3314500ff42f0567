"""Nothing new, nothing to do: the decision before the cluster, and the summary check_output writes."""

from __future__ import annotations

import dataclasses
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.execution_time.context import OutletEventAccessors

from fruits_airflow import assets, tasks
from fruits_airflow.paths import RunPaths
from fruits_airflow.reuse import images_in_s3
from fruits_contract import images_digest

FIRST = {"run_id": "scheduled__2026-01-01T00:00:00+00:00", "params": {"reprocess_all": False, "weights": "none"}}
SECOND = {"run_id": "scheduled__2026-01-02T00:00:00+00:00", "params": {"reprocess_all": False, "weights": "none"}}
DAG = {"dag": type("Dag", (), {"dag_id": "fruits_pipeline"})()}
UPLOADED = {"uploaded": 2, "removed": 1, "n_images": 2}
K = 3


@pytest.fixture(autouse=True)
def aws_default(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))


@pytest.fixture
def images(s3, bucket) -> None:
    for name in ("Kiwi/0.jpg", "Pear/1.png"):
        s3.put_object(Bucket=bucket, Key=f"images/{name}", Body=name.encode())
    s3.put_object(Bucket=bucket, Key="images/notes.txt", Body=b"not an image")


def paths_of(bucket: str, run: dict) -> RunPaths:
    return RunPaths.for_run(bucket, run["run_id"], reprocess_all=False, weights="none")


def write_outputs(s3, paths: RunPaths, digest: str, n_images: int = 2) -> None:
    """What the steps of a run leave: the manifest, the PCA and the report."""
    manifest = {"images_digest": digest, "n_images": n_images, "n_featurized": 1, "n_reused": 1, "n_rejected": 0}
    s3.put_object(Bucket=paths.bucket, Key=paths.manifest_key, Body=json.dumps({**manifest, "n_features": n_images}))
    table = pa.table({"pca_features": pa.array([[0.1] * K] * n_images, type=pa.list_(pa.float32()))})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    s3.put_object(Bucket=paths.bucket, Key=f"{paths.pca_prefix}part-00000.parquet", Body=buffer.getvalue())
    report = json.dumps({"k": K, "n_images": n_images, "threshold": 0.95, "cumulative": [0.5, 0.8, 0.96]}).encode()
    for name in ("explained_variance.json", "pca_features.csv", "cumulative_variance.png", "pca_scatter.png"):
        s3.put_object(Bucket=paths.bucket, Key=f"{paths.report_prefix}{name}", Body=report)
    separability = {"status": "ok", "accuracy": 0.5}
    s3.put_object(Bucket=paths.bucket, Key=f"{paths.report_prefix}separability.json", Body=json.dumps(separability))


def decide(variable, run: dict, variance: float = 0.95, **params) -> dict:
    run = {**run, "params": {**run["params"], "variance": variance, **params}}
    return tasks.find_reusable_run.function({**variable, "weights": "none"}, UPLOADED, **run)


def check(variable, run: dict, found: dict, variance: float = 0.95, events=None) -> dict:
    run = {**run, "params": {**run["params"], "variance": variance}}
    paths = dataclasses.asdict(paths_of(variable["bucket"], run))
    config = {**variable, "weights": "none"}
    return tasks.check_output.function(config, paths, UPLOADED, found, **run, **DAG, outlet_events=events)


def emitted(events: OutletEventAccessors) -> dict[str, list[tuple[str, dict]]]:
    return {
        alias.name: [(event.dest_asset_key.uri, event.extra) for event in events[alias].asset_alias_events]
        for alias in assets.OUTLETS
    }


@pytest.fixture
def first_run(s3, bucket, variable, images) -> dict:
    """A run that computed its outputs and whose check wrote its summary."""
    found = decide(variable, FIRST)
    write_outputs(s3, paths_of(bucket, FIRST), found["images_digest"])
    return check(variable, FIRST, found)


def test_the_digest_covers_the_image_keys_sizes_and_seconds_only(s3, bucket, images):
    listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket, Prefix="images/")["Contents"]}
    expected = images_digest(
        (key.removeprefix("images/"), o["Size"], int(o["LastModified"].timestamp()) * 1000 + 999)
        for key, o in listed.items()
        if key != "images/notes.txt"
    )

    assert images_in_s3(s3, bucket) == (expected, 2)


def test_a_first_run_needs_a_cluster(s3, bucket, variable, images):
    found = decide(variable, FIRST)

    assert found["reused_run_id"] is None
    assert "no checked run with weights 'none' yet" in found["reason"]


def test_a_computed_run_writes_its_summary_and_becomes_the_latest(s3, bucket, first_run):
    latest = json.loads(s3.get_object(Bucket=bucket, Key="runs/_latest/none.json")["Body"].read())

    assert {key: value for key, value in latest.items() if key != "rejects"} == first_run
    assert first_run["cluster_created"] is True
    assert first_run["reused_run_id"] is None
    assert (first_run["uploaded"], first_run["removed"], first_run["featurized"], first_run["reused"]) == (2, 1, 1, 1)
    assert (first_run["n_images"], first_run["k"], first_run["threshold"]) == (2, K, 0.95)
    assert first_run["outputs"]["pca"] == paths_of(bucket, FIRST).pca_uri


def test_nothing_changed_reuses_the_last_runs_outputs_and_says_so(s3, bucket, variable, first_run):
    found = decide(variable, SECOND)
    events = OutletEventAccessors()
    summary = check(variable, SECOND, found, events=events)

    assert found["reused_run_id"] == FIRST["run_id"]
    assert found["n_covered"] == 2
    assert found["reason"].startswith(f"Nothing changed since run {FIRST['run_id']} (the same 2 image(s)")
    assert summary["cluster_created"] is False
    assert (summary["reused_run_id"], summary["featurized"], summary["reused"]) == (FIRST["run_id"], 0, 2)
    assert (summary["cost"]["usd"], summary["cost"]["nodes"]) == (0, {})
    assert summary["outputs"]["pca"] == paths_of(bucket, FIRST).pca_uri
    assert summary["outputs"]["summary"] == paths_of(bucket, SECOND).uri(paths_of(bucket, SECOND).summary_key)
    stored = json.loads(s3.get_object(Bucket=bucket, Key=paths_of(bucket, SECOND).summary_key)["Body"].read())
    assert {key: value for key, value in stored.items() if key != "rejects"} == summary
    # The reused outputs' assets get events too, carrying this run's summary.
    features_uri = paths_of(bucket, SECOND).features_uri.rstrip("/")
    assert emitted(events) == {
        "fruits_features": [(features_uri, summary)],
        "fruits_pca": [(paths_of(bucket, FIRST).pca_uri.rstrip("/"), summary)],
    }
    latest = json.loads(s3.get_object(Bucket=bucket, Key="runs/_latest/none.json")["Body"].read())
    assert latest["run_id"] == FIRST["run_id"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("added", "differ from those run"),
        ("moved", "differ from those run"),
        ("rewritten", "differ from those run"),
        ("variance", "kept variance 0.95, this one asks 0.9"),
        ("reprocess_all", "reprocess_all asks to featurize every image again"),
    ],
)
def test_any_change_needs_a_cluster(s3, bucket, variable, first_run, change, reason):
    variance, params = 0.95, {}
    if change == "added":
        s3.put_object(Bucket=bucket, Key="images/Kiwi/2.jpg", Body=b"new")
    elif change == "moved":
        s3.copy_object(
            Bucket=bucket, Key="images/Lemon/0.jpg", CopySource={"Bucket": bucket, "Key": "images/Kiwi/0.jpg"}
        )
        s3.delete_object(Bucket=bucket, Key="images/Kiwi/0.jpg")
    elif change == "rewritten":
        # A new size; the same size counts as a rewrite once it lands in a later second (LastModified).
        s3.put_object(Bucket=bucket, Key="images/Kiwi/0.jpg", Body=b"Kiwi/0.jpg, rewritten")
    elif change == "variance":
        variance = 0.9
    else:
        params = {"reprocess_all": True}

    found = decide(variable, SECOND, variance, **params)

    assert found["reused_run_id"] is None
    assert reason in found["reason"]


def test_removing_all_but_one_image_is_refused_before_any_cluster(s3, bucket, variable, first_run):
    s3.delete_object(Bucket=bucket, Key="images/Kiwi/0.jpg")

    with pytest.raises(AirflowFailException, match=r"images/ holds 1 image\(s\); the PCA needs at least 2"):
        decide(variable, SECOND)


def test_reused_outputs_that_are_gone_fail_the_check(s3, bucket, variable, first_run):
    found = decide(variable, SECOND)
    s3.delete_object(Bucket=bucket, Key=paths_of(bucket, FIRST).manifest_key)

    with pytest.raises(Exception, match=r"manifest\.json is missing"):
        check(variable, SECOND, found)
