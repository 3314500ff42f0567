"""The teardown ends the run's cluster even when create_cluster failed after RunJobFlow, as Airflow schedules it.

Airflow's own scheduling decides (``DagRun.update_state`` on a migrated throwaway database, the DAG as
the scheduler reads it from there), and its own in-process task runner runs the DAG's ``terminate_cluster``
(the one ``airflow dags test`` uses), its XComs resolved by Airflow, against the stack deployed on an
embedded endpoint. The tasks before the cluster are not run but recorded as done, with the XComs the
teardown reads; the cluster is the one a try of create_cluster started before it was killed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.client import BaseClient

from local_aws import EmbeddedAws
from tests import deployed_stack
from tests.dags.test_faults_survived import create_cluster_killed_after_run_job_flow, plan_for, run_clusters

# The stack deployed on the module's own endpoint, as Airflow sees it (tests/deployed_stack.py).
landing, aws, provisioned, admin_emr = (
    deployed_stack.landing,
    deployed_stack.aws,
    deployed_stack.provisioned,
    deployed_stack.admin_emr,
)
pytestmark = pytest.mark.usefixtures("provisioned")

DAG_ID = "fruits_pipeline"
BEFORE_THE_CLUSTER = (
    "check_config",
    "upload_new_images",
    "stage_artifacts",
    "check_security_configuration",
    "find_reusable_run",
    "plan_run",
)


@pytest.fixture(scope="module")
def scheduler_dag(dagbag) -> Iterator[Any]:
    """The DAG as the scheduler reads it: parsed from dags/, written to a migrated database, read back."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.db import initdb
    from airflow.utils.session import create_session

    initdb()
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(dagbag, "dags-folder", None)
    with create_session() as session:
        yield DBDagBag().get_latest_version_of_dag(DAG_ID, session=session)


def dag_run(scheduler_dag: Any, run_id: str, states: dict[str, str], xcoms: dict[str, dict[str, Any]], session: Any):
    """A manual run of the DAG whose tasks ``states`` names are in those states, with those tasks' XComs."""
    from airflow._shared.timezones import timezone
    from airflow.models.dagrun import get_or_create_dagrun
    from airflow.models.xcom import XComModel
    from airflow.utils.types import DagRunTriggeredByType

    now = timezone.utcnow()
    run = get_or_create_dagrun(
        dag=scheduler_dag,
        run_id=run_id,
        logical_date=now,
        data_interval=None,
        run_after=now,
        start_date=now,
        conf={},
        triggered_by=DagRunTriggeredByType.TEST,
        triggering_user_name="test",
        session=session,
    )
    for ti in run.get_task_instances(session=session):
        if ti.task_id in states:
            ti.state = states[ti.task_id]
            ti.try_number = 1
    session.flush()
    for task_id, values in xcoms.items():
        for key, value in values.items():
            # As the task SDK pushes it: a JSON value, stored as it is (the execution API's own call).
            XComModel.set(
                key=key, value=value, dag_id=DAG_ID, task_id=task_id, run_id=run_id, serialize=False, session=session
            )
    session.commit()
    return run


def schedule(run: Any, session: Any) -> set[str]:
    """Scheduler passes over the run until it would queue tasks or nothing changes; the ids of those tasks.

    A pass may only mark tasks upstream_failed or skipped, and the next one then decides on their downstreams.
    """
    before = None
    while (now := states_of(run, session)) != before:
        before = now
        schedulable, _ = run.update_state(session=session)
        session.commit()
        if schedulable:
            return {ti.task_id for ti in schedulable}
    return set()


def run_task(run: Any, task_id: str, dag: Any, session: Any) -> str:
    """Run one scheduled task of ``run`` as ``airflow dags test`` does, in this process; its final state."""
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.state import TaskInstanceState

    ti = run.get_task_instance(task_id, session=session)
    ti.try_number += 1
    ti.state = TaskInstanceState.SCHEDULED
    session.commit()
    _run_task(ti=ti, task=dag.get_task(task_id))
    session.expire_all()
    return run.get_task_instance(task_id, session=session).state


def states_of(run: Any, session: Any) -> dict[str, str | None]:
    session.expire_all()
    return {ti.task_id: ti.state for ti in run.get_task_instances(session=session)}


def wait_for_state(emr: BaseClient, cluster_id: str, state: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while (now := emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]) != state:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return now


def plan_xcoms(plan: dict[str, Any]) -> dict[str, Any]:
    """plan_run's XComs: its dict, and each key on its own (its output is used by key, multiple_outputs)."""
    return {"return_value": plan, **plan}


def test_a_create_cluster_that_failed_after_run_job_flow_still_gets_its_cluster_terminated(
    aws: EmbeddedAws, admin_emr: BaseClient, scheduler_dag: Any, dag: Any
):
    from airflow.utils.session import create_session

    run_id = "manual__create_cluster_failed_after_run_job_flow"
    plan = plan_for(run_id)
    create_cluster_killed_after_run_job_flow(aws, plan, run_id)
    (started,) = run_clusters(admin_emr, run_id)
    states = {
        **dict.fromkeys(BEFORE_THE_CLUSTER, "success"),
        "create_cluster_or_reuse": "success",
        "reuse_outputs": "skipped",
        "create_cluster": "failed",  # its last try, killed as the first was
    }

    with create_session() as session:
        run = dag_run(scheduler_dag, run_id, states, {"plan_run": plan_xcoms(plan)}, session)
        scheduled = schedule(run, session)
        ended = run_task(run, "terminate_cluster", dag, session) if "terminate_cluster" in scheduled else None

    assert "terminate_cluster" in scheduled, f"the teardown was not scheduled: {states_of(run, session)}"
    assert ended == "success"
    assert wait_for_state(admin_emr, started, "TERMINATED") == "TERMINATED"


def test_the_reuse_branch_skips_the_teardown_and_starts_no_cluster(admin_emr: BaseClient, scheduler_dag: Any, dag: Any):
    from airflow.utils.session import create_session

    run_id = "manual__outputs_reused"
    found = {"reused_run_id": "manual__earlier", "reason": "Nothing changed since run manual__earlier."}
    states = {**dict.fromkeys(BEFORE_THE_CLUSTER, "success")}

    with create_session() as session:
        run = dag_run(scheduler_dag, run_id, states, {"find_reusable_run": {"return_value": found}}, session)
        assert schedule(run, session) == {"create_cluster_or_reuse"}
        branch = run_task(run, "create_cluster_or_reuse", dag, session)
        scheduled = schedule(run, session)
        after = states_of(run, session)

    assert branch == "success"
    assert scheduled == {"reuse_outputs"}
    assert after["create_cluster"] == after["terminate_cluster"] == "skipped"
    assert run_clusters(admin_emr, run_id) == []
