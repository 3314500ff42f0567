"""tools.local_provision gives the embedded endpoint what the stack gives AWS, and refuses what the stack refuses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest

from fruits_airflow.cluster import EMR_MANAGED_POLICIES_TAG, check_security_configuration
from fruits_airflow.config import DEFAULT_SECURITY_CONFIGURATION, parse_config
from tests.suite import REPO_ROOT
from tools.local_provision import LOCAL_ACCOUNT_ID, provision
from tools.stack_template import StackContext, load_template


@pytest.fixture
def new_bucket() -> str:
    return f"fruits-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def ec2(aws):
    return aws.client("ec2")


@pytest.fixture(scope="module")
def iam(aws):
    return aws.client("iam")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The command line, with the PYTHONPATH that the Makefile and the Docker image set."""
    python_path = os.pathsep.join([str(REPO_ROOT / "spark_jobs"), str(REPO_ROOT / "plugins"), str(REPO_ROOT)])
    return subprocess.run(
        [sys.executable, "-m", "tools.local_provision", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": python_path},
        timeout=120,
        check=False,
    )


def test_the_bucket_is_created_in_the_region(aws, s3, emr, ec2, iam, new_bucket):
    provision(s3, emr, ec2, iam, new_bucket, aws.region)

    assert s3.get_bucket_location(Bucket=new_bucket)["LocationConstraint"] == aws.region


def test_the_bucket_is_versioned_as_the_stacks_so_a_removed_image_can_be_restored(aws, s3, emr, ec2, iam, new_bucket):
    provision(s3, emr, ec2, iam, new_bucket, aws.region)
    s3.put_object(Bucket=new_bucket, Key="images/Kiwi/a.jpg", Body=b"kiwi")
    s3.delete_object(Bucket=new_bucket, Key="images/Kiwi/a.jpg")

    (kept,) = s3.list_object_versions(Bucket=new_bucket, Prefix="images/")["Versions"]
    restored = s3.get_object(Bucket=new_bucket, Key="images/Kiwi/a.jpg", VersionId=kept["VersionId"])

    assert s3.get_bucket_versioning(Bucket=new_bucket)["Status"] == "Enabled"
    assert restored["Body"].read() == b"kiwi"


def test_the_security_configuration_is_the_stacks_and_passes_the_dags_check(aws, s3, emr, ec2, iam, new_bucket):
    provision(s3, emr, ec2, iam, new_bucket, aws.region)

    stored = json.loads(
        emr.describe_security_configuration(Name=DEFAULT_SECURITY_CONFIGURATION)["SecurityConfiguration"]
    )
    template = load_template()
    context = StackContext({"BucketName": new_bucket}, region=aws.region, account_id=LOCAL_ACCOUNT_ID)
    stack = context.resolve(template, template["Resources"]["EmrSecurityConfiguration"]["Properties"])
    assert stored == stack["SecurityConfiguration"]
    assert check_security_configuration(emr, DEFAULT_SECURITY_CONFIGURATION) == DEFAULT_SECURITY_CONFIGURATION


def test_the_variable_is_the_stacks_outputs_with_a_network_tagged_for_emr(aws, s3, emr, ec2, iam, new_bucket):
    variable = parse_config(provision(s3, emr, ec2, iam, new_bucket, aws.region))

    (subnet,) = ec2.describe_subnets(SubnetIds=[variable.subnet_id])["Subnets"]
    groups = [variable.emr_managed_master_security_group, variable.emr_managed_slave_security_group]
    described = ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"]
    (vpc,) = ec2.describe_vpcs(VpcIds=[subnet["VpcId"]])["Vpcs"]
    assert (variable.bucket, variable.region) == (new_bucket, aws.region)
    assert {group["VpcId"] for group in described} == {subnet["VpcId"]}
    for tagged in (vpc, subnet, *described):
        assert EMR_MANAGED_POLICIES_TAG in tagged["Tags"]


def test_provisioning_again_keeps_what_exists(aws, s3, emr, ec2, iam, new_bucket):
    first = provision(s3, emr, ec2, iam, new_bucket, aws.region)
    s3.put_object(Bucket=new_bucket, Key="images/Kiwi/0_100.jpg", Body=b"kiwi")
    created = emr.describe_security_configuration(Name=DEFAULT_SECURITY_CONFIGURATION)["CreationDateTime"]

    assert provision(s3, emr, ec2, iam, new_bucket, aws.region) == first
    assert s3.get_object(Bucket=new_bucket, Key="images/Kiwi/0_100.jpg")["Body"].read() == b"kiwi"
    assert emr.describe_security_configuration(Name=DEFAULT_SECURITY_CONFIGURATION)["CreationDateTime"] == created


def test_a_region_the_stack_refuses_creates_nothing(s3, emr, ec2, iam, new_bucket):
    with pytest.raises(ValueError, match="Region 'us-east-1' must be an EU region"):
        provision(s3, emr, ec2, iam, new_bucket, "us-east-1")

    assert new_bucket not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}


def test_the_cli_provisions_the_endpoint(aws, s3, new_bucket):
    result = run_cli("--endpoint-url", aws.endpoint_url, "--bucket", new_bucket, "--region", aws.region)

    assert result.returncode == 0, result.stderr
    assert s3.head_bucket(Bucket=new_bucket)
    assert parse_config(json.loads(result.stdout)).bucket == new_bucket


@pytest.mark.parametrize(
    ("bucket", "region", "message"),
    [
        ("fruits-demo", "us-east-1", "Region 'us-east-1' must be an EU region"),
        ("fruits.demo", "eu-west-1", "BucketName 'fruits.demo' must be 3 to 63 lowercase letters"),
    ],
)
def test_the_cli_refuses_what_the_stack_refuses_in_one_line(aws, bucket, region, message):
    result = run_cli("--endpoint-url", aws.endpoint_url, "--bucket", bucket, "--region", region)

    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"local_provision: error: {message}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_cli_says_when_the_endpoint_is_unreachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    result = run_cli(
        "--endpoint-url", f"http://127.0.0.1:{closed_port}", "--bucket", "fruits-demo", "--region", "eu-west-1"
    )

    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"local_provision: error: nothing answers at http://127.0.0.1:{closed_port}; start the")
