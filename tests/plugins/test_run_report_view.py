"""The run report tab, through Airflow's own API app with the plugin loaded: what it shows and to whom.

The app is Airflow's (``create_app``) on a migrated throwaway database, with its simple auth manager; S3
is moto's, reached through ``aws_default`` as in the tasks. A successful run's outputs are checked by the
real ``check_output`` task, which writes the summary the view reads and emits the run's asset events.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from types import SimpleNamespace

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk import Asset
from airflow.sdk.execution_time.context import OutletEventAccessors
from fastapi.testclient import TestClient

from fruits_airflow import assets, cost, run_failures, tasks
from fruits_airflow.paths import RunPaths
from fruits_contract import SEPARABILITY_REPORT, Summary

DAG_ID = "fruits_pipeline"
RUN_ID = "manual__2026-11-30T01:00:00+00:00"
REGION = "eu-west-1"
K = 2
LABELS = ("Apple <Red> 1", "Banana")
EVIL_LABEL = '<img src=x onerror="alert(1)">'
REJECTS = [
    (f"s3://b/images/{EVIL_LABEL}/bad.jpg", EVIL_LABEL, "not an image: <script>alert(2)</script>"),
    ("s3://b/images/Banana/empty.jpg", "Banana", "empty file"),
]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(scope="module")
def api_app() -> Iterator[TestClient]:
    from airflow.api_fastapi.app import create_app
    from airflow.utils.db import initdb

    initdb()
    with TestClient(create_app("core")) as client:
        yield client


def token_of(role: str | None) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=f"user-{role}", role=role))


@pytest.fixture
def pipeline_env(monkeypatch, bucket, network):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))
    monkeypatch.setenv("AIRFLOW_VAR_FRUITS_PIPELINE", json.dumps({"bucket": bucket, **network}))


@pytest.fixture
def paths(bucket) -> RunPaths:
    return RunPaths.for_run(bucket, RUN_ID, reprocess_all=False, weights="none")


def put_parquet(s3, bucket: str, key: str, columns: dict) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


@pytest.fixture
def successful_run(s3, paths, network, pipeline_env) -> tuple[dict, OutletEventAccessors]:
    """A run's outputs as the jobs write them, then checked by check_output; returns its XCom and events."""
    images = [(f"s3://b/images/{label}/{i}.jpg", label) for label in LABELS for i in range(4)]
    columns = {"path": [p for p, _ in images], "label": [label for _, label in images]}
    put_parquet(s3, paths.bucket, f"{paths.features_prefix}part-0.parquet", {**columns, "features": [[0.1] * 8] * 8})
    put_parquet(s3, paths.bucket, f"{paths.pca_prefix}part-0.parquet", {**columns, "pca_features": [[0.5] * K] * 8})
    s3.put_object(Bucket=paths.bucket, Key=paths.pca_success_key, Body=b"")
    put_parquet(
        s3,
        paths.bucket,
        f"{paths.rejects_prefix}part-0.parquet",
        {"path": [r[0] for r in REJECTS], "label": [r[1] for r in REJECTS], "reason": [r[2] for r in REJECTS]},
    )
    variance = {"k": K, "threshold": 0.9, "n_images": 8, "n_features": 8, "cumulative": [0.6, 0.93, 1.0]}
    separability = {
        "status": "ok",
        "holdout_fraction": 0.25,
        "n_train": 6,
        "n_test": 2,
        "accuracy": 0.5,
        "per_label": [
            {"label": LABELS[0], "n_test": 1, "correct": 1, "accuracy": 1.0},
            {"label": LABELS[1], "n_test": 1, "correct": 0, "accuracy": 0.0},
        ],
    }
    report = {
        "explained_variance.json": json.dumps(variance).encode(),
        SEPARABILITY_REPORT: json.dumps(separability).encode(),
        "pca_features.csv": b"path,label,pc1,pc2\n",
        "cumulative_variance.png": PNG,
        "pca_scatter.png": PNG,
    }
    for name, body in report.items():
        s3.put_object(Bucket=paths.bucket, Key=f"{paths.report_prefix}{name}", Body=body)
    manifest = {
        "images_digest": "d",
        "n_images": 10,
        "n_featurized": 5,
        "n_reused": 3,
        "n_rejected": 2,
        "n_features": 8,
    }
    s3.put_object(Bucket=paths.bucket, Key=paths.manifest_key, Body=json.dumps(manifest).encode())
    events = OutletEventAccessors()
    context = {
        "run_id": RUN_ID,
        "dag": type("Dag", (), {"dag_id": DAG_ID})(),
        "params": {"reprocess_all": False, "weights": "none", "variance": 0.9},
    }
    config = {"bucket": paths.bucket, **network}
    uploaded = {"uploaded": 3, "removed": 4, "n_images": 10}
    found = {"images_digest": "d", "n_images": 10, "reason": "", "reused_run_id": None, "reused_run_key": None}
    cluster_id = ended_cluster(boto3.client("emr", region_name=REGION))
    size = {"core_count": 0, "images_to_featurize": 5, "reason": "5 image(s) to featurize: the primary node alone"}
    created = SimpleNamespace(xcom_pull=lambda task_ids: {"create_cluster": cluster_id}[task_ids])
    returned = tasks.check_output.function(
        config, dataclasses.asdict(paths), uploaded, found, size, outlet_events=events, ti=created, **context
    )
    return returned, events


