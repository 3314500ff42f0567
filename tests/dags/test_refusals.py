"""Every mistake the Airflow side can see is refused before the cluster, in one line, and costs no RunJobFlow.

The DAG's own task callables run in its order against the embedded endpoint, as the role that
``aws_default`` assumes (the stack's own Airflow policy, enforced), up to ``create_cluster``. A run that
gets that far creates its cluster, as the DAG would, so a missing refusal shows as a RunJobFlow in the
endpoint's request log (the cluster is then terminated at once). No Spark, no cluster: each run is a
few API calls. A refusal is recorded where the demo and the Report tab read it: the refusing task's XCom
``refusal`` (a task instance that keeps what is pushed stands in for Airflow's) and, when the bucket is
usable, the run's ``failure.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException

from fruits_airflow import tasks
from fruits_airflow.config import AWS_CONN_ID
from fruits_airflow.operators import EmrCreateJobFlowOperator, EmrTerminateJobFlowOperator
from fruits_airflow.paths import RunPaths, run_key
from fruits_airflow.run_failures import REFUSAL_XCOM_KEY
from fruits_airflow.s3_objects import read_object
from local_aws import EmbeddedAws
from local_aws.iam_enforcement import ADMIN
from tools.demo import DemoRun, failure_summary
from tools.local_airflow import BUCKET, REGION, local_connection
from tools.local_provision import provision

PARAMS = {"variance": 0.95, "weights": None, "reprocess_all": False}
RUN_ID = "manual__refused"


@dataclass(frozen=True)
class Refusal:
    """How a run ended before its cluster: the task's one-line message, whether RunJobFlow was called, and the
    record of the refusal: pushed to XCom, and the run's failure.json in the stack's bucket (None: none)."""

    message: str | None
    run_job_flow_calls: int
    pushed: dict[str, Any] | None = None
    failure_json: dict[str, Any] | None = None


@dataclass
class TaskInstance:
    """What ``records_refusal`` reads of Airflow's task instance; keeps what the task pushes, as Airflow does."""

    task_id: str
    dag_id: str = "fruits_pipeline"
    run_id: str = RUN_ID
    try_number: int = 1
    max_tries: int = 0  # no retry left
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = json.loads(json.dumps(value))  # XComs are JSON


@pytest.fixture(scope="module")
def stack(aws: EmbeddedAws) -> dict[str, str]:
    """The stack in the endpoint: the bucket, the roles, the network; the Variable's keys."""
    return provision(aws.client("s3"), aws.client("emr"), aws.client("ec2"), aws.client("iam"), BUCKET, REGION)


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


@pytest.fixture
def empty_bucket(aws: EmbeddedAws, stack: dict[str, str]) -> None:
    """Each test starts from a bucket with no images, as a first run does."""
    s3 = aws.client("s3")
    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])


def image(path: Path, content: bytes = b"\xff\xd8 not decoded before the cluster") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def admin_connection(endpoint_url: str) -> dict[str, Any]:
    """aws_default as the account's administrator: for buckets outside the stack, which its role may not even probe."""
    extra = {"endpoint_url": endpoint_url, "region_name": REGION}
    return {"conn_type": "aws", "login": ADMIN.access_key_id, "password": ADMIN.secret_access_key, "extra": extra}


