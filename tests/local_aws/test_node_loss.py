"""A node lost during a step (local_aws.node_loss): EMR records its end, Spark retries its tasks, the step goes on."""

from __future__ import annotations

import gzip
import io
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fruits_airflow.artifacts import build_py_files_zip
from fruits_airflow.cost import MIN_BILLED_SECONDS, bill, cluster_nodes, load_prices
from local_aws import EmbeddedAws
from local_aws.faults import FaultPlan, FaultPlanError, ProcessFault
from local_aws.node_loss import INSTANCE_FAILURE, SPOT_RECLAIMED
from tests.suite import SPARK_JOBS_DIR
from tools.sample_images import generate

SLEEP = "import time; time.sleep(120)"
PRIMARY = {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1, "Market": "ON_DEMAND"}
CORE_ON_DEMAND = {"InstanceRole": "CORE", "InstanceType": "m5.xlarge", "InstanceCount": 1, "Market": "ON_DEMAND"}
SPOT_TASK = {"InstanceRole": "TASK", "InstanceType": "m5.xlarge", "InstanceCount": 1, "Market": "SPOT"}
SPOT_CORE = {"InstanceRole": "CORE", "InstanceType": "m5.xlarge", "InstanceCount": 2, "Market": "SPOT"}
N_IMAGES = 24


@pytest.fixture
def faults(aws: EmbeddedAws) -> Iterator[None]:
    """Whatever plan a test sets is taken off afterwards."""
    yield
    aws.faults = FaultPlan()


def instances(emr, cluster_id: str) -> list[dict]:
    return emr.list_instances(ClusterId=cluster_id)["Instances"]


def terminated(emr, cluster_id: str) -> list[dict]:
    return [i for i in instances(emr, cluster_id) if i["Status"]["State"] == "TERMINATED"]


def test_a_spot_node_is_lost_before_an_on_demand_one_and_the_cluster_runs_on(
    start_cluster, python_step, emr, aws, faults, wait_until
):
    aws.faults = FaultPlan(lose_node=ProcessFault(step="sleeper", after_seconds=0.5))
    cluster = start_cluster([python_step("sleeper", SLEEP)], instance_groups=[PRIMARY, CORE_ON_DEMAND, SPOT_TASK])

    (lost,) = wait_until(lambda: terminated(emr, cluster.id), what="a node to be lost")

    assert lost["Market"] == "SPOT"
    assert lost["Status"]["StateChangeReason"] == {"Code": INSTANCE_FAILURE, "Message": SPOT_RECLAIMED}
    assert lost["Status"]["Timeline"]["EndDateTime"]
    assert cluster.status()["State"] == "RUNNING"
    assert cluster.step_states() == ["RUNNING"]
    assert aws.injected[-1].kind == "node lost"
    emr.terminate_job_flows(JobFlowIds=[cluster.id])
    cluster.wait_for_state("TERMINATED")
    ends = {i["Id"]: i["Status"]["Timeline"]["EndDateTime"] for i in instances(emr, cluster.id)}
    assert ends[lost["Id"]] == min(ends.values()) < max(ends.values())


def test_a_cluster_of_its_primary_node_alone_loses_nothing(
    start_cluster, python_step, emr, aws, faults, wait_until, caplog
):
    aws.faults = FaultPlan(lose_node=ProcessFault(step="sleeper", after_seconds=0.2))
    before = len(aws.injected)
    cluster = start_cluster([python_step("sleeper", SLEEP)])

    wait_until(lambda: "has no core or task node left to lose" in caplog.text, what="the fault's strike")

    assert f"fault not injected: {cluster.id}" in caplog.text
    assert len(aws.injected) == before  # not counted: a chaos run says "fault not injected"
    assert not terminated(emr, cluster.id)
    emr.terminate_job_flows(JobFlowIds=[cluster.id])


def test_the_plan_reads_lose_node_like_the_other_step_faults():
    text = '{"seed": 2, "lose_node": {"step": "extract_features", "at": "GET /b/images/", "after_requests": 3}}'

    plan = FaultPlan.from_json(text)

    assert plan.lose_node == ProcessFault(step="extract_features", at="GET /b/images/", after_requests=3)
    assert FaultPlan.from_json(plan.to_json()) == plan
    with pytest.raises(FaultPlanError, match="Fault plan key 'lose_node' names no step"):
        FaultPlan.from_json('{"lose_node": {"after_seconds": 3}}')


