"""The DAG's default cluster request is one the stack's policies let Airflow and EMR carry out."""

from __future__ import annotations

import pytest

from fruits_airflow.artifacts import StagedArtifacts
from fruits_airflow.cluster import job_flow_overrides
from fruits_airflow.config import parse_config
from fruits_airflow.paths import RunPaths

RUN_ID = "scheduled__2026-11-21T00:00:00+00:00"


@pytest.fixture(scope="module")
def request_(bucket) -> dict:
    """The RunJobFlow request of a run whose Variable holds only the bucket and the network."""
    prefix = f"s3://{bucket}/artifacts/0123456789ab/"
    staged = StagedArtifacts(
        version="0123456789ab",
        prefix_uri=prefix,
        py_files_uri=f"{prefix}fruits_spark.zip",
        scripts={"extract_features.py": f"{prefix}extract_features.py", "pca.py": f"{prefix}pca.py"},
        bootstrap_script_uri=f"{prefix}bootstrap/install_python_deps.sh",
        bootstrap_requirements_uri=f"{prefix}bootstrap/requirements.txt",
        bootstrap_primary_requirements_uri=f"{prefix}bootstrap/requirements-primary.txt",
        bootstrap_installer_requirements_uri=f"{prefix}bootstrap/requirements-installer.txt",
        wheelhouse_uris={"x86_64": f"s3://{bucket}/artifacts/wheelhouse/0123456789abcdef/"},
    )
    network = {"emr_managed_master_security_group": "sg-0a1", "emr_managed_slave_security_group": "sg-0b2"}
    config = parse_config({"bucket": bucket, "subnet_id": "subnet-0abc", **network})
    paths = RunPaths.for_run(bucket, RUN_ID, reprocess_all=False, weights="imagenet")
    return job_flow_overrides(config, paths, staged, dag_id="fruits_pipeline", run_id=RUN_ID)


def statement(document: dict, sid: str) -> dict:
    (found,) = [item for item in document["Statement"] if item.get("Sid") == sid]
    return found


def test_the_request_carries_the_tag_airflow_needs_to_start_a_cluster(policies, request_):
    condition = statement(policies["AirflowPolicy"].document, "StartClustersTaggedForTheServiceRole")["Condition"]
    tags = {tag["Key"]: tag["Value"] for tag in request_["Tags"]}

    for key, value in condition["StringEquals"].items():
        assert tags[key.removeprefix("aws:RequestTag/")] == value


def test_airflow_passes_exactly_the_two_roles_of_the_request(policies, arn, resources, request_):
    passed = {
        item["Resource"]: item["Condition"]["StringLike"]["iam:PassedToService"]
        for item in policies["AirflowPolicy"].document["Statement"]
        if item["Action"] == "iam:PassRole"
    }

    assert passed == {
        arn("EmrServiceRole"): "elasticmapreduce.amazonaws.com*",
        arn("EmrInstanceRole"): "ec2.amazonaws.com*",
    }
    assert request_["ServiceRole"] == resources["EmrServiceRole"]["RoleName"]
    assert request_["JobFlowRole"] == resources["EmrInstanceProfile"]["InstanceProfileName"]


def test_emr_may_hand_the_instance_role_to_the_nodes(policies, allows, arn):
    assert allows(
        policies["EmrServiceRole.pass-the-instance-role-to-ec2"].document, "iam:PassRole", arn("EmrInstanceRole")
    )


def test_the_request_logs_where_the_nodes_may_write_and_uses_the_stacks_security_configuration(
    request_, resources, bucket
):
    assert request_["LogUri"] == f"s3://{bucket}/logs/"
    assert request_["SecurityConfiguration"] == resources["EmrSecurityConfiguration"]["Name"]
