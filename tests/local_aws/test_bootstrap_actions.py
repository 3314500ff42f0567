"""A cluster's bootstrap actions: run from S3 on the endpoint's node, logged and failing as on EMR."""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.client import BaseClient

from fruits_airflow.run_failures import find_failure
from fruits_airflow.triggers import poll

WRITE_MARKER = "import boto3, sys; bucket, key = sys.argv[1:]; boto3.client('s3').put_object(Bucket=bucket, Key=key)"


@pytest.fixture
def action(s3: BaseClient, bucket: str) -> Any:
    """A bootstrap action whose script ``body`` (a shell script) is uploaded to the test's bucket."""

    def make(name: str, body: str, *args: str) -> dict[str, Any]:
        key = f"bootstrap/{name}.sh"
        s3.put_object(Bucket=bucket, Key=key, Body=f"#!/bin/sh\n{body}\n".encode())
        return {"Name": name, "ScriptBootstrapAction": {"Path": f"s3://{bucket}/{key}", "Args": list(args)}}

    return make


def primary_instance(emr: BaseClient, cluster_id: str) -> str:
    (instance,) = emr.list_instances(ClusterId=cluster_id, InstanceGroupTypes=["MASTER"])["Instances"]
    return instance["Ec2InstanceId"]


def bootstrap_log(s3: BaseClient, bucket: str, cluster_id: str, instance: str, number: int, name: str) -> str:
    key = f"logs/{cluster_id}/node/{instance}/bootstrap-actions/{number}/{name}.gz"
    return gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).decode()


def node_log_keys(s3: BaseClient, bucket: str, cluster_id: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"logs/{cluster_id}/node/").get("Contents", [])
    return sorted(item["Key"].split("/bootstrap-actions/")[1] for item in listed)


def test_the_cluster_is_bootstrapping_while_an_action_runs_then_waits(start_cluster, action, tmp_path):
    go = tmp_path / "go"
    cluster = start_cluster([], BootstrapActions=[action("wait", 'while [ ! -e "$1" ]; do sleep 0.05; done', str(go))])

    cluster.wait_for_state("BOOTSTRAPPING")
    go.touch()

    assert cluster.wait_for_state("WAITING", "TERMINATED_WITH_ERRORS")["State"] == "WAITING"


def test_each_action_s_stdout_and_stderr_land_under_the_primary_instance(start_cluster, action, emr, s3, bucket):
    actions = [action("first", 'echo "out $*"; echo "err 1" >&2', "a b", "c"), action("second", "echo two")]
    cluster = start_cluster([], BootstrapActions=actions)
    cluster.wait_for_state("WAITING")
    instance = primary_instance(emr, cluster.id)

    assert node_log_keys(s3, bucket, cluster.id) == [f"{n}/{name}.gz" for n in (1, 2) for name in ("stderr", "stdout")]
    assert bootstrap_log(s3, bucket, cluster.id, instance, 1, "stdout") == "out a b c\n"
    assert bootstrap_log(s3, bucket, cluster.id, instance, 1, "stderr") == "err 1\n"
    assert bootstrap_log(s3, bucket, cluster.id, instance, 2, "stdout") == "two\n"


def test_a_failed_action_ends_the_cluster_with_bootstrap_failure_and_no_step_runs(
    start_cluster, action, python_step, emr, s3, bucket
):
    actions = [
        action("ok", "true"),
        action("installer", 'echo "error: Failed to parse: numpy=== 1" >&2; exit 3'),
        action("never", "echo ran"),
    ]
    step = python_step("marker", WRITE_MARKER, bucket, "ran/marker")
    cluster = start_cluster([step], BootstrapActions=actions)

    status = cluster.wait_for_state("TERMINATED_WITH_ERRORS", "TERMINATED")
    instance = primary_instance(emr, cluster.id)

    assert status["State"] == "TERMINATED_WITH_ERRORS"
    assert status["StateChangeReason"] == {
        "Code": "BOOTSTRAP_FAILURE",
        "Message": f"On the master instance ({instance}), bootstrap action 2 returned a non-zero return code",
    }
    assert cluster.step_states() == ["CANCELLED"]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="ran/")
    assert "error: Failed to parse: numpy=== 1" in bootstrap_log(s3, bucket, cluster.id, instance, 2, "stderr")
    assert not [key for key in node_log_keys(s3, bucket, cluster.id) if key.startswith("3/")]


def test_the_airflow_side_reads_a_bootstrap_failure_as_the_cluster_s(start_cluster, action, python_step, emr):
    step = python_step("never", "pass")
    cluster = start_cluster([step], BootstrapActions=[action("fails", "exit 1")])
    cluster.wait_for_state("TERMINATED_WITH_ERRORS")

    failure = find_failure(emr, cluster.id, cluster.step_ids)

    assert poll(emr, cluster.id, cluster.step_ids[-1]) == "FAILED"
    assert failure is not None
    assert failure.cause == "cluster"
    assert "BOOTSTRAP_FAILURE: On the master instance (i-" in failure.summary()


def test_a_script_missing_from_s3_fails_the_bootstrap_naming_the_action(start_cluster, bucket, emr):
    missing = {"Name": "gone", "ScriptBootstrapAction": {"Path": f"s3://{bucket}/nowhere.sh", "Args": []}}
    cluster = start_cluster([], BootstrapActions=[missing])

    status = cluster.wait_for_state("TERMINATED_WITH_ERRORS", "WAITING")

    assert status["StateChangeReason"]["Code"] == "BOOTSTRAP_FAILURE"
    assert status["StateChangeReason"]["Message"] == (
        f"Master instance ({primary_instance(emr, cluster.id)}) failed attempting to download "
        "bootstrap action 1 file from S3"
    )


def test_terminating_during_an_action_stops_it_and_runs_no_step(start_cluster, action, python_step, emr, tmp_path):
    started = tmp_path / "started"
    sleeper = action("sleeper", 'touch "$1"; exec sleep 120', str(started))
    cluster = start_cluster([python_step("never", "pass")], BootstrapActions=[sleeper])
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    emr.terminate_job_flows(JobFlowIds=[cluster.id])
    status = cluster.wait_for_state("TERMINATED", "TERMINATED_WITH_ERRORS")

    assert status["StateChangeReason"]["Code"] == "USER_REQUEST"
    assert cluster.step_states() == ["CANCELLED"]


def test_actions_run_on_the_node_with_its_stand_ins_and_the_endpoint_s_s3(start_cluster, action, emr, s3, bucket, aws):
    s3.put_object(Bucket=bucket, Key="config/requirements.txt", Body=b"numpy==2.4.6\n")
    body = (
        'echo "home=$FRUITS_PIPELINE_HOME"\n'
        'for tool in sudo dnf yum aws; do echo "$tool=$(command -v "$tool")"; done\n'
        'aws s3 cp --only-show-errors "$1" ./requirements.txt && cat requirements.txt\n'
        "sudo sh -c 'echo sudo ran'"
    )
    cluster = start_cluster([], BootstrapActions=[action("node", body, f"s3://{bucket}/config/requirements.txt")])
    cluster.wait_for_state("WAITING")

    stdout = bootstrap_log(s3, bucket, cluster.id, primary_instance(emr, cluster.id), 1, "stdout").splitlines()

    node = Path(aws.state_dir) / "node"
    assert stdout[0] == f"home={node}/mnt/fruits-pipeline"
    assert stdout[1:5] == [f"{tool}={node}/bin/{tool}" for tool in ("sudo", "dnf", "yum", "aws")]
    assert stdout[5:] == ["numpy==2.4.6", "sudo ran"]