def run_until_cluster(
    aws: EmbeddedAws,
    monkeypatch: pytest.MonkeyPatch,
    variable: dict[str, Any],
    params: dict[str, Any] = PARAMS,
    connection: dict[str, Any] | None = None,
) -> Refusal:
    """The DAG's tasks up to ``create_cluster``, in its order; the first refusal ends the run, as in the DAG."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection or local_connection(aws.endpoint_url)))
    monkeypatch.setenv("AIRFLOW_VAR_FRUITS_PIPELINE", json.dumps(variable))
    aws.requests.clear()
    message = None
    tis = {name: TaskInstance(name) for name in ("check_config", "upload_new_images", "find_reusable_run")}
    tis |= {name: TaskInstance(name) for name in ("stage_artifacts", "check_security_configuration", "plan_run")}
    tis["create_cluster"] = TaskInstance("create_cluster")
    try:
        config = tasks.check_config.function(params=params, ti=tis["check_config"])
        uploaded = tasks.upload_new_images.function(config, ti=tis["upload_new_images"])
        tasks.find_reusable_run.function(config, uploaded, run_id=RUN_ID, params=params, ti=tis["find_reusable_run"])
        staged = tasks.stage_artifacts.function(config, ti=tis["stage_artifacts"])
        tasks.check_security_configuration.function(config, ti=tis["check_security_configuration"])
        dag = SimpleNamespace(dag_id="fruits_pipeline")
        plan = tasks.plan_run.function(config, staged, run_id=RUN_ID, dag=dag, params=params, ti=tis["plan_run"])
        aws_args = {"aws_conn_id": AWS_CONN_ID, "region_name": REGION}
        cluster_id = EmrCreateJobFlowOperator(
            task_id="create_cluster",
            job_flow_overrides=plan["job_flow_overrides"],
            emr_conn_id=None,
            config=config,
            **aws_args,
        ).execute({"ti": tis["create_cluster"], "dag": dag, "run_id": RUN_ID})
        EmrTerminateJobFlowOperator(task_id="terminate_cluster", job_flow_id=cluster_id, **aws_args).execute({})
    except AirflowFailException as refused:
        message = str(refused)
    calls = sum(1 for request in aws.requests if request.operation == "RunJobFlow")
    pushed = [ti.pushed[REFUSAL_XCOM_KEY] for ti in tis.values() if REFUSAL_XCOM_KEY in ti.pushed]
    recorded = read_object(aws.client("s3"), BUCKET, RunPaths(BUCKET, run_key(RUN_ID)).failure_key)
    return Refusal(message, calls, pushed[0] if pushed else None, json.loads(recorded) if recorded else None)


def assert_refused(refusal: Refusal, *fragments: str) -> None:
    assert refusal.message is not None, "the run went on to create its cluster"
    assert len(refusal.message.splitlines()) == 1, refusal.message
    for fragment in fragments:
        assert fragment in refusal.message
    assert refusal.run_job_flow_calls == 0


@pytest.mark.parametrize(
    ("files", "what"),
    [
        ([], "empty"),
        ([".DS_Store", "Kiwi/.0_100.jpg", "_Kiwi/0_100.jpg"], "only hidden files"),
        (["Kiwi/notes.txt", "Kiwi/0_100.gif", "0_100.jpg"], "no image in a label folder"),
    ],
)
def test_a_landing_folder_without_images_is_refused_on_a_first_run(
    aws, stack, empty_bucket, landing, monkeypatch, files, what
):
    for name in files:
        image(landing / name)

    refusal = run_until_cluster(aws, monkeypatch, {**stack, "images_dir": str(landing), "weights": "none"})

    assert_refused(refusal, f"images_dir {landing} holds no image to upload", "<label>/<file>")
    assert aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="images/")["KeyCount"] == 0


def test_fewer_images_in_the_bucket_than_the_pca_needs_is_refused_after_the_upload(
    aws, stack, empty_bucket, landing, monkeypatch
):
    image(landing / "Kiwi" / "0_100.jpg")

    refusal = run_until_cluster(aws, monkeypatch, {**stack, "images_dir": str(landing), "weights": "none"})

    assert_refused(refusal, f"s3://{BUCKET}/images/ holds 1 image(s); the PCA needs at least 2", str(landing))


def test_a_landing_folder_that_cannot_be_read_is_refused(aws, stack, empty_bucket, landing, monkeypatch):
    image(landing / "Kiwi" / "0_100.jpg")
    (landing / "Lemon").symlink_to(landing / "Lemon")  # a loop: reading it fails, whoever reads it (root too)

    refusal = run_until_cluster(aws, monkeypatch, {**stack, "images_dir": str(landing), "weights": "none"})

    assert_refused(refusal, f"images_dir {landing} cannot be read", "Lemon", "Nothing was uploaded")
    assert aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="images/")["KeyCount"] == 0


@pytest.fixture
def two_images_in_s3(aws, stack, empty_bucket) -> None:
    """Enough images for a PCA, already in the bucket; no landing folder."""
    for name in ("Kiwi/0_100.jpg", "Lemon/0_100.jpg"):
        aws.client("s3").put_object(Bucket=BUCKET, Key=f"images/{name}", Body=b"fruit")


@pytest.mark.parametrize(
    ("key", "body", "fragment"),
    [
        ("artifacts/weights/missing.h5", None, "does not exist: upload it there, or pass 'imagenet' or 'none'"),
        ("artifacts/weights/empty.h5", b"", "is empty (0 bytes)"),
        ("images/weights.h5", b"weights", f"is outside s3://{BUCKET}/artifacts/, the only prefix"),
    ],
)
def test_a_weights_file_the_nodes_cannot_use_is_refused(aws, stack, two_images_in_s3, monkeypatch, key, body, fragment):
    if body is not None:
        aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    weights = f"s3://{BUCKET}/{key}"

    refusal = run_until_cluster(aws, monkeypatch, stack, {**PARAMS, "weights": weights})

    assert_refused(refusal, f"Weights file {weights} {fragment}")


def test_a_weights_file_in_another_bucket_is_refused(aws, stack, two_images_in_s3, monkeypatch):
    refusal = run_until_cluster(aws, monkeypatch, {**stack, "weights": "s3://elsewhere/artifacts/w.h5"})

    assert_refused(refusal, "Weights file s3://elsewhere/artifacts/w.h5 is outside s3://fruits-demo/artifacts/")


@pytest.mark.parametrize("variance", [0, -0.5, 1.5, "0.9", True])
def test_a_variance_outside_zero_to_one_is_refused(aws, stack, two_images_in_s3, monkeypatch, variance):
    refusal = run_until_cluster(aws, monkeypatch, stack, {**PARAMS, "variance": variance})

    assert_refused(refusal, f"Run parameter 'variance' is {variance!r}, outside (0, 1]")


def test_a_bucket_that_does_not_exist_is_refused(aws, stack, monkeypatch):
    # As the stack's role, granted nothing on that bucket: S3 says NoSuchBucket to anyone, not AccessDenied.
    variable = {**stack, "bucket": "no-such-fruits-bucket"}

    refusal = run_until_cluster(aws, monkeypatch, variable)

    assert_refused(refusal, "key 'bucket' names s3://no-such-fruits-bucket, which does not exist", "output Bucket")


def test_a_bucket_outside_the_eu_is_refused(aws, stack, empty_bucket, monkeypatch):
    ohio = boto3.client("s3", endpoint_url=aws.endpoint_url, region_name="us-east-2", **ADMIN.keys)
    ohio.create_bucket(Bucket="fruits-in-ohio", CreateBucketConfiguration={"LocationConstraint": "us-east-2"})

    refusal = run_until_cluster(
        aws, monkeypatch, {**stack, "bucket": "fruits-in-ohio"}, connection=admin_connection(aws.endpoint_url)
    )

    assert_refused(refusal, "is 'us-east-2', which is outside the EU")
    assert refusal.pushed is not None
    assert (refusal.pushed["summary"], refusal.failure_json) == (refusal.message, None)  # no record outside the EU


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("core_count", "2", "must be an integer"),
        ("max_removal_share", "0.5", "must be a number in (0, 1]"),
        ("images_dir", ["/data"], "must be a non-empty string"),
        ("weights", 1, "must be a non-empty string"),
    ],
)
def test_a_variable_key_of_the_wrong_type_is_refused(aws, stack, empty_bucket, monkeypatch, key, value, problem):
    refusal = run_until_cluster(aws, monkeypatch, {**stack, key: value})

    assert_refused(refusal, f"key '{key}' {problem}")
    assert refusal.pushed is not None
    assert (refusal.pushed["summary"], refusal.failure_json) == (refusal.message, None)  # no bucket read yet


def demo_says(refusal: Refusal) -> list[str]:
    """What ``make demo`` prints for the run, from the record it reads (failure.json, else the XCom)."""
    run = DemoRun("failed", RUN_ID, Path("airflow-dags-test.log"), {}, failure=refusal.failure_json or refusal.pushed)
    return failure_summary(run).splitlines()


def test_a_cluster_that_aws_refuses_is_recorded_as_create_cluster_s_refusal(aws, stack, two_images_in_s3, monkeypatch):
    """A role the stack's policy may not pass (a Variable's typo): RunJobFlow is denied, no cluster exists, and
    AWS's line is the run's record, since report_failure has no cluster to report on."""
    variable = {**stack, "weights": "none", "service_role": "EMR_DefaultRole_Of_Another_Team"}

    refusal = run_until_cluster(aws, monkeypatch, variable)

    assert refusal.message is not None
    assert len(refusal.message.splitlines()) == 1
    assert "iam:PassRole" in refusal.message
    assert refusal.run_job_flow_calls == 1
    assert not aws.client("emr").list_clusters(ClusterStates=["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"])[
        "Clusters"
    ]
    assert refusal.pushed is not None
    assert refusal.pushed["refused_by"] == "create_cluster"
    assert refusal.pushed["summary"] == f"create_cluster: AWS started no cluster: {refusal.message}"
    assert refusal.failure_json == refusal.pushed
    assert demo_says(refusal)[0] == f"demo: error: {refusal.pushed['summary']}"
    assert "refused by create_cluster before any cluster: nothing was spent" in demo_says(refusal)[2]


@pytest.mark.parametrize(
    ("task_id", "landing_files", "params"),
    [
        ("upload_new_images", [], PARAMS),
        ("find_reusable_run", ["Kiwi/0_100.jpg"], PARAMS),
        ("check_config", ["Kiwi/0_100.jpg", "Lemon/0_100.jpg"], {**PARAMS, "variance": 1.5}),
    ],
)
def test_a_refusal_once_the_bucket_is_checked_is_the_first_line_of_the_run_s_record_and_of_the_demo(
    aws, stack, empty_bucket, landing, monkeypatch, task_id, landing_files, params
):
    for name in landing_files:
        image(landing / name)

    refusal = run_until_cluster(aws, monkeypatch, {**stack, "images_dir": str(landing), "weights": "none"}, params)

    assert_refused(refusal)
    assert refusal.failure_json == refusal.pushed
    assert refusal.pushed is not None
    assert (refusal.pushed["summary"], refusal.pushed["cause"]) == (refusal.message, "refused")
    assert (refusal.pushed["refused_by"], refusal.pushed["run_id"]) == (task_id, RUN_ID)
    assert refusal.pushed["cost"]["usd"] == 0
    assert demo_says(refusal)[0] == f"demo: error: {refusal.message}"
    assert f"refused by {task_id} before any cluster" in "\n".join(demo_says(refusal))


def test_a_missing_bucket_s_refusal_is_recorded_in_xcom_alone_and_is_the_demo_s_first_line(
    aws, stack, empty_bucket, monkeypatch
):
    refusal = run_until_cluster(aws, monkeypatch, {**stack, "bucket": "no-such-fruits-bucket"})

    assert_refused(refusal, "names s3://no-such-fruits-bucket, which does not exist")
    assert refusal.failure_json is None
    assert refusal.pushed is not None
    assert (refusal.pushed["summary"], refusal.pushed["refused_by"]) == (refusal.message, "check_config")
    assert demo_says(refusal)[0] == f"demo: error: {refusal.message}"