def ended_cluster(emr) -> str:
    """A primary-only cluster, terminated (moto keeps its instances' timelines open: the bill is not final)."""
    cluster_id = emr.run_job_flow(
        Name="report",
        ReleaseLabel="emr-7.13.0",
        Instances={
            "InstanceGroups": [{"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1}],
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        JobFlowRole="profile",
        ServiceRole="role",
    )["JobFlowId"]
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    return cluster_id


def get_report(client: TestClient, token: str | None, dag_id: str = DAG_ID, run_id: str = RUN_ID):
    client.cookies.clear()
    if token:
        client.cookies.set("_token", token)
    return client.get(f"/fruits-run-report/dags/{dag_id}/runs/{run_id}")


def test_check_output_writes_the_summary_the_view_reads(successful_run, s3, paths):
    returned, _ = successful_run
    summary = json.loads(s3.get_object(Bucket=paths.bucket, Key=f"{paths.run_prefix}summary.json")["Body"].read())
    assert (summary[Summary.UPLOADED], summary[Summary.REMOVED]) == (3, 4)
    assert (summary[Summary.FEATURIZED], summary[Summary.REUSED], summary[Summary.REJECTED]) == (5, 3, 2)
    assert (summary[Summary.N_IMAGES], summary[Summary.K], summary[Summary.CLUSTER_CREATED]) == (8, K, True)
    assert summary[Summary.VARIANCE_KEPT] == 0.93
    assert (summary[Summary.COST]["nodes"], summary[Summary.COST]["markets"]) == ({"m5.xlarge": 1}, {"ON_DEMAND": 1})
    assert summary[Summary.COST]["usd"] > 0
    assert summary[Summary.CLUSTER_SIZE]["core_count"] == 0
    assert [r["reason"] for r in summary[Summary.REJECTS]] == [r[2] for r in REJECTS]
    assert returned == {key: value for key, value in summary.items() if key != Summary.REJECTS}


def test_the_run_s_asset_events_carry_its_summary(successful_run, paths):
    returned, events = successful_run
    emitted = {
        alias.name: [(event.dest_asset_key.uri, event.extra) for event in events[alias].asset_alias_events]
        for alias in assets.OUTLETS
    }
    assert emitted == {
        "fruits_features": [(Asset(paths.features_uri.rstrip("/")).uri, returned)],
        "fruits_pca": [(Asset(paths.pca_uri.rstrip("/")).uri, returned)],
    }


def test_a_successful_run_shows_counts_pca_separability_plots_rejects_and_locations(api_app, successful_run, paths):
    response = get_report(api_app, token_of("VIEWER"))

    assert response.status_code == 200, response.text
    page = response.text
    for expected in ("uploaded", "removed", "featurized by this run", "reused", ">8<", ">3<", ">4<", ">5<", "93.0%"):
        assert expected in page, expected
    for expected in ("90.0%", "50.0%"):
        assert expected in page, expected
    assert page.count("data:image/png;base64,") == 2
    assert "Cost (estimate)" in page
    assert "<td>m5.xlarge</td><td>ON_DEMAND</td>" in page
    assert "Size: 5 image(s) to featurize: the primary node alone." in page
    assert "empty file" in page
    assert paths.pca_uri in page
    assert "random weights" in page
    assert response.headers["cache-control"] == "no-store"


def test_a_run_that_reused_another_run_s_outputs_says_so(api_app, s3, paths, pipeline_env):
    summary = {
        Summary.CLUSTER_CREATED: False,
        Summary.REUSED_RUN_ID: "scheduled__<earlier>",
        Summary.UPLOADED: 0,
        Summary.REMOVED: 0,
        Summary.FEATURIZED: 0,
        Summary.REUSED: 12,
        Summary.N_IMAGES: 12,
        Summary.COST: {"usd": 0, "node_hours": 0, "nodes": {}, "lines": []},
    }
    s3.put_object(Bucket=paths.bucket, Key=paths.summary_key, Body=json.dumps(summary).encode())

    page = get_report(api_app, token_of("VIEWER")).text

    assert "no cluster, this run reused the outputs of run scheduled__&lt;earlier&gt;" in page
    assert ">12<" in page
    assert "No cluster: <b>$0</b>." in page


def test_labels_and_reasons_from_file_names_are_escaped(api_app, successful_run):
    page = get_report(api_app, token_of("VIEWER")).text

    assert "<script>" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "Apple &lt;Red&gt; 1" in page


def test_a_failed_run_shows_the_job_s_own_line_first_then_emr_s_reason_and_log_tails(api_app, s3, paths, pipeline_env):
    failure = {
        "summary": "extract_features: error: no image could be decoded",
        "emr_reason": "EMR step extract_features (s-1) FAILED: Unknown",
        "cause": "step",
        "cluster": {"id": "j-1", "state": "TERMINATED", "reason_code": None, "reason_message": None},
        "failed_step": {
            "id": "s-1",
            "name": "extract_features",
            "state": "FAILED",
            "reason": "Unknown",
            "message": None,
        },
        "logs": [
            {"name": "stdout of step extract_features", "uri": "s3://b/logs/x/stdout.gz", "tail": "error: <bad> input"},
            {"name": "stderr of step extract_features", "uri": "s3://b/logs/x/stderr.gz", "tail": ""},
        ],
        "cost": {
            "usd": 0.0558,
            "node_hours": 0.2,
            "nodes": {"m5.xlarge": 1},
            "lines": [
                {"instance_type": "m5.xlarge", "market": "ON_DEMAND", "nodes": 1, "node_hours": 0.2, "usd": 0.0558}
            ],
        },
    }
    s3.put_object(Bucket=paths.bucket, Key=paths.failure_key, Body=json.dumps(failure).encode())

    page = get_report(api_app, token_of("VIEWER")).text

    assert "This run failed</h2><p><b>extract_features: error: no image could be decoded</b>" in page
    assert "extract_features (s-1) FAILED" in page
    assert "<pre>error: &lt;bad&gt; input</pre>" in page
    assert "<p>Empty.</p>" in page
    assert "Images</h2>" not in page
    assert "<b>$0.0558</b>" in page


def test_a_run_refused_before_any_cluster_shows_the_refusal_s_line_first_and_costs_nothing(
    api_app, s3, paths, pipeline_env
):
    line = f"s3://{paths.bucket}/images/ holds 1 image(s); the PCA needs at least 2: add images to the landing folder."
    refusal = run_failures.refusal_report(line, dag_id=DAG_ID, run_id=RUN_ID, task_id="find_reusable_run")
    refusal["cost"] = cost.no_bill(cost.load_prices(), REGION)
    s3.put_object(Bucket=paths.bucket, Key=paths.failure_key, Body=json.dumps(refusal).encode())

    page = get_report(api_app, token_of("VIEWER")).text

    assert f"This run was refused before any cluster</h2><p><b>{line}</b>" in page
    assert "<td>refused by</td><td>find_reusable_run</td>" in page
    assert "No cluster: <b>$0</b>" in page
    assert "None" not in page


def test_a_refusal_of_an_earlier_try_gives_way_to_the_output_a_later_try_checked(api_app, successful_run, s3, paths):
    refusal = run_failures.refusal_report("too few images", dag_id=DAG_ID, run_id=RUN_ID, task_id="find_reusable_run")
    refusal["reported_at"] = "2026-01-01T00:00:00+00:00"
    s3.put_object(Bucket=paths.bucket, Key=paths.failure_key, Body=json.dumps(refusal).encode())

    page = get_report(api_app, token_of("VIEWER")).text

    assert "refused" not in page
    assert "Images</h2>" in page


def test_a_run_with_nothing_in_s3_yet_says_so(api_app, s3, pipeline_env):
    page = get_report(api_app, token_of("VIEWER")).text
    assert "Nothing under" in page


def test_without_login_the_view_answers_401(api_app, pipeline_env):
    assert get_report(api_app, None).status_code == 401


def test_a_forged_token_is_refused_with_403(api_app, pipeline_env):
    assert get_report(api_app, token_of("VIEWER")[:-4] + "AAAA").status_code == 403


def test_a_user_without_read_access_to_the_dag_gets_403(api_app, s3, pipeline_env):
    response = get_report(api_app, token_of(None))
    assert response.status_code == 403
    assert "Nothing under" not in response.text


@pytest.mark.parametrize(
    ("upload_result", "expected"),
    [
        (5, {Summary.UPLOADED: 5}),
        ({"uploaded": 2, "removed": 1, "n_images": 7, "other": 0}, {"uploaded": 2, "removed": 1}),
        (None, {}),
    ],
)
def test_the_summary_takes_the_upload_s_count_or_the_landing_sync_s_counts(upload_result, expected):
    from fruits_airflow.run_summary import upload_counts

    assert upload_counts(upload_result) == expected
