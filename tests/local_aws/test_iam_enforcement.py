"""The endpoint authorizes every request as AWS would, where moto alone would not: EMR on the cluster's ARN,
RunJobFlow's implied actions and tag conditions, DeleteObjects per key, steps as the cluster's node role."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from local_aws import EmbeddedAws

ACCOUNT = "123456789012"


@pytest.fixture
def client_allowed(aws: EmbeddedAws) -> Callable[..., Callable[[str], BaseClient]]:
    """A new IAM user holding only ``statements``; returns a factory of its clients by service."""
    iam = aws.client("iam")

    def make(*statements: dict) -> Callable[[str], BaseClient]:
        name = f"user-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=name)
        policy = {"Version": "2012-10-17", "Statement": list(statements)}
        iam.put_user_policy(UserName=name, PolicyName="only", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return lambda service: boto3.client(
            service,
            endpoint_url=aws.endpoint_url,
            region_name=aws.region,
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )

    return make


def denial(call: Callable[[], object]) -> dict:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]


def test_unknown_keys_are_refused(aws):
    s3 = boto3.client(
        "s3", endpoint_url=aws.endpoint_url, region_name=aws.region, aws_access_key_id="x", aws_secret_access_key="x"
    )

    assert denial(s3.list_buckets)["Code"] == "InvalidAccessKeyId"


def test_a_cluster_grant_is_compared_with_the_clusters_arn(aws, start_cluster, client_allowed):
    cluster = start_cluster([])
    other = f"arn:aws:elasticmapreduce:{aws.region}:{ACCOUNT}:cluster/j-OTHER"
    emr = client_allowed({"Effect": "Allow", "Action": "elasticmapreduce:DescribeCluster", "Resource": other})("emr")

    error = denial(lambda: emr.describe_cluster(ClusterId=cluster.id))

    assert error["Code"] == "AccessDeniedException"
    assert "not authorized to perform: elasticmapreduce:DescribeCluster on resource: " in error["Message"]
    assert error["Message"].split("on resource: ")[1].startswith(f"arn:aws:elasticmapreduce:{aws.region}:")
    assert f"cluster/{cluster.id} " in error["Message"]


def test_a_grant_on_every_cluster_lets_the_call_through(aws, start_cluster, client_allowed):
    cluster = start_cluster([])
    every = f"arn:aws:elasticmapreduce:{aws.region}:{ACCOUNT}:cluster/*"
    emr = client_allowed({"Effect": "Allow", "Action": "elasticmapreduce:DescribeCluster", "Resource": every})("emr")

    assert emr.describe_cluster(ClusterId=cluster.id)["Cluster"]["Id"] == cluster.id


def run_job_flow(emr: BaseClient, **extra) -> str:
    return emr.run_job_flow(
        Name="iam-test",
        ReleaseLabel="emr-7.5.0",
        Instances={"InstanceCount": 1, "MasterInstanceType": "m5.xlarge", "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
        **extra,
    )["JobFlowId"]


TAGGED_RUN_JOB_FLOW = {
    "Effect": "Allow",
    "Action": "elasticmapreduce:RunJobFlow",
    "Resource": "*",
    "Condition": {"StringEquals": {"aws:RequestTag/team": "fruits"}},
}
PASS_ROLES = {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}


def test_run_job_flow_without_the_tag_its_grant_requires_is_denied(client_allowed):
    emr = client_allowed(TAGGED_RUN_JOB_FLOW, PASS_ROLES)("emr")

    error = denial(lambda: run_job_flow(emr))

    assert "not authorized to perform: elasticmapreduce:RunJobFlow" in error["Message"]


def test_run_job_flow_needs_add_tags_for_its_tags(client_allowed):
    emr = client_allowed(TAGGED_RUN_JOB_FLOW, PASS_ROLES)("emr")

    error = denial(lambda: run_job_flow(emr, Tags=[{"Key": "team", "Value": "fruits"}]))

    assert "not authorized to perform: elasticmapreduce:AddTags on resource: " in error["Message"]


def test_run_job_flow_needs_to_pass_the_roles(aws, client_allowed, node_role):
    add_tags = {"Effect": "Allow", "Action": "elasticmapreduce:AddTags", "Resource": "*"}
    emr = client_allowed(TAGGED_RUN_JOB_FLOW, add_tags)("emr")

    error = denial(lambda: run_job_flow(emr, Tags=[{"Key": "team", "Value": "fruits"}]))

    assert "not authorized to perform: iam:PassRole on resource: arn:aws:iam::" in error["Message"]


def test_delete_objects_is_authorized_per_key(aws, s3, bucket, client_allowed):
    for key in ("mine/a", "theirs/b"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    grant = {"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{bucket}/mine/*"}
    limited = client_allowed(grant)("s3")

    allowed = limited.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "mine/a"}]})
    refused = limited.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "theirs/b"}]})

    assert [item["Key"] for item in allowed.get("Deleted", [])] == ["mine/a"]
    assert [(item["Key"], item["Code"]) for item in refused["Errors"]] == [("theirs/b", "AccessDenied")]
    assert s3.head_object(Bucket=bucket, Key="theirs/b")


@pytest.mark.parametrize("granted", [False, True])
def test_a_bucket_that_does_not_exist_is_no_such_bucket_to_anyone(aws, client_allowed, granted):
    grant = {"Effect": "Allow", "Action": "s3:*", "Resource": ["arn:aws:s3:::nowhere", "arn:aws:s3:::nowhere/*"]}
    s3 = client_allowed(
        *([grant] if granted else [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}])
    )("s3")

    assert denial(lambda: s3.get_bucket_location(Bucket="nowhere"))["Code"] == "NoSuchBucket"
    assert denial(lambda: s3.list_objects_v2(Bucket="nowhere"))["Code"] == "NoSuchBucket"
    assert denial(lambda: s3.put_object(Bucket="nowhere", Key="k", Body=b"x"))["Code"] == "NoSuchBucket"
    assert denial(lambda: s3.head_bucket(Bucket="nowhere"))["Code"] == "404"


def test_a_bucket_that_exists_is_still_denied_without_a_grant(client_allowed, bucket):
    s3 = client_allowed({"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"})("s3")

    assert denial(lambda: s3.get_bucket_location(Bucket=bucket))["Code"] == "AccessDenied"
    assert denial(lambda: s3.head_bucket(Bucket=bucket))["Code"] == "403"


def test_a_step_works_as_a_session_of_the_clusters_node_role(start_cluster, python_step, s3, bucket, node_role):
    code = "import boto3; print(boto3.client('sts', region_name='eu-west-1').get_caller_identity()['Arn'])"
    cluster = start_cluster([python_step("whoami", code)])

    (step,) = cluster.wait_for_steps()

    stdout = s3.get_object(Bucket=bucket, Key=f"logs/{cluster.id}/steps/{step['Id']}/stdout.gz")["Body"].read()
    assert gzip.decompress(stdout).decode().strip() == f"arn:aws:sts::{ACCOUNT}:assumed-role/{node_role}/emr-node"


def test_a_step_of_a_cluster_without_its_instance_profile_fails_saying_so(emr, python_step, wait_until):
    cluster_id = emr.run_job_flow(
        Name="iam-test",
        ReleaseLabel="emr-7.5.0",
        Instances={"InstanceCount": 1, "MasterInstanceType": "m5.xlarge", "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="no-such-profile",
        ServiceRole="EMR_DefaultRole",
        Steps=[python_step("anything", "print(1)")],
    )["JobFlowId"]

    (step,) = emr.list_steps(ClusterId=cluster_id)["Steps"]
    status = wait_until(
        lambda: (
            (s := emr.describe_step(ClusterId=cluster_id, StepId=step["Id"])["Step"]["Status"])["State"] == "FAILED"
            and s
        )
    )
    assert "'no-such-profile' is no instance profile" in status["FailureDetails"]["Message"]
