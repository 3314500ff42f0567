"""The DAG's tasks and operators survive AWS's bad days (local_aws.faults) without creating anything twice.

Runs as in tests/cloudformation/test_enforced_airflow_policy.py: the DAG's own task callables and
operators, in this process, as the role ``aws_default`` assumes under the stack's policies, with a
trivial command-runner step in place of Spark. Each fault has a test that fails without its recovery.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from fruits_airflow import aws_retries, tasks
from fruits_airflow.config import AWS_CONN_ID
from fruits_airflow.operators import EmrAddStepsOperator, EmrCreateJobFlowOperator, EmrTerminateJobFlowOperator
from local_aws import EmbeddedAws
from local_aws.faults import FaultPlan, ProcessFault
from tests import deployed_stack
from tests.cloudformation.test_enforced_airflow_policy import (
    FakeTaskInstance,
    run_pipeline,
    success_step,
)
from tests.suite import PLUGINS_DIR, REPO_ROOT, SPARK_JOBS_DIR
from tools.local_airflow import BUCKET, REGION

DAG = SimpleNamespace(dag_id="fruits_pipeline")
AWS_ARGS = {"aws_conn_id": AWS_CONN_ID, "region_name": REGION}
PARAMS = {"reprocess_all": False, "weights": None, "variance": 0.95}
# More files than the upload's 16 threads have in flight when the fourth PUT kills it.
N_PEACHES = 100
ACTIVE = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"]

# The stack deployed on the module's own endpoint, as Airflow sees it (tests/deployed_stack.py).
landing, aws, provisioned, admin_emr = (
    deployed_stack.landing,
    deployed_stack.aws,
    deployed_stack.provisioned,
    deployed_stack.admin_emr,
)
pytestmark = pytest.mark.usefixtures("provisioned")


@pytest.fixture(autouse=True)
def no_faults_afterwards(aws: EmbeddedAws) -> Iterator[None]:
    yield
    aws.faults = FaultPlan()


def context(run_id: str) -> Any:
    return {"ti": FakeTaskInstance(), "run_id": run_id, "params": PARAMS, "dag": DAG}


def plan_for(run_id: str) -> dict[str, Any]:
    """What plan_run gives the run's cluster operators."""
    config = tasks.check_config.function()
    staged = tasks.stage_artifacts.function(config)
    return tasks.plan_run.function(config, staged, run_id=run_id, dag=DAG, params=PARAMS)


def create_cluster(plan: dict[str, Any]) -> EmrCreateJobFlowOperator:
    return EmrCreateJobFlowOperator(
        task_id="create_cluster", job_flow_overrides=plan["job_flow_overrides"], emr_conn_id=None, **AWS_ARGS
    )


def run_clusters(emr: BaseClient, run_id: str, states: list[str] | None = None) -> list[str]:
    """The ids of the clusters tagged with the run, as an operator on AWS's console would find them."""
    found = []
    for summary in emr.list_clusters(**({"ClusterStates": states} if states else {}))["Clusters"]:
        tags = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"].get("Tags", [])
        if {"Key": "airflow:run_id", "Value": run_id} in tags:
            found.append(summary["Id"])
    return found


def test_a_run_through_s3_errors_and_emr_throttling_succeeds(aws, landing, admin_emr):
    aws.faults = FaultPlan(seed=26, s3_error_share=0.5, emr_throttle_share=0.5)

    run = run_pipeline(landing, "manual__through_faults", aws.client("s3"))

    assert run.denial is None
    assert admin_emr.describe_cluster(ClusterId=run.cluster_id)["Cluster"]["Status"]["State"] in {
        "TERMINATING",
        "TERMINATED",
    }
    assert {fault.kind for fault in aws.injected} >= {"s3 error", "emr throttling"}


def test_without_retries_the_same_faults_fail_the_first_call(aws, landing, monkeypatch):
    """The control of the test above: the faults bite any call that is not retried."""
    monkeypatch.setattr(aws_retries, "AWS_RETRIES", {"retries": {"mode": "standard", "total_max_attempts": 1}})
    aws.faults = FaultPlan(seed=26, s3_error_share=1.0, emr_throttle_share=1.0)

    with pytest.raises(ClientError, match=r"SlowDown|InternalError"):
        run_pipeline(landing, "manual__without_retries", aws.client("s3"))


