"""The teardown ends the run's cluster even when create_cluster failed after RunJobFlow, as Airflow schedules it.

Airflow's own scheduling decides (tests/dags/scheduling.py), and its own in-process task runner runs the
DAG's ``terminate_cluster`` (the one ``airflow dags test`` uses), its XComs resolved by Airflow, against the
stack deployed on an embedded endpoint. The tasks before the cluster are not run but recorded as done,
with the XComs the teardown reads; the cluster is the one a try of create_cluster started before it was
killed.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.client import BaseClient

from local_aws import EmbeddedAws
from tests import deployed_stack
from tests.dags import scheduling
from tests.dags.scheduling import BEFORE_THE_CLUSTER, dag_run, plan_xcoms, run_task, schedule, states_of, wait_for_state
from tests.dags.test_faults_survived import create_cluster_killed_after_run_job_flow, plan_for, run_clusters

# The stack deployed on the module's own endpoint, as Airflow sees it (tests/deployed_stack.py).
landing, aws, provisioned, admin_emr = (
    deployed_stack.landing,
    deployed_stack.aws,
    deployed_stack.provisioned,
    deployed_stack.admin_emr,
)
scheduler_dag = scheduling.scheduler_dag
pytestmark = pytest.mark.usefixtures("provisioned")


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
