"""Every action of the Airflow policy is needed by a run, and each denial fails it in one line naming the action.

The embedded endpoint enforces the stack's own policies (local_aws.iam_enforcement). A run here is the DAG's
own task callables and operators, in the DAG's order, in this process, as the role that ``aws_default``
assumes, with one trivial command-runner step in place of the two Spark steps: it writes the PCA's
``_SUCCESS`` as the nodes' role. Spark would add a minute per run and no action of the Airflow policy.
``check_output`` and ``report_failure`` are left out: each action they need is needed earlier (calls.yaml),
and the end-to-end demo runs them under enforcement, but for the run's bill (``tasks.run_cost``, which
``check_output`` calls), run here once the teardown has asked for the end. The teardown runs whatever
happened, as in the DAG.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.client import BaseClient

from fruits_airflow import tasks
from fruits_airflow.aws_errors import AIRFLOW_POLICY, AccessDenied, access_denied_explained
from fruits_airflow.config import AWS_CONN_ID, parse_config
from fruits_airflow.operators import (
    EmrAddStepsOperator,
    EmrCreateJobFlowOperator,
    EmrStepsSensor,
    EmrTerminateJobFlowOperator,
    S3KeySensor,
)
from local_aws import EmbeddedAws
from tests import deployed_stack
from tests.cloudformation.test_calls import CALLS
from tools.local_airflow import BUCKET, REGION
from tools.local_provision import put_managed_policy, stack_context
from tools.stack_template import load_template

# Actions a run that goes well never needs: boto3 aborts a multipart upload only when a part fails.
ERROR_PATHS_ONLY = {"s3:AbortMultipartUpload"}
AIRFLOW_ACTIONS = sorted({call.action for call in CALLS if call.policy == "AirflowPolicy"} - ERROR_PATHS_ONLY)
POKE_SECONDS = 0.2
# Generous: a passing run never waits for it, and the bootstrap alone can take a minute on a busy machine.
SENSOR_TIMEOUT_SECONDS = 300

# The stack deployed on the module's own endpoint, as Airflow sees it (tests/deployed_stack.py).
landing, aws, provisioned, admin_emr = (
    deployed_stack.landing,
    deployed_stack.aws,
    deployed_stack.provisioned,
    deployed_stack.admin_emr,
)


@dataclass
class FakeTaskInstance:
    """What the operators push (the links, the new cluster's id, a refusal); nothing reads it back."""

    dag_id: str = "fruits_pipeline"
    run_id: str = "manual__enforced"
    task_id: str = "create_cluster"
    try_number: int = 1
    max_tries: int = 0
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@dataclass
class Run:
    """How a run ended: the first denial (None when it went through) and the cluster it created."""

    denial: AccessDenied | None
    cluster_id: str | None


@pytest.fixture
def airflow_policy(aws: EmbeddedAws, provisioned: dict[str, str]) -> Iterator[dict[str, Any]]:
    """The template's Airflow policy document; whatever a test makes of it is undone afterwards."""
    template = load_template()
    (resource,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    properties = stack_context(template, BUCKET, REGION).resolve(template, resource["Properties"])
    yield properties["PolicyDocument"]
    put_managed_policy(aws.client("iam"), properties)


def set_airflow_policy(aws: EmbeddedAws, document: dict[str, Any]) -> None:
    put_managed_policy(aws.client("iam"), {"ManagedPolicyName": AIRFLOW_POLICY, "PolicyDocument": document})


def without(document: dict[str, Any], action: str) -> dict[str, Any]:
    """``document`` with ``action`` taken out of every statement (a statement left with none goes)."""
    statements = []
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        kept = [a for a in actions if a != action]
        if kept:
            statements.append({**statement, "Action": kept})
    return {**document, "Statement": statements}


def success_step(bucket: str, key: str) -> dict[str, Any]:
    """A command-runner step standing in for the Spark steps: it writes the PCA's _SUCCESS as the nodes' role."""
    code = "import boto3, sys; boto3.client('s3').put_object(Bucket=sys.argv[1], Key=sys.argv[2], Body=b'')"
    return {
        "Name": "write_success",
        "ActionOnFailure": "CANCEL_AND_WAIT",
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": [sys.executable, "-c", code, bucket, key]},
    }


def run_pipeline(landing: Path, run_id: str, s3: BaseClient) -> Run:
    """The DAG's tasks in its order, the teardown whatever happened; see the module docstring.

    Each run uploads an image of its own and removes one that is in S3 but not in the landing folder.
    """
    (landing / "Kiwi" / f"{run_id}.jpg").write_bytes(run_id.encode())
    s3.put_object(Bucket=BUCKET, Key=f"images/Kiwi/gone-{run_id}.jpg", Body=b"gone")
    params = {"reprocess_all": False, "weights": None, "variance": 0.95}
    dag = SimpleNamespace(dag_id="fruits_pipeline")
    context: Any = {"ti": FakeTaskInstance(), "run_id": run_id, "params": params, "dag": dag}
    aws_args = {"aws_conn_id": AWS_CONN_ID, "region_name": REGION}
    sensor_args = {**aws_args, "poke_interval": POKE_SECONDS, "timeout": SENSOR_TIMEOUT_SECONDS}
    denial, cluster_id = None, None
    try:
        config = tasks.check_config.function()
        uploaded = tasks.upload_new_images.function(config)
        tasks.find_reusable_run.function(config, uploaded, run_id=run_id, params=params)
        staged = tasks.stage_artifacts.function(config)
        tasks.check_security_configuration.function(config)
        plan = tasks.plan_run.function(config, staged, run_id=run_id, dag=dag, params=params)
        create_cluster = EmrCreateJobFlowOperator(
            task_id="create_cluster", job_flow_overrides=plan["job_flow_overrides"], emr_conn_id=None, **aws_args
        )
        try:
            cluster_id = create_cluster.execute(context)
        finally:
            cluster_id = cluster_id or context["ti"].pushed.get("return_value")
        steps = [success_step(plan["bucket"], plan["pca_success_key"])]
        step_ids = EmrAddStepsOperator(task_id="add_steps", job_flow_id=cluster_id, steps=steps, **aws_args).execute(
            context
        )
        EmrStepsSensor(task_id="watch_steps", job_flow_id=cluster_id, step_ids=step_ids, **sensor_args).execute(context)
        S3KeySensor(
            task_id="wait_for_output", bucket_name=plan["bucket"], bucket_key=plan["pca_success_key"], **sensor_args
        ).execute(context)
    except AccessDenied as denied:
        denial = denied
    finally:
        if cluster_id:
            try:
                EmrTerminateJobFlowOperator(task_id="terminate_cluster", job_flow_id=cluster_id, **aws_args).execute(
                    context
                )
            except AccessDenied as denied:
                denial = denial or denied
    if cluster_id and denial is None:
        try:
            with access_denied_explained():
                tasks.run_cost(parse_config(config), cluster_id)
        except AccessDenied as denied:
            denial = denied
    return Run(denial, cluster_id)


def cluster_state(emr: BaseClient, cluster_id: str) -> str:
    return emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]


@pytest.fixture(scope="module")
def runs_without(aws: EmbeddedAws, landing: Path) -> Callable[[dict[str, Any], str], Run]:
    """The run without one action of the policy, run once per module for every test that asks."""
    runs: dict[str, Run] = {}

    def run_without(policy: dict[str, Any], action: str) -> Run:
        if action not in runs:
            set_airflow_policy(aws, without(policy, action))
            runs[action] = run_pipeline(landing, f"manual__without_{action.replace(':', '_')}", aws.client("s3"))
        return runs[action]

    return run_without


def test_the_whole_policy_lets_a_run_through(airflow_policy, admin_emr, landing, aws):
    run = run_pipeline(landing, "manual__whole_policy", aws.client("s3"))

    assert run.denial is None
    assert cluster_state(admin_emr, run.cluster_id) in {"TERMINATING", "TERMINATED"}


@pytest.mark.parametrize("action", AIRFLOW_ACTIONS)
def test_a_run_without_an_action_of_the_policy_fails_naming_it(runs_without, airflow_policy, action):
    run = runs_without(airflow_policy, action)

    assert run.denial is not None, f"a run without {action} went through"
    (line,) = str(run.denial).splitlines()
    assert line.startswith(f"AWS denied {action} (")
    assert f"add {action} to the IAM policy {AIRFLOW_POLICY}" in line


@pytest.mark.parametrize("action", ["elasticmapreduce:AddJobFlowSteps", "elasticmapreduce:DescribeCluster"])
def test_the_cluster_is_terminated_when_a_later_call_is_denied(runs_without, airflow_policy, admin_emr, action):
    run = runs_without(airflow_policy, action)

    assert action in str(run.denial)
    assert cluster_state(admin_emr, run.cluster_id) in {"TERMINATING", "TERMINATED"}
