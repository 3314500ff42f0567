"""The DAG's own EMR operators send the plan_run task's output to EMR (moto), and EMR accepts it.

botocore validates every request against the EMR API model before moto sees it, so an unknown or
mistyped field in the cluster request or the steps fails here.
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace
from unittest.mock import MagicMock

import boto3
import pytest
from botocore.exceptions import ParamValidationError
from moto import mock_aws

from fruits_airflow.model_check import IMAGENET_WEIGHTS_PREFIX, imagenet_weights_name

REGION = "eu-west-1"
BUCKET = "fruits-dag-test"
RUN_ID = "manual__2025-03-01T10:15:30.123456+00:00"


@pytest.fixture
def emr(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "extra": {"region_name": REGION}}))
    with mock_aws():
        yield boto3.client("emr", region_name=REGION)


def xcom_source(value) -> tuple[str, str]:
    return value.operator.task_id, value.key


@pytest.fixture
def variable(emr) -> dict:
    """The stack's Variable, provisioned in moto as for the embedded endpoint: its subnet and groups exist."""
    from tools.local_provision import provision

    s3, ec2, iam = (boto3.client(service, region_name=REGION) for service in ("s3", "ec2", "iam"))
    return provision(s3, emr, ec2, iam, BUCKET, REGION)


@pytest.fixture
def plan(dag, variable):
    """What plan_run returns for a default run (ImageNet's weights, not compiled yet, Keras's file in the
    bucket as `make publish-imagenet-weights` puts it), computed by the DAG's own task callable."""
    keras_file = f"{IMAGENET_WEIGHTS_PREFIX}{imagenet_weights_name()}"
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=keras_file, Body=b"h5")
    staged = {
        "version": "0123456789ab",
        "prefix_uri": f"s3://{BUCKET}/artifacts/0123456789ab/",
        "py_files_uri": f"s3://{BUCKET}/artifacts/0123456789ab/fruits_spark.zip",
        "scripts": {
            "extract_features.py": f"s3://{BUCKET}/artifacts/0123456789ab/extract_features.py",
            "pca.py": f"s3://{BUCKET}/artifacts/0123456789ab/pca.py",
        },
        "bootstrap_script_uri": f"s3://{BUCKET}/artifacts/0123456789ab/bootstrap/install_python_deps.sh",
        "bootstrap_requirements_uri": f"s3://{BUCKET}/artifacts/0123456789ab/bootstrap/requirements.txt",
        "bootstrap_primary_requirements_uri": (
            f"s3://{BUCKET}/artifacts/0123456789ab/bootstrap/requirements-primary.txt"
        ),
        "bootstrap_installer_requirements_uri": (
            f"s3://{BUCKET}/artifacts/0123456789ab/bootstrap/requirements-installer.txt"
        ),
        "wheelhouse_uris": {"x86_64": f"s3://{BUCKET}/artifacts/wheelhouse/0123456789abcdef/"},
    }
    params = {key: dag.params[key] for key in dag.params}
    plan_run = dag.get_task("plan_run").python_callable
    return plan_run(variable, staged, run_id=RUN_ID, dag=SimpleNamespace(dag_id=dag.dag_id), params=params)


def rendered(dag, task_id: str, **fields):
    """A copy of the DAG's operator with its templated fields set as Airflow renders them."""
    task = copy.deepcopy(dag.get_task(task_id))
    for name, value in {"region_name": REGION, **fields}.items():
        setattr(task, name, value)
    return task


def test_the_operators_take_their_requests_from_plan_run(dag):
    assert xcom_source(dag.get_task("create_cluster").job_flow_overrides) == ("plan_run", "job_flow_overrides")
    assert xcom_source(dag.get_task("add_steps").steps) == ("plan_run", "steps")
    assert xcom_source(dag.get_task("add_steps").job_flow_id) == ("create_cluster", "return_value")
    assert xcom_source(dag.get_task("watch_steps").step_ids) == ("add_steps", "return_value")
    assert xcom_source(dag.get_task("wait_for_output").bucket_key) == ("plan_run", "pca_success_key")
    for task_id in ("create_cluster", "add_steps", "watch_steps", "wait_for_output", "terminate_cluster"):
        assert xcom_source(dag.get_task(task_id).region_name) == ("plan_run", "region"), task_id


def test_the_plan_survives_xcom(plan):
    assert json.loads(json.dumps(plan)) == plan


def test_emr_accepts_the_cluster_the_steps_and_the_termination(dag, plan, variable, emr):
    context = {"ti": MagicMock(), "run_id": RUN_ID, "dag": SimpleNamespace(dag_id=dag.dag_id)}

    cluster_id = rendered(dag, "create_cluster", job_flow_overrides=plan["job_flow_overrides"]).execute(context)
    step_ids = rendered(dag, "add_steps", job_flow_id=cluster_id, steps=plan["steps"]).execute(context)
    rendered(dag, "terminate_cluster", job_flow_id=cluster_id).execute(context)

    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["Ec2InstanceAttributes"]["Ec2SubnetId"] == variable["subnet_id"]
    assert cluster["Name"].startswith("fruits_pipeline manual__2025-03-01T10_15_30.123456_00_00-")
    assert cluster["Status"]["State"] in {"TERMINATING", "TERMINATED"}
    assert [step["Name"] for step in emr.list_steps(ClusterId=cluster_id, StepIds=step_ids)["Steps"]] == [
        "pca",
        "extract_features",
    ]
    assert plan["pca_success_key"].startswith("runs/manual__2025-03-01T10_15_30.123456_00_00-")


def test_an_invalid_field_in_the_plan_makes_create_cluster_fail(dag, plan, emr):
    plan["job_flow_overrides"]["Instances"]["KeepAliveForever"] = True
    create_cluster = rendered(dag, "create_cluster", job_flow_overrides=plan["job_flow_overrides"])

    with pytest.raises(ParamValidationError, match="KeepAliveForever"):
        create_cluster.execute({"ti": MagicMock(), "run_id": RUN_ID, "dag": SimpleNamespace(dag_id=dag.dag_id)})