@pytest.fixture
def staged_job(s3, bucket: str, tmp_path: Path) -> list[str]:
    """extract_features' entry script and package in S3, as the DAG stages them; its images under images/."""
    shutil.copy(SPARK_JOBS_DIR / "extract_features.py", tmp_path / "extract_features.py")
    s3.upload_file(str(tmp_path / "extract_features.py"), bucket, "code/extract_features.py")
    s3.upload_file(str(build_py_files_zip(tmp_path / "fruits_spark.zip")), bucket, "code/fruits_spark.zip")
    for path in generate(tmp_path / "images", N_IMAGES, n_labels=3, seed=27):
        s3.upload_file(str(path), bucket, f"images/{path.parent.name}/{path.name}")
    return [
        *(
            "spark-submit",
            "--py-files",
            f"s3://{bucket}/code/fruits_spark.zip",
            f"s3://{bucket}/code/extract_features.py",
        ),
        *("--images", f"s3://{bucket}/images/", "--features", f"s3://{bucket}/features/"),
        *("--rejects", f"s3://{bucket}/rejects/", "--weights", "none", "--image-size", "96"),
    ]


def feature_paths(s3, bucket: str) -> Counter[str]:
    rows: Counter[str] = Counter()
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix="features/").get("Contents", []):
        name = obj["Key"].removeprefix("features/")
        if name.endswith(".parquet") and not name.startswith(("_", ".")):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            paths = pq.read_table(io.BytesIO(body), columns=["path"]).column("path").to_pylist()
            rows.update(path.replace("s3a://", "s3://", 1) for path in paths)
    return rows


@pytest.mark.spark
def test_extract_features_survives_a_spot_node_lost_mid_way_with_each_image_once_and_a_shorter_bill(
    start_cluster, staged_job, emr, s3, bucket, aws, faults
):
    # The 8th of the executors' 24 image fetches: both tasks are fetching, and both lose their Python worker.
    lose = ProcessFault(step="extract_features", at=f"GET /{bucket}/images/", after_requests=8)
    aws.faults = FaultPlan(seed=27, lose_node=lose)
    before = len(aws.injected)
    step = {"Name": "extract_features", "ActionOnFailure": "CONTINUE"}
    step["HadoopJarStep"] = {"Jar": "command-runner.jar", "Args": staged_job}
    cluster = start_cluster([step], instance_groups=[PRIMARY, SPOT_CORE])

    (done,) = cluster.wait_for_steps(timeout=600)

    stderr_key = f"logs/{cluster.id}/steps/{done['Id']}/stderr.gz"
    stderr = gzip.decompress(s3.get_object(Bucket=bucket, Key=stderr_key)["Body"].read()).decode()
    assert done["Status"]["State"] == "COMPLETED", stderr[-3000:]
    assert "Lost task" in stderr  # Spark saw the tasks fail, and ran them again
    (fault,) = aws.injected[before:]
    assert "SPOT CORE" in fault.detail
    assert " 0 PySpark" not in fault.detail
    images = {f"s3://{bucket}/{obj['Key']}" for obj in s3.list_objects_v2(Bucket=bucket, Prefix="images/")["Contents"]}
    rows = feature_paths(s3, bucket)
    assert set(rows) == images  # no image lost
    assert set(rows.values()) == {1}  # none twice
    (lost,) = terminated(emr, cluster.id)
    assert lost["Status"]["StateChangeReason"]["Message"] == SPOT_RECLAIMED
    # The survivors run a minute beyond the loss, so that the bill's one-minute minimum cannot hide it.
    since_loss = datetime.now(UTC) - lost["Status"]["Timeline"]["EndDateTime"]
    time.sleep(max(0.0, MIN_BILLED_SECONDS + 1 - since_loss.total_seconds()))
    emr.terminate_job_flows(JobFlowIds=[cluster.id])
    cluster.wait_for_state("TERMINATED")
    nodes, now, prices = cluster_nodes(emr, cluster.id), datetime.now(UTC), load_prices()
    lost_node, survivor = sorted((n for n in nodes if n.market == "SPOT"), key=lambda n: n.billed_seconds(now))
    assert lost_node.billed_seconds(now) < survivor.billed_seconds(now)
    kept_to_the_end = [replace(n, ended=survivor.ended) if n is lost_node else n for n in nodes]
    billed = bill(nodes, prices, aws.region, now=now)
    assert billed["node_hours"] < bill(kept_to_the_end, prices, aws.region, now=now)["node_hours"]
