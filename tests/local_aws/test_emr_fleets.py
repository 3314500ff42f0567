"""Instance fleets on the endpoint: validated as EMR validates them, provisioned by type and market, with
spot capacity that can run short (local_aws.emr_fleets), and billed from the same timeline as groups."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from fruits_airflow import cost
from local_aws import EmbeddedAws
from local_aws import __main__ as local_aws_cli
from local_aws.emr_fleets import SPOT_CAPACITY_VARIABLE, SpotMarket

SPOT: dict[str, Any] = {
    "TimeoutDurationMinutes": 10,
    "TimeoutAction": "SWITCH_TO_ON_DEMAND",
    "AllocationStrategy": "capacity-optimized",
}
SPOT_THEN_ON_DEMAND = {"SpotSpecification": SPOT, "OnDemandSpecification": {"AllocationStrategy": "lowest-price"}}
PRIMARY = {
    "Name": "primary",
    "InstanceFleetType": "MASTER",
    "TargetOnDemandCapacity": 1,
    "InstanceTypeConfigs": [{"InstanceType": "m5.xlarge"}],
}


def core_fleet(spot: int = 2, on_demand: int = 0, **changes: Any) -> dict[str, Any]:
    return {
        "Name": "core",
        "InstanceFleetType": "CORE",
        "TargetSpotCapacity": spot,
        "TargetOnDemandCapacity": on_demand,
        "InstanceTypeConfigs": [{"InstanceType": "m5.xlarge"}, {"InstanceType": "m5a.xlarge"}],
        "LaunchSpecifications": SPOT_THEN_ON_DEMAND,
        **changes,
    }


@pytest.fixture
def spot_capacity(aws: EmbeddedAws) -> Iterator[None]:
    """Each test sets the region's spot capacity it needs; the module's endpoint gets any amount back."""
    yield
    aws.spot_capacity = None


@pytest.fixture
def run_fleets(emr, bucket, node_role, spot_capacity):
    """Start a cluster of ``fleets`` that ends once ready (no steps); returns its id."""

    def run(*fleets: dict[str, Any], **instances: Any) -> str:
        return emr.run_job_flow(
            Name="local-aws-fleets",
            ReleaseLabel="emr-7.13.0",
            LogUri=f"s3://{bucket}/logs/",
            Instances={"InstanceFleets": list(fleets), "KeepJobFlowAliveWhenNoSteps": False, **instances},
            JobFlowRole=node_role,
            ServiceRole="EMR_DefaultRole",
        )["JobFlowId"]

    return run


def nodes(emr, cluster_id: str, **filters: str) -> Counter[tuple[str, str]]:
    instances = emr.list_instances(ClusterId=cluster_id, **filters)["Instances"]
    return Counter((instance["InstanceType"], instance["Market"]) for instance in instances)


def fleets_by_type(emr, cluster_id: str) -> dict[str, dict[str, Any]]:
    return {
        fleet["InstanceFleetType"]: fleet for fleet in emr.list_instance_fleets(ClusterId=cluster_id)["InstanceFleets"]
    }


def test_a_fleet_cluster_gets_spot_core_nodes_and_an_on_demand_primary(run_fleets, emr):
    cluster_id = run_fleets(PRIMARY, core_fleet(spot=2))

    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["InstanceCollectionType"] == "INSTANCE_FLEET"
    assert nodes(emr, cluster_id, InstanceFleetType="MASTER") == {("m5.xlarge", "ON_DEMAND"): 1}
    assert sum(nodes(emr, cluster_id, InstanceFleetType="CORE").values()) == 2
    assert {market for _, market in nodes(emr, cluster_id, InstanceFleetType="CORE")} == {"SPOT"}
    core = fleets_by_type(emr, cluster_id)["CORE"]
    assert (core["ProvisionedSpotCapacity"], core["ProvisionedOnDemandCapacity"]) == (2, 0)
    assert core["LaunchSpecifications"]["SpotSpecification"]["AllocationStrategy"] == "capacity-optimized"


def test_spot_goes_to_the_type_with_the_most_capacity_left(aws, run_fleets, emr):
    aws.spot_capacity = {"m5.xlarge": 1, "m5a.xlarge": 5}

    cluster_id = run_fleets(PRIMARY, core_fleet(spot=2))

    assert nodes(emr, cluster_id, InstanceFleetType="CORE") == {("m5a.xlarge", "SPOT"): 2}
    assert aws.spot_capacity == {"m5.xlarge": 1, "m5a.xlarge": 3}


def test_when_spot_is_short_the_rest_comes_on_demand(aws, run_fleets, emr):
    aws.spot_capacity = {"m5a.xlarge": 1}

    cluster_id = run_fleets(PRIMARY, core_fleet(spot=3))

    assert nodes(emr, cluster_id, InstanceFleetType="CORE") == {
        ("m5a.xlarge", "SPOT"): 1,
        ("m5.xlarge", "ON_DEMAND"): 2,
    }
    core = fleets_by_type(emr, cluster_id)["CORE"]
    assert (core["ProvisionedSpotCapacity"], core["ProvisionedOnDemandCapacity"]) == (1, 2)


def test_when_spot_is_short_terminate_cluster_ends_it_before_it_starts(aws, run_fleets, emr):
    aws.spot_capacity = {}
    terminate = {"SpotSpecification": {"TimeoutDurationMinutes": 5, "TimeoutAction": "TERMINATE_CLUSTER"}}

    cluster_id = run_fleets(PRIMARY, core_fleet(spot=1, LaunchSpecifications=terminate))

    status = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
    assert (status["State"], status["StateChangeReason"]["Code"]) == (
        "TERMINATED_WITH_ERRORS",
        "INSTANCE_FLEET_TIMEOUT",
    )
    assert "ReadyDateTime" not in status["Timeline"]


def test_weighted_capacity_counts_units_not_instances(run_fleets, emr):
    big = core_fleet(spot=4, InstanceTypeConfigs=[{"InstanceType": "m5.2xlarge", "WeightedCapacity": 2}])

    cluster_id = run_fleets(PRIMARY, big)

    assert nodes(emr, cluster_id, InstanceFleetType="CORE") == {("m5.2xlarge", "SPOT"): 2}


def test_fleet_instances_follow_the_cluster_s_timeline_and_are_billed_by_market(aws, run_fleets, emr, wait_until):
    aws.spot_capacity = {"m5.xlarge": 1}
    cluster_id = run_fleets(PRIMARY, core_fleet(spot=2))
    wait_until(lambda: emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"] == "TERMINATED")

    bill = cost.cluster_bill(emr, cluster_id, cost.load_prices(), "eu-west-1", wait_seconds=30)

    assert bill["final"] is True
    assert bill["cluster"]["instance_collection"] == "INSTANCE_FLEET"
    assert bill["nodes"] == {"m5.xlarge": 3}
    assert bill["markets"] == {"ON_DEMAND": 2, "SPOT": 1}
    prices = cost.load_prices().node_price("eu-west-1", "m5.xlarge")
    minute = 60 / 3600
    assert bill["usd"] == pytest.approx(minute * (2 * prices.per_hour("ON_DEMAND") + prices.per_hour("SPOT")), abs=1e-4)
    for fleet in fleets_by_type(emr, cluster_id).values():
        assert fleet["Status"]["State"] == "TERMINATED"
        assert fleet["Status"]["Timeline"]["ReadyDateTime"] <= fleet["Status"]["Timeline"]["EndDateTime"]


def test_a_group_cluster_has_no_fleets_and_a_fleet_cluster_no_groups(run_fleets, start_cluster, emr):
    fleet_cluster = run_fleets(PRIMARY)
    group_cluster = start_cluster([], keep_alive=False)

    assert emr.describe_cluster(ClusterId=group_cluster.id)["Cluster"]["InstanceCollectionType"] == "INSTANCE_GROUP"
    with pytest.raises(ClientError, match="Use the ListInstanceFleets operation instead"):
        emr.list_instance_groups(ClusterId=fleet_cluster)
    with pytest.raises(ClientError, match="Use the ListInstanceGroups operation instead"):
        emr.list_instance_fleets(ClusterId=group_cluster.id)


GROUPS = [{"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1}]


@pytest.mark.parametrize(
    ("fleets", "instances", "refusal"),
    [
        ([PRIMARY], {"InstanceGroups": GROUPS}, "mutually exclusive"),
        ([core_fleet()], {}, "exactly one MASTER instance fleet"),
        ([PRIMARY, PRIMARY], {}, "exactly one MASTER instance fleet"),
        ([{**PRIMARY, "TargetSpotCapacity": 1}], {}, "exactly one of TargetOnDemandCapacity and TargetSpotCapacity"),
        ([{**PRIMARY, "TargetOnDemandCapacity": 2}], {}, "set to 1"),
        ([PRIMARY, core_fleet(spot=0)], {}, "must be above 0"),
        ([PRIMARY, core_fleet(InstanceTypeConfigs=[{"InstanceType": "m5.xlarge", "WeightedCapacity": 0}])], {}, "1 or"),
        ([PRIMARY, core_fleet(InstanceTypeConfigs=[])], {}, "at least one InstanceTypeConfig"),
        (
            [
                PRIMARY,
                core_fleet(
                    LaunchSpecifications={},
                    InstanceTypeConfigs=[{"InstanceType": f"m5.{n}xlarge"} for n in range(2, 8)],
                ),
            ],
            {},
            "the maximum is 5",
        ),
        (
            [
                PRIMARY,
                core_fleet(LaunchSpecifications={"SpotSpecification": {**SPOT, "TimeoutDurationMinutes": 2}}),
            ],
            {},
            "between 5 and 1440",
        ),
        (
            [
                PRIMARY,
                core_fleet(LaunchSpecifications={"SpotSpecification": {**SPOT, "TimeoutAction": "WAIT"}}),
            ],
            {},
            "TimeoutAction must be one of",
        ),
        (
            [PRIMARY, core_fleet(LaunchSpecifications={"OnDemandSpecification": {"AllocationStrategy": "cheapest"}})],
            {},
            "on-demand AllocationStrategy",
        ),
    ],
)
def test_emr_refuses_a_bad_fleet_request(run_fleets, fleets, instances, refusal):
    with pytest.raises(ClientError, match="ValidationException") as refused:
        run_fleets(*fleets, **instances)

    assert refusal in str(refused.value)


@pytest.mark.parametrize("text", ["{bad", '{"m5.xlarge": -1}', '["m5.xlarge"]'])
def test_serve_with_a_bad_spot_capacity_exits_with_one_clear_line(tmp_path, capsys, text):
    assert local_aws_cli.main(["serve", "--state-dir", str(tmp_path), "--spot-capacity", text]) == 2

    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("local_aws: --spot-capacity ")


def test_the_spot_capacity_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(SPOT_CAPACITY_VARIABLE, '{"m5.xlarge": 0}')

    assert SpotMarket.from_environment().capacity == {"m5.xlarge": 0}
