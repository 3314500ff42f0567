"""The emulated cluster keeps EMR's timeline of itself and its instances, which a run's bill is computed from."""

from __future__ import annotations

import pytest

from fruits_airflow import cost

CORE_AND_PRIMARY = [
    {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1},
    {"InstanceRole": "CORE", "InstanceType": "m5.xlarge", "InstanceCount": 2},
]


@pytest.fixture
def ended_cluster(start_cluster, python_step):
    """A primary and two core nodes that ran one step, then ended."""
    cluster = start_cluster(
        [python_step("nap", "import time; time.sleep(1)")], keep_alive=False, instance_groups=CORE_AND_PRIMARY
    )
    cluster.wait_for_state("TERMINATED")
    return cluster


def instances(emr, cluster_id):
    return emr.list_instances(ClusterId=cluster_id)["Instances"]


def test_instances_provision_until_their_cluster_is_ready(start_cluster, python_step, emr):
    cluster = start_cluster(
        [python_step("nap", "import time; time.sleep(1)")], keep_alive=False, instance_groups=CORE_AND_PRIMARY
    )

    states = {instance["Status"]["State"] for instance in instances(emr, cluster.id)}
    cluster.wait_for_state("RUNNING", "WAITING")
    running = instances(emr, cluster.id)
    cluster.wait_for_state("TERMINATED")

    assert states <= {"PROVISIONING", "BOOTSTRAPPING", "RUNNING"}
    assert {instance["Status"]["State"] for instance in running} == {"RUNNING"}
    assert all("EndDateTime" not in instance["Status"]["Timeline"] for instance in running)


def test_instances_end_with_their_cluster_after_being_ready_when_it_was(ended_cluster, emr):
    timeline = ended_cluster.status()["Timeline"]

    nodes = instances(emr, ended_cluster.id)

    assert len(nodes) == 3
    for node in nodes:
        assert node["Status"]["State"] == "TERMINATED"
        assert node["Status"]["Timeline"]["ReadyDateTime"] == timeline["ReadyDateTime"]
        assert node["Status"]["Timeline"]["EndDateTime"] == timeline["EndDateTime"]
        assert node["Status"]["Timeline"]["CreationDateTime"] <= timeline["ReadyDateTime"]
    groups = emr.list_instance_groups(ClusterId=ended_cluster.id)["InstanceGroups"]
    assert {group["Status"]["State"] for group in groups} == {"TERMINATED"}


def test_the_bill_of_an_emulated_cluster_is_its_nodes_time_at_the_table_s_prices(ended_cluster, emr):
    prices = cost.load_prices()

    bill = cost.cluster_bill(emr, ended_cluster.id, prices, "eu-west-1", wait_seconds=30)

    assert bill["nodes"] == {"m5.xlarge": 3}
    assert bill["markets"] == {"ON_DEMAND": 3}
    assert bill["final"] is True
    # Each node ran a few seconds: EMR bills one minute at least.
    assert bill["node_hours"] == pytest.approx(3 * 60 / 3600, abs=1e-4)
    per_hour = prices.node_price("eu-west-1", "m5.xlarge").per_hour("ON_DEMAND")
    assert bill["usd"] == pytest.approx(bill["node_hours"] * per_hour, abs=1e-4)
    assert bill["cluster"]["id"] == ended_cluster.id
    assert bill["cluster"]["created"] <= bill["cluster"]["ready"] <= bill["cluster"]["ended"]