def create_cluster_killed_after_run_job_flow(aws: EmbeddedAws, plan: dict[str, Any], run_id: str) -> None:
    """A try of create_cluster whose process is SIGKILLed once RunJobFlow answered: the cluster exists, its id
    reached no XCom."""
    aws.faults = FaultPlan(kill_caller=ProcessFault(at="RunJobFlow"))
    code = (
        "import json, sys; from types import SimpleNamespace; from unittest.mock import MagicMock\n"
        "from fruits_airflow.operators import EmrCreateJobFlowOperator\n"
        "EmrCreateJobFlowOperator(task_id='create_cluster', job_flow_overrides=json.loads(sys.argv[1]),"
        " emr_conn_id=None, region_name=sys.argv[3]).execute("
        "{'ti': MagicMock(), 'run_id': sys.argv[2], 'dag': SimpleNamespace(dag_id='fruits_pipeline')})"
    )
    python_path = ":".join(map(str, (SPARK_JOBS_DIR, PLUGINS_DIR, REPO_ROOT)))
    killed = subprocess.run(
        [sys.executable, "-c", code, json.dumps(plan["job_flow_overrides"]), run_id, REGION],
        env={**os.environ, "PYTHONPATH": python_path},
        check=False,
        timeout=120,
    )
    aws.faults = FaultPlan()
    assert killed.returncode == -9, "the try was not killed"


def test_a_retry_of_create_cluster_killed_after_run_job_flow_takes_the_cluster_it_started(aws, admin_emr):
    run_id = "manual__create_cluster_killed"
    plan = plan_for(run_id)
    create_cluster_killed_after_run_job_flow(aws, plan, run_id)
    (started,) = run_clusters(admin_emr, run_id)

    second_try = create_cluster(plan).execute(context(run_id))

    assert second_try == started
    assert run_clusters(admin_emr, run_id) == [started]
    EmrTerminateJobFlowOperator(task_id="terminate_cluster", job_flow_id=started, **AWS_ARGS).execute(context(run_id))


def test_the_teardown_terminates_every_active_cluster_of_the_run(aws, admin_emr):
    run_id = "manual__two_clusters"
    plan = plan_for(run_id)
    first = admin_emr.run_job_flow(**plan["job_flow_overrides"])["JobFlowId"]
    second = admin_emr.run_job_flow(**plan["job_flow_overrides"])["JobFlowId"]

    EmrTerminateJobFlowOperator(task_id="terminate_cluster", job_flow_id=first, **AWS_ARGS).execute(context(run_id))

    assert run_clusters(admin_emr, run_id, ACTIVE) == []
    assert sorted(run_clusters(admin_emr, run_id)) == sorted([first, second])


def test_a_retry_of_add_steps_returns_the_steps_an_earlier_try_added(aws, admin_emr):
    run_id = "manual__add_steps_twice"
    plan = plan_for(run_id)
    cluster_id = create_cluster(plan).execute(context(run_id))
    steps = [success_step(plan["bucket"], plan["pca_success_key"])]
    add_steps = EmrAddStepsOperator(task_id="add_steps", job_flow_id=cluster_id, steps=steps, **AWS_ARGS)

    first_try = add_steps.execute(context(run_id))
    second_try = add_steps.execute(context(run_id))

    assert second_try == first_try
    assert len(admin_emr.list_steps(ClusterId=cluster_id)["Steps"]) == 1
    EmrTerminateJobFlowOperator(task_id="terminate_cluster", job_flow_id=cluster_id, **AWS_ARGS).execute(
        context(run_id)
    )


def test_an_upload_killed_midway_is_completed_by_the_next_try(aws, landing):
    peaches = landing / "Peach"
    peaches.mkdir()
    for n in range(N_PEACHES):
        (peaches / f"{n}.jpg").write_bytes(f"peach {n}".encode() * 100)
    aws.faults = FaultPlan(kill_caller=ProcessFault(at=f"PUT /{BUCKET}/images/Peach/", after_requests=4))
    code = "from fruits_airflow import tasks; tasks.upload_new_images.function(tasks.check_config.function())"
    python_path = ":".join(map(str, (SPARK_JOBS_DIR, PLUGINS_DIR, REPO_ROOT)))
    first_try = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": python_path}, check=False, timeout=120
    )
    assert first_try.returncode == -9, "the first try was not killed"
    s3 = aws.client("s3")
    landed = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="images/Peach/").get("Contents", [])}
    aws.faults = FaultPlan()

    second_try = tasks.upload_new_images.function(tasks.check_config.function())

    assert 4 <= len(landed) < N_PEACHES
    assert second_try["uploaded"] == N_PEACHES - len(landed)
    for n in range(N_PEACHES):
        body = s3.get_object(Bucket=BUCKET, Key=f"images/Peach/{n}.jpg")["Body"].read()
        assert body == f"peach {n}".encode() * 100
