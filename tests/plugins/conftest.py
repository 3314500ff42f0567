"""Fixtures of the plugin tests: moto's in-process AWS in eu-west-1 with a run's cluster, a throwaway Airflow home."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.emr import models as emr_models
from moto.emr.models import emr_backends

from fruits_airflow.artifacts import StagedArtifacts

REGION = "eu-west-1"
BUCKET = "fruits-test-bucket"
# The network keys every Variable holds (the stack's outputs SubnetId and its two security groups).
NETWORK = {
    "subnet_id": "subnet-0123456789abcdef0",
    "emr_managed_master_security_group": "sg-0aaaaaaaaaaaaaaa1",
    "emr_managed_slave_security_group": "sg-0bbbbbbbbbbbbbbb2",
}


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch):
    """moto accepts any credentials; these make sure no real ones are ever used."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture
def aws():
    with mock_aws():
        yield


@pytest.fixture
def s3(aws):
    """An S3 client with the pipeline's bucket, in the EU."""
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return client


@pytest.fixture
def bucket(s3):
    """The name of the pipeline's bucket, created in ``s3``."""
    return BUCKET


@pytest.fixture(scope="session")
def network() -> dict[str, str]:
    """The Variable's network keys, shaped like EC2's ids."""
    return dict(NETWORK)


@pytest.fixture
def variable(network) -> dict[str, str]:
    """The smallest Variable: the bucket and the network, everything else defaults."""
    return {"bucket": BUCKET, **network}


@pytest.fixture
def provisioned_variable(s3) -> dict[str, str]:
    """The Variable of the stack, provisioned in moto as in the embedded endpoint: its network really exists."""
    from tools.local_provision import provision

    clients = (boto3.client(service, region_name=REGION) for service in ("emr", "ec2", "iam"))
    return provision(s3, *clients, BUCKET, REGION)


@pytest.fixture
def emr(aws):
    return boto3.client("emr", region_name=REGION)


def _enum_violations(shape, value, path: str) -> list[str]:
    """Values outside the enums of the botocore model, which botocore's own validation lets through."""
    if shape.type_name == "structure" and isinstance(value, dict):
        return [
            violation
            for name, member in value.items()
            if name in shape.members
            for violation in _enum_violations(shape.members[name], member, f"{path}.{name}")
        ]
    if shape.type_name == "list" and isinstance(value, list):
        return [v for index, item in enumerate(value) for v in _enum_violations(shape.member, item, f"{path}[{index}]")]
    if shape.type_name == "map" and isinstance(value, dict):
        return [v for key, item in value.items() for v in _enum_violations(shape.value, item, f"{path}[{key}]")]
    if shape.type_name == "string" and shape.enum and value not in shape.enum:
        return [f"{path}={value!r} is not one of {shape.enum}"]
    return []


@pytest.fixture
def assert_emr_enums():
    """Check a request against the enums of the EMR API model (e.g. ActionOnFailure, Market)."""
    model = boto3.client("emr", region_name=REGION).meta.service_model

    def check(operation: str, params: dict) -> None:
        violations = _enum_violations(model.operation_model(operation).input_shape, params, operation)
        assert not violations, violations

    return check


@pytest.fixture
def staged_artifacts() -> StagedArtifacts:
    """A staged version of the jobs, as stage_artifacts returns it."""
    prefix = f"s3://{BUCKET}/artifacts/abc123def456/"
    return StagedArtifacts(
        version="abc123def456",
        prefix_uri=prefix,
        py_files_uri=f"{prefix}fruits_spark.zip",
        scripts={"extract_features.py": f"{prefix}extract_features.py", "pca.py": f"{prefix}pca.py"},
        bootstrap_script_uri=f"{prefix}bootstrap/install_python_deps.sh",
        bootstrap_requirements_uri=f"{prefix}bootstrap/requirements.txt",
        bootstrap_primary_requirements_uri=f"{prefix}bootstrap/requirements-primary.txt",
        bootstrap_installer_requirements_uri=f"{prefix}bootstrap/requirements-installer.txt",
        wheelhouse_uris={
            "x86_64": f"s3://{BUCKET}/artifacts/wheelhouse/0123456789abcdef/",
            "aarch64": f"s3://{BUCKET}/artifacts/wheelhouse/fedcba9876543210/",
        },
    )


@pytest.fixture
def emr_hook(aws):
    """The hook EmrCreateJobFlowOperator and EmrAddStepsOperator send their requests through."""
    from airflow.providers.amazon.aws.hooks.emr import EmrHook

    return EmrHook(aws_conn_id=None, region_name=REGION, emr_conn_id=None)


def _status_with(status: property, extra: Callable[[Any, dict[str, Any]], None]) -> property:
    def patched(model: Any) -> dict[str, Any]:
        result = status.fget(model)
        extra(model, result)
        return result

    return property(patched)


def _add_reason_code(cluster: Any, status: dict[str, Any]) -> None:
    if code := getattr(cluster, "state_change_code", None):
        status["StateChangeReason"]["Code"] = code


def _add_failure_details(step: Any, status: dict[str, Any]) -> None:
    if details := getattr(step, "failure_details", None):
        status["FailureDetails"] = details


@dataclass(frozen=True)
class EmrRun:
    """A run's cluster and its two steps in moto's EMR, moved by the test through the states EMR uses."""

    emr: BaseClient
    cluster_id: str
    step_ids: list[str]
    log_uri: str

    @property
    def cluster(self) -> Any:
        return emr_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[self.cluster_id]

    def end_cluster(self, state: str, code: str, message: str, *, steps: str | None = "CANCELLED") -> None:
        """End the cluster with EMR's StateChangeReason; its unfinished steps become ``steps`` unless None."""
        cluster = self.cluster
        cluster.state, cluster.state_change_code, cluster.last_state_change_reason = state, code, message
        for step in cluster.steps:
            if steps and step.state != "COMPLETED":
                step.state = steps

    def set_step(self, index: int, state: str, failure: dict[str, str] | None = None) -> None:
        step = self.cluster.steps[index]
        step.state, step.failure_details = state, failure


@pytest.fixture
def emr_run(emr, bucket, monkeypatch) -> EmrRun:
    """A cluster running extract_features with pca pending, logging to s3://BUCKET/logs/.

    Moto keeps the state of clusters and steps but has no reason code nor FailureDetails in its
    answers; the patched models add them as EMR does.
    """
    monkeypatch.setattr(emr_models.Cluster, "status", _status_with(emr_models.Cluster.status, _add_reason_code))
    monkeypatch.setattr(emr_models.Step, "status", _status_with(emr_models.Step.status, _add_failure_details))
    log_uri = f"s3n://{bucket}/logs/"
    cluster_id = emr.run_job_flow(
        Name="fruits_pipeline test",
        ReleaseLabel="emr-7.13.0",
        LogUri=log_uri,
        Instances={
            "InstanceGroups": [
                {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1, "Market": "ON_DEMAND"}
            ],
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        JobFlowRole="fruits-pipeline-emr-instance-profile",
        ServiceRole="fruits-pipeline-emr-service-role",
    )["JobFlowId"]
    step = {"ActionOnFailure": "CANCEL_AND_WAIT", "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["true"]}}
    step_ids = emr.add_job_flow_steps(
        JobFlowId=cluster_id, Steps=[{"Name": name, **step} for name in ("extract_features", "pca")]
    )["StepIds"]
    return EmrRun(emr, cluster_id, step_ids, log_uri)
