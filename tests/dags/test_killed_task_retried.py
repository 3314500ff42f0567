"""A task whose process is SIGKILLed mid-run is retried by Airflow itself, and the retry creates nothing twice.

The DAG's create_cluster runs as a worker runs it: Airflow's task supervisor forks the task's process,
which the endpoint SIGKILLs right after answering its RunJobFlow (local_aws.faults' caller kill, as a
worker lost or an OOM killer would). The supervisor reports the try's end to the execution API, which
marks it for a retry; Airflow's scheduling queues the retry once its delay is over (tests/dags/scheduling.py).
The retry takes the cluster the killed try started, and the run goes on to its steps and its teardown.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
from botocore.client import BaseClient

from local_aws import EmbeddedAws
from local_aws.faults import FaultPlan, ProcessFault
from tests import deployed_stack
from tests.dags import scheduling
from tests.dags.scheduling import (
    BEFORE_THE_CLUSTER,
    dag_run,
    executor_reports_the_end,
    plan_xcoms,
    run_task,
    schedule,
    supervised_try,
    task_state,
    wait_for_state,
    wait_until_scheduled,
)
from tests.dags.test_faults_survived import plan_for, run_clusters

# The stack deployed on the module's own endpoint, as Airflow sees it (tests/deployed_stack.py).
landing, aws, provisioned, admin_emr = (
    deployed_stack.landing,
    deployed_stack.aws,
    deployed_stack.provisioned,
    deployed_stack.admin_emr,
)
scheduler_dag = scheduling.scheduler_dag
pytestmark = pytest.mark.usefixtures("provisioned")

# create_cluster's retry delay is 30 s: the scheduler queues its retry after that, give or take a pass.
RETRY_TIMEOUT_S = 120


def xcom(run: Any, task_id: str, session: Any) -> Any:
    from airflow.models.xcom import XComModel

    rows = XComModel.get_many(run_id=run.run_id, key="return_value", dag_ids=run.dag_id, task_ids=task_id)
    row = session.scalars(rows).first()
    return None if row is None else XComModel.deserialize_value(row)


def test_a_create_cluster_killed_after_run_job_flow_is_retried_by_airflow_and_takes_the_cluster_it_started(
    aws: EmbeddedAws, admin_emr: BaseClient, scheduler_dag: Any, dag: Any
):
    from airflow.utils.session import create_session

    run_id = "manual__create_cluster_killed_under_airflow"
    plan = plan_for(run_id)
    states = {
        **dict.fromkeys(BEFORE_THE_CLUSTER, "success"),
        "create_cluster_or_reuse": "success",
        "reuse_outputs": "skipped",
    }

    with create_session() as session:
        run = dag_run(scheduler_dag, run_id, states, {"plan_run": plan_xcoms(plan)}, session)
        assert schedule(run, session) == {"create_cluster"}
        aws.faults = FaultPlan(kill_caller=ProcessFault(at="RunJobFlow"))
        try:
            killed_exit = supervised_try(run, "create_cluster", dag, session)
        finally:
            aws.faults = FaultPlan()
        left_by_the_supervisor = task_state(run_id, "create_cluster")
        executor_reports_the_end(run, "create_cluster", session)
        after_kill = task_state(run_id, "create_cluster")
        started = run_clusters(admin_emr, run_id)

        retried = wait_until_scheduled(run, "create_cluster", session, RETRY_TIMEOUT_S)
        retry_exit = supervised_try(run, "create_cluster", dag, session) if retried else None
        session.expire_all()
        retry = run.get_task_instance("create_cluster", session=session)
        created = (retry.state, retry.try_number)
        cluster_id = xcom(run, "create_cluster", session)

        steps_exit = supervised_try(run, "add_steps", dag, session) if "add_steps" in schedule(run, session) else None
        torn_down = run_task(run, "terminate_cluster", dag, session) if cluster_id else None

    assert killed_exit == -signal.SIGKILL
    # Task SDK 1.3.2's supervisor leaves a try killed by a signal running: it sends UP_FOR_RETRY only when the
    # task asked for it (docs/development.md); the scheduler's handling of the executor's report fails the try.
    assert left_by_the_supervisor == "running"
    assert after_kill == "up_for_retry"
    assert len(started) == 1
    assert retried, f"Airflow did not queue the retry within {RETRY_TIMEOUT_S} s"
    assert (retry_exit, *created) == (0, "success", 2)
    assert [cluster_id] == started == run_clusters(admin_emr, run_id)
    assert steps_exit == 0
    assert sorted(step["Name"] for step in admin_emr.list_steps(ClusterId=cluster_id)["Steps"]) == [
        "extract_features",
        "pca",
    ]
    assert torn_down == "success"
    assert wait_for_state(admin_emr, cluster_id, "TERMINATED") == "TERMINATED"
