"""A node knows its region only when told: its environment names none, as on EMR, and the endpoint refuses a node's
S3 request signed for another region than its bucket's, as S3 does, and records the region of every request."""

from __future__ import annotations

import gzip
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.client import BaseClient

from local_aws import EmbeddedAws
from local_aws.iam_enforcement import ADMIN, node_credentials
from local_aws.node import Node

KEY = "artifacts/v1/bootstrap/requirements.txt"


@pytest.fixture
def stored(s3: BaseClient, bucket: str) -> str:
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"numpy==2.4.6\n")
    return f"s3://{bucket}/{KEY}"


def signed_get(aws: EmbeddedAws, path: str, keys: dict[str, str], region: str) -> tuple[int, dict[str, str], str]:
    """A GET by ``keys`` whose credential scope names ``region`` (the endpoint checks no signature, only who and
    where)."""
    access_key_id = keys["AWS_ACCESS_KEY_ID"]
    token = {"X-Amz-Security-Token": keys["AWS_SESSION_TOKEN"]} if "AWS_SESSION_TOKEN" in keys else {}
    request = urllib.request.Request(
        f"{aws.endpoint_url}{path}",
        headers={
            "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key_id}/20261205/{region}/s3/aws4_request, "
            "SignedHeaders=host, Signature=0",
            "X-Amz-Date": "20261205T000000Z",
            **token,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def wrong_region_requests(aws: EmbeddedAws) -> list[Any]:
    return [r for r in aws.requests if r.service == "s3" and r.region not in ("", aws.region)]


def test_a_node_s_request_signed_for_another_region_is_refused_as_s3_refuses_it(aws, bucket, stored, node_role):
    node = node_credentials(node_role, aws.region)

    status, headers, body = signed_get(aws, f"/{bucket}/{KEY}", node, "us-east-1")

    assert status == 400
    assert "<Code>AuthorizationHeaderMalformed</Code>" in body
    assert "the region 'us-east-1' is wrong; expecting 'eu-west-1'" in body
    assert f"<Region>{aws.region}</Region>" in body
    assert headers["x-amz-bucket-region"] == aws.region


def test_a_node_s_request_signed_for_its_bucket_s_region_passes(aws, bucket, stored, node_role):
    node = node_credentials(node_role, aws.region)

    status, _, body = signed_get(aws, f"/{bucket}/{KEY}", node, aws.region)

    assert (status, body) == (200, "numpy==2.4.6\n")


def test_other_principals_are_left_to_the_sdk_s_own_region_handling(aws, bucket, stored):
    status, _, _ = signed_get(aws, f"/{bucket}/{KEY}", {"AWS_ACCESS_KEY_ID": ADMIN.access_key_id}, "us-east-1")

    assert status == 200


def test_the_request_log_keeps_the_region_each_request_was_signed_for(aws, bucket, stored, node_role):
    node = node_credentials(node_role, aws.region)
    aws.requests.clear()

    signed_get(aws, f"/{bucket}/{KEY}", node, "us-east-1")
    signed_get(aws, f"/{bucket}/{KEY}", node, aws.region)

    assert [(r.region, r.status) for r in aws.requests] == [("us-east-1", 400), (aws.region, 200)]


@pytest.fixture
def node_aws(aws: EmbeddedAws, node_role: str, tmp_path: Path):
    """The node's ``aws`` stand-in, run in a node's environment built from this machine's, which names a region."""
    node = Node(tmp_path / "node")
    machine = {**os.environ, "AWS_REGION": aws.region, "AWS_DEFAULT_REGION": aws.region, "AWS_PROFILE": "dev"}
    environ = node.bootstrap_environment(
        {**machine, "AWS_ENDPOINT_URL": aws.endpoint_url, **node_credentials(node_role, aws.region)}
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["aws", *args], env=environ, capture_output=True, text=True, timeout=60)

    return run


def test_the_node_s_environment_names_no_region_and_reads_no_configuration_of_this_machine(tmp_path):
    node = Node(tmp_path / "node")

    environ = node.bootstrap_environment({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1", "PATH": ""})

    assert not {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"} & environ.keys()
    assert not Path(environ["AWS_CONFIG_FILE"]).exists()


def test_an_aws_cli_call_without_a_region_signs_for_us_east_1_and_is_refused(aws, stored, node_aws, tmp_path):
    aws.requests.clear()

    result = node_aws("s3", "cp", "--only-show-errors", stored, str(tmp_path / "copy"))

    # The SDK retries in the bucket's region (S3's answer names it): from a private subnet, S3's global endpoint
    # would not have answered at all.
    assert result.returncode == 0, result.stderr
    assert [r.region for r in wrong_region_requests(aws)] == ["us-east-1"]


def test_an_aws_cli_call_given_the_region_is_signed_for_it(aws, stored, node_aws, tmp_path):
    aws.requests.clear()

    result = node_aws("s3", "cp", "--only-show-errors", "--region", aws.region, stored, str(tmp_path / "copy"))

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "copy").read_text() == "numpy==2.4.6\n"
    assert wrong_region_requests(aws) == []
    assert [r.region for r in aws.requests if r.service == "s3"] == [aws.region]


def test_a_step_s_environment_names_no_region_unless_the_cluster_s_configuration_does(
    start_cluster, python_step, s3, bucket
):
    code = "import os, sys; print(os.environ.get('AWS_REGION'), os.environ.get('AWS_DEFAULT_REGION'))"
    cluster = start_cluster([python_step("region", code)], keep_alive=False)

    (step,) = cluster.wait_for_steps()

    assert step["Status"]["State"] == "COMPLETED"
    stdout = _step_stdout(s3, bucket, cluster.id, step["Id"])
    assert stdout.strip() == "None None"


def _step_stdout(s3: BaseClient, bucket: str, cluster_id: str, step_id: str) -> str:
    key = f"logs/{cluster_id}/steps/{step_id}/stdout.gz"
    return gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).decode()
