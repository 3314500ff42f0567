"""The endpoint's tests: each gets its own bucket and clusters on the module's embedded endpoint
(``aws``, ``s3``, ``emr``: tests/embedded_aws.py), so tests do not see each other's objects or steps.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.client import BaseClient

from local_aws import EmbeddedAws

FINAL_STEP_STATES = {"COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED"}
_POLL_SECONDS = 0.05


def _wait_until(condition: Callable[[], Any], *, timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(_POLL_SECONDS)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Cluster:
    """A cluster of the endpoint, seen through the EMR API only."""

    emr: BaseClient
    id: str
    step_ids: list[str]

    def add_steps(self, *steps: dict[str, Any]) -> list[str]:
        added = self.emr.add_job_flow_steps(JobFlowId=self.id, Steps=list(steps))["StepIds"]
        self.step_ids.extend(added)
        return added

    def step(self, step_id: str) -> dict[str, Any]:
        return self.emr.describe_step(ClusterId=self.id, StepId=step_id)["Step"]

    def step_states(self) -> list[str]:
        return [self.step(step_id)["Status"]["State"] for step_id in self.step_ids]

    def status(self) -> dict[str, Any]:
        return self.emr.describe_cluster(ClusterId=self.id)["Cluster"]["Status"]

    def wait_for_steps(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Every step of the cluster once all have ended, in submission order."""

        def all_ended() -> list[dict[str, Any]] | None:
            steps = [self.step(step_id) for step_id in self.step_ids]
            return steps if all(s["Status"]["State"] in FINAL_STEP_STATES for s in steps) else None

        return _wait_until(all_ended, timeout=timeout, what=f"the steps of {self.id} to end")

    def wait_for_step_state(self, step_id: str, state: str) -> None:
        _wait_until(lambda: self.step(step_id)["Status"]["State"] == state, what=f"step {step_id} to be {state}")

    def wait_for_state(self, *states: str) -> dict[str, Any]:
        """The cluster's status once its state is one of ``states``."""

        def reached() -> dict[str, Any] | None:
            status = self.status()
            return status if status["State"] in states else None

        return _wait_until(reached, what=f"cluster {self.id} to be one of {states}")


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """Poll a condition until it returns something truthy (see :func:`_wait_until`)."""
    return _wait_until


@pytest.fixture
def bucket(s3: BaseClient, aws: EmbeddedAws) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": aws.region})
    return name


@pytest.fixture
def python_step() -> Callable[..., dict[str, Any]]:
    """A command-runner step that runs Python ``code`` with ``args`` (s3:// URIs are mapped)."""

    def make(name: str, code: str, *args: str, action_on_failure: str = "CONTINUE") -> dict[str, Any]:
        return {
            "Name": name,
            "ActionOnFailure": action_on_failure,
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": [sys.executable, "-c", code, *args]},
        }

    return make


NODE_ROLE = "EMR_EC2_DefaultRole"


@pytest.fixture(scope="module")
def node_role(aws: EmbeddedAws) -> str:
    """EMR's default instance profile, its role allowed all of S3: the endpoint gives steps a session of it."""
    iam = aws.client("iam")
    trust = {
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    }
    iam.create_role(RoleName=NODE_ROLE, AssumeRolePolicyDocument=json.dumps(trust))
    all_of_s3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_role_policy(RoleName=NODE_ROLE, PolicyName="s3", PolicyDocument=json.dumps(all_of_s3))
    iam.create_instance_profile(InstanceProfileName=NODE_ROLE)
    iam.add_role_to_instance_profile(InstanceProfileName=NODE_ROLE, RoleName=NODE_ROLE)
    return NODE_ROLE


@pytest.fixture
def start_cluster(emr: BaseClient, bucket: str, node_role: str) -> Callable[..., Cluster]:
    """Run a job flow logging to the test's bucket; its ``steps`` need distinct names; ``request`` adds to it.

    The cluster is the primary node alone unless ``instance_groups`` says otherwise.
    """

    def start(
        steps: list[dict[str, Any]],
        *,
        keep_alive: bool = True,
        instance_groups: list[dict[str, Any]] | None = None,
        **request: Any,
    ) -> Cluster:
        response = emr.run_job_flow(
            Name="local-aws-test",
            ReleaseLabel="emr-7.5.0",
            LogUri=f"s3://{bucket}/logs/",
            Instances={
                "InstanceGroups": instance_groups
                or [{"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1}],
                "KeepJobFlowAliveWhenNoSteps": keep_alive,
            },
            Steps=steps,
            JobFlowRole=node_role,
            ServiceRole="EMR_DefaultRole",
            **request,
        )
        cluster_id = response["JobFlowId"]
        ids_by_name = {step["Name"]: step["Id"] for step in emr.list_steps(ClusterId=cluster_id)["Steps"]}
        return Cluster(emr=emr, id=cluster_id, step_ids=[ids_by_name[step["Name"]] for step in steps])

    return start
