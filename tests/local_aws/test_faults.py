"""Faults on demand (local_aws.faults): each bites a client that does not recover, and only its first attempt."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from local_aws import EmbeddedAws
from local_aws.failed_attempts import FailedAttempts
from local_aws.faults import FaultPlan, FaultPlanError, ProcessFault
from local_aws.iam_enforcement import ADMIN

SLEEP = "import time; time.sleep(120)"


@pytest.fixture
def faults(aws: EmbeddedAws) -> Iterator[None]:
    """Whatever plan a test sets is taken off afterwards."""
    yield
    aws.faults = FaultPlan()


def client(aws: EmbeddedAws, service: str, max_attempts: int) -> BaseClient:
    retries = {"mode": "standard", "total_max_attempts": max_attempts}
    return boto3.client(
        service, endpoint_url=aws.endpoint_url, region_name=aws.region, config=Config(retries=retries), **ADMIN.keys
    )


def test_every_s3_request_fails_once_and_a_retry_succeeds(aws, bucket, faults):
    aws.faults = FaultPlan(seed=1, s3_error_share=1.0)
    s3 = client(aws, "s3", max_attempts=2)

    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"hello")

    assert s3.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"hello"
    statuses = [r.status for r in aws.requests if r.path == f"/{bucket}/a.txt"]
    assert [status if status == 200 else "5xx" for status in statuses] == ["5xx", 200, "5xx", 200]
    assert set(statuses) <= {200, 500, 503}


def test_a_client_without_retries_gets_slow_down_or_internal_error(aws, bucket, faults):
    aws.faults = FaultPlan(seed=1, s3_error_share=1.0)

    with pytest.raises(ClientError) as raised:
        client(aws, "s3", max_attempts=1).put_object(Bucket=bucket, Key="b.txt", Body=b"x")

    assert raised.value.response["Error"]["Code"] in {"SlowDown", "InternalError"}
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] in {500, 503}


def test_emr_requests_are_throttled_once(aws, faults):
    aws.faults = FaultPlan(seed=1, emr_throttle_share=1.0)

    with pytest.raises(ClientError, match="ThrottlingException"):
        client(aws, "emr", max_attempts=1).list_clusters()
    client(aws, "emr", max_attempts=2).list_clusters()


def test_the_first_attempts_of_the_requests_named_fail_and_the_next_succeeds(aws, bucket, faults):
    aws.faults = FaultPlan(seed=1, failed_attempts=FailedAttempts(at=f"GET /{bucket}/tries/", attempts=3))
    client(aws, "s3", max_attempts=1).put_object(Bucket=bucket, Key="tries/a.txt", Body=b"x")

    with pytest.raises(ClientError, match=r"SlowDown|InternalError"):
        client(aws, "s3", max_attempts=3).get_object(Bucket=bucket, Key="tries/a.txt")
    body = client(aws, "s3", max_attempts=4).get_object(Bucket=bucket, Key="tries/a.txt")["Body"].read()

    assert body == b"x"
    statuses = [r.status for r in aws.requests if r.method == "GET" and r.path == f"/{bucket}/tries/a.txt"]
    assert [status == 200 for status in statuses] == [False] * 6 + [True]


def test_a_share_of_the_requests_named_fail_their_first_attempts(aws, bucket, faults):
    aws.faults = FaultPlan(seed=5, failed_attempts=FailedAttempts(at="ListClusters", attempts=2, share=0.5))
    emr = client(aws, "emr", max_attempts=3)

    for _ in range(20):
        emr.list_clusters()

    throttled = [fault for fault in aws.injected if fault.kind == "emr throttling"]
    assert 0 < len(throttled) < 40
    assert len(throttled) % 2 == 0


def test_the_same_seed_fails_the_same_requests(aws, bucket, faults):
    def failed_keys() -> list[str]:
        aws.faults = FaultPlan(seed=7, s3_error_share=0.5)
        before = len(aws.injected)
        s3 = client(aws, "s3", max_attempts=3)
        for n in range(20):
            s3.put_object(Bucket=bucket, Key=f"seeded/{n}", Body=b"x")
        return [fault.detail.split(" on ")[1] for fault in aws.injected[before:]]

    first = failed_keys()

    assert 0 < len(first) < 20
    assert failed_keys() == first


def test_a_killed_step_fails_with_its_exit_code(start_cluster, python_step, aws, faults):
    aws.faults = FaultPlan(kill_step=ProcessFault(step="sleeper", after_seconds=0.5))
    cluster = start_cluster([python_step("sleeper", SLEEP)])

    (step,) = cluster.wait_for_steps()

    assert step["Status"]["State"] == "FAILED"
    assert "exited with code -9" in step["Status"]["FailureDetails"]["Reason"]
    assert step["Status"]["FailureDetails"]["Message"] == "killed by SIGKILL"
    assert aws.injected[-1].kind == "step killed"


def test_a_step_is_killed_right_after_the_request_named(start_cluster, python_step, aws, bucket, faults):
    code = (
        "import boto3, sys, time; s3 = boto3.client('s3')\n"
        "for n in range(3): s3.put_object(Bucket=sys.argv[1], Key=f'out/{n}', Body=b'x')\n"
        "time.sleep(120)"
    )
    aws.faults = FaultPlan(kill_step=ProcessFault(step="writer", at=f"PUT /{bucket}/out/", after_requests=2))
    cluster = start_cluster([python_step("writer", code, bucket)])

    (step,) = cluster.wait_for_steps()

    assert step["Status"]["State"] == "FAILED"
    keys = [o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=bucket, Prefix="out/").get("Contents", [])]
    assert keys == ["out/0", "out/1"]


def test_the_cluster_is_terminated_during_the_step_named(start_cluster, python_step, aws, faults):
    aws.faults = FaultPlan(terminate_during_step=ProcessFault(step="long", after_seconds=0.5))
    cluster = start_cluster([python_step("long", SLEEP), python_step("next", "pass")])

    steps = cluster.wait_for_steps()
    status = cluster.wait_for_state("TERMINATED")

    assert [s["Status"]["State"] for s in steps] == ["CANCELLED", "CANCELLED"]
    assert status["StateChangeReason"]["Code"] == "USER_REQUEST"


def test_the_caller_of_the_request_named_is_killed_after_its_answer(aws, bucket, faults):
    aws.faults = FaultPlan(kill_caller=ProcessFault(at=f"PUT /{bucket}/killed/"))
    code = (
        "import boto3, sys; s3 = boto3.client('s3')\n"
        "for n in range(3): s3.put_object(Bucket=sys.argv[1], Key=f'killed/{n}', Body=b'x')"
    )

    done = subprocess.run([sys.executable, "-c", code, bucket], env=aws.client_environment(), check=False, timeout=60)

    assert done.returncode == -9
    keys = [o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=bucket, Prefix="killed/").get("Contents", [])]
    assert keys == ["killed/0"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "is not JSON"),
        ('{"s3_errors": 0.1}', "Unknown fault plan keys ['s3_errors']"),
        ('{"s3_error_share": 2}', "use a share between 0 and 1"),
        ('{"kill_step": {"after_seconds": 3}}', "names no step"),
        ('{"kill_step": {"step": "pca", "when": 3}}', "Unknown kill_step keys ['when']"),
        ('{"failed_attempts": {"at": "GET /b/", "attempts": 0}}', "has attempts 0; use 1 or more"),
        ('{"failed_attempts": {"attempts": 2}}', "'failed_attempts' has no 'at'"),
        ('{"failed_attempts": {"at": "GET /b/", "times": 2}}', "Unknown failed_attempts keys ['times']"),
    ],
)
def test_a_bad_plan_is_refused_in_one_line(text, message):
    with pytest.raises(FaultPlanError, match=message.replace("[", r"\[").replace("]", r"\]")):
        FaultPlan.from_json(text)


def test_the_plan_comes_from_the_environment_and_round_trips():
    plan = FaultPlan(
        seed=3,
        s3_error_share=0.1,
        kill_step=ProcessFault(step="pca", at="PUT /b/runs/"),
        failed_attempts=FailedAttempts(at="GET /b/images/", attempts=6),
    )

    assert FaultPlan.from_environment({"LOCAL_AWS_FAULTS": plan.to_json()}) == plan
    assert FaultPlan.from_environment({}) == FaultPlan()
