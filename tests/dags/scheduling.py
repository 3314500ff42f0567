"""Airflow's own scheduling and task running, without a scheduler process: for tests of how a run recovers.

A DAG run lives in the suite's throwaway Airflow database, migrated once; the DAG is parsed from dags/ and
read back as the scheduler reads it. :func:`schedule` makes the scheduler's decisions (``DagRun.update_state``);
a scheduled task runs either as ``airflow dags test`` runs it, in this process (:func:`run_task`), or as a
worker runs it (:func:`supervised_try`): Airflow's task supervisor forks the task's own process and reports
how it ended, a signal included, to the execution API, which decides on a retry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from botocore.client import BaseClient

DAG_ID = "fruits_pipeline"
DAG_FILE = "fruits_pipeline.py"
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


def dag_run(
    scheduler_dag: Any, run_id: str, states: dict[str, str], xcoms: dict[str, dict[str, Any]], session: Any
) -> Any:
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


def supervised_try(run: Any, task_id: str, dag: Any, session: Any) -> int:
    """One try of a scheduled task as a worker runs it: Airflow's supervisor forks the task's process (which
    parses dags/ itself) and reports its end to the execution API (in this process); the process's exit code."""
    from airflow.sdk.api.datamodels._generated import BundleInfo
    from airflow.sdk.api.datamodels._generated import TaskInstance as TaskInstanceSDK
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor, supervise_task
    from airflow.utils.state import TaskInstanceState

    ti = run.get_task_instance(task_id, session=session)
    ti.try_number += 1
    ti.state = TaskInstanceState.QUEUED
    session.commit()
    workload = TaskInstanceSDK(
        id=UUID(str(ti.id)),
        task_id=ti.task_id,
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        try_number=ti.try_number,
        map_index=ti.map_index,
        dag_version_id=UUID(str(ti.dag_version_id)),
    )
    exit_code = supervise_task(
        ti=workload,
        bundle_info=BundleInfo(name="dags-folder"),
        dag_rel_path=DAG_FILE,
        token="",
        # The execution API in this process, on this database (what dags test's own runner talks to).
        client=InProcessTestSupervisor._api_client(dag),
    )
    session.commit()  # a new transaction, to see what the execution API wrote
    session.expire_all()
    return exit_code


def executor_reports_the_end(run: Any, task_id: str, session: Any) -> None:
    """What the LocalExecutor and the scheduler do once a workload's supervisor returned: the executor reports
    the workload done (LocalExecutor says SUCCESS whatever the exit code), and the scheduler's
    ``process_executor_events`` finds the task still running and fails the try (a retry if one is left)."""
    from airflow.executors.local_executor import LocalExecutor
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.state import TaskInstanceState

    executor = LocalExecutor()
    executor.event_buffer[run.get_task_instance(task_id, session=session).key] = (TaskInstanceState.SUCCESS, None)
    SchedulerJobRunner.process_executor_events(
        executor=executor, job_id=None, scheduler_dag_bag=DBDagBag(), session=session
    )
    session.commit()


def task_state(run_id: str, task_id: str) -> str | None:
    """The state of a task of the run, read on a connection of its own (Airflow's sessions are one per thread)."""
    from airflow import settings
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    with Session(settings.engine) as session:
        return session.scalar(
            select(TaskInstance.state).where(TaskInstance.run_id == run_id, TaskInstance.task_id == task_id)
        )


def wait_until_scheduled(run: Any, task_id: str, session: Any, timeout: float) -> bool:
    """Whether the scheduler queues ``task_id`` within ``timeout`` seconds (a retry waits its retry delay)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if task_id in schedule(run, session):
            return True
        time.sleep(2)
    return False
