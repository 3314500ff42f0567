"""Fixtures of the plugin tests: moto's in-process AWS in eu-west-1, and a throwaway Airflow home."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from fruits_airflow.artifacts import StagedArtifacts

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
BUCKET = "fruits-test-bucket"
# The network keys every Variable holds (the stack's outputs SubnetId and its two security groups).
NETWORK = {
    "subnet_id": "subnet-0123456789abcdef0",
    "emr_managed_master_security_group": "sg-0aaaaaaaaaaaaaaa1",
    "emr_managed_slave_security_group": "sg-0bbbbbbbbbbbbbbb2",
}

# Before anything imports Airflow (fruits_airflow.tasks and .sensors do).
os.environ.update(
    {
        "AIRFLOW_HOME": tempfile.mkdtemp(prefix="airflow-home-"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
    }
)


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

    clients = (boto3.client(service, region_name=REGION) for service in ("emr", "ec2"))
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
    )


@pytest.fixture
def emr_hook(aws):
    """The hook EmrCreateJobFlowOperator and EmrAddStepsOperator send their requests through."""
    from airflow.providers.amazon.aws.hooks.emr import EmrHook

    return EmrHook(aws_conn_id=None, region_name=REGION, emr_conn_id=None)


@pytest.fixture
def stubbed_emr():
    """An EMR client whose answers the test scripts: moto cannot fail a step with FailureDetails."""
    client = boto3.client("emr", region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()
