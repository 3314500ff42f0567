"""A run's clusters and steps, found on EMR by the run's tags, so that a retried task never creates twice.

A task may die after EMR acted on its request (its worker lost, its process killed): RunJobFlow
answered but the cluster's id never reached XCom, AddJobFlowSteps answered but the step ids did not.
Its retry, and the teardown, look on EMR for what the run already has, instead of trusting XCom alone:

- a run's clusters are the active ones named ``<dag id> ...`` whose tags ``airflow:dag_id`` and
  ``airflow:run_id`` are the run's (fruits_airflow.cluster tags each cluster so);
- a cluster's run steps are found by name: a run's cluster runs that run's steps only.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.client import BaseClient

from fruits_airflow.cluster import run_tags

log = logging.getLogger(__name__)

ACTIVE_CLUSTER_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"]


def active_run_clusters(emr_client: BaseClient, dag_id: str, run_id: str) -> list[str]:
    """The ids of the run's active clusters (usually none or one), oldest first."""
    wanted = run_tags(dag_id, run_id)
    found = []
    for page in emr_client.get_paginator("list_clusters").paginate(ClusterStates=ACTIVE_CLUSTER_STATES):
        for summary in page["Clusters"]:
            if not summary["Name"].startswith(f"{dag_id} "):
                continue
            tags = emr_client.describe_cluster(ClusterId=summary["Id"])["Cluster"].get("Tags", [])
            if all(tag in tags for tag in wanted):
                found.append((summary["Status"]["Timeline"]["CreationDateTime"], summary["Id"]))
    return [cluster_id for _, cluster_id in sorted(found)]


def steps_added(emr_client: BaseClient, cluster_id: str, steps: list[dict[str, Any]]) -> list[str] | None:
    """The ids of ``steps`` on the cluster, in ``steps``' order, when an earlier try added them all; else None."""
    newest: dict[str, str] = {}
    for page in emr_client.get_paginator("list_steps").paginate(ClusterId=cluster_id):
        for step in page["Steps"]:  # newest first
            newest.setdefault(step["Name"], step["Id"])
    names = [step["Name"] for step in steps]
    if not all(name in newest for name in names):
        return None
    return [newest[name] for name in names]
