"""A run's bill: node-hours from EMR's timeline of each instance, priced from prices.json and the Variable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fruits_airflow import cost
from fruits_airflow.config import ConfigError, parse_config

START = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
REGION = "eu-west-1"


def node(kind: str = "m5.xlarge", market: str = "ON_DEMAND", minutes: float | None = 30) -> cost.Node:
    return cost.Node(kind, market, START, None if minutes is None else START + timedelta(minutes=minutes))


def test_each_node_is_billed_its_time_at_its_type_and_market_s_price():
    prices = cost.load_prices()
    nodes = [node(), node(market="SPOT"), node(market="SPOT")]

    bill = cost.bill(nodes, prices, REGION, now=START)

    on_demand = prices.node_price(REGION, "m5.xlarge").per_hour("ON_DEMAND")
    spot = prices.node_price(REGION, "m5.xlarge").per_hour("SPOT")
    assert spot < on_demand
    assert bill["usd"] == pytest.approx(0.5 * on_demand + 2 * 0.5 * spot, abs=1e-3)
    assert (bill["node_hours"], bill["nodes"], bill["markets"]) == (1.5, {"m5.xlarge": 3}, {"ON_DEMAND": 1, "SPOT": 2})
    assert [(line["market"], line["nodes"]) for line in bill["lines"]] == [("ON_DEMAND", 1), ("SPOT", 2)]
    assert bill["final"] is True


def test_a_node_is_billed_one_minute_at_least():
    bill = cost.bill([node(minutes=0.1)], cost.load_prices(), REGION, now=START)

    assert bill["node_hours"] == pytest.approx(1 / 60, abs=1e-4)


def test_a_node_still_running_is_billed_until_now_and_the_bill_is_not_final():
    bill = cost.bill([node(minutes=None)], cost.load_prices(), REGION, now=START + timedelta(hours=2))

    assert bill["node_hours"] == 2
    assert bill["final"] is False


def test_a_run_without_a_cluster_costs_nothing():
    bill = cost.no_bill(cost.load_prices(), REGION)

    assert (bill["usd"], bill["node_hours"], bill["nodes"], bill["lines"]) == (0, 0, {}, [])


def test_the_table_says_when_its_prices_were_read():
    assert datetime.fromisoformat(cost.load_prices().read_on)


def test_the_variable_overrides_a_price_and_keeps_the_others(variable):
    config = parse_config({**variable, "prices": {REGION: {"m5.xlarge": {"ec2_spot": 0.05}}}})

    price = cost.load_prices(config.prices).node_price(REGION, "m5.xlarge")

    assert price.ec2_spot == 0.05
    assert price.ec2 == cost.load_prices().node_price(REGION, "m5.xlarge").ec2


def test_the_variable_adds_a_type_the_table_lacks(variable):
    fields = {"ec2": 0.3, "emr": 0.07, "ec2_spot": 0.1, "ebs": 0.01}
    config = parse_config({**variable, "prices": {"eu-north-1": {"c5.2xlarge": fields}}})

    assert cost.load_prices(config.prices).node_price("eu-north-1", "c5.2xlarge").ec2 == 0.3


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        ({REGION: {"m5.xlarge": {"ec2": -1}}}, "must be USD per hour >= 0"),
        ({REGION: {"m5.xlarge": {"gpu": 1}}}, "must be an object of ec2, emr, ec2_spot, ebs"),
        ([], "must be an object region -> instance type -> prices"),
    ],
)
def test_a_bad_price_override_is_refused_naming_it(variable, prices, message):
    with pytest.raises(ConfigError, match="key 'prices'") as error:
        parse_config({**variable, "prices": prices})

    assert message in str(error.value)


def test_a_type_new_to_the_table_needs_every_price(variable):
    config = parse_config({**variable, "prices": {REGION: {"c5.2xlarge": {"ec2": 0.3}}}})

    with pytest.raises(ConfigError, match=r"No price for c5\.2xlarge in eu-west-1"):
        cost.load_prices(config.prices).node_price(REGION, "c5.2xlarge")


def test_a_type_without_a_price_is_refused_in_one_line_naming_the_variable_key():
    with pytest.raises(ConfigError) as error:
        cost.load_prices().node_price("eu-north-1", "m5.xlarge")

    (line,) = str(error.value).splitlines()
    assert line.startswith("No price for m5.xlarge in eu-north-1")
    assert "key 'prices'" in line


def test_the_nodes_are_read_from_list_instances_with_their_market(emr):
    cluster_id = emr.run_job_flow(
        Name="bill",
        ReleaseLabel="emr-7.13.0",
        Instances={
            "InstanceGroups": [
                {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1, "Market": "ON_DEMAND"},
                {"InstanceRole": "CORE", "InstanceType": "m5.2xlarge", "InstanceCount": 2, "Market": "SPOT"},
            ],
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        JobFlowRole="profile",
        ServiceRole="role",
    )["JobFlowId"]
    emr.terminate_job_flows(JobFlowIds=[cluster_id])

    bill = cost.cluster_bill(emr, cluster_id, cost.load_prices(), REGION, wait_seconds=1)

    assert bill["nodes"] == {"m5.xlarge": 1, "m5.2xlarge": 2}
    assert bill["markets"] == {"ON_DEMAND": 1, "SPOT": 2}
    assert bill["cluster"]["id"] == cluster_id


def test_a_cluster_ended_with_errors_has_ended(emr_run):
    emr_run.end_cluster("TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", "bootstrap action 1 returned 1")

    assert cost.wait_for_end(emr_run.emr, emr_run.cluster_id, seconds=1) is True


def test_a_cluster_still_running_has_not_ended(emr_run):
    assert cost.wait_for_end(emr_run.emr, emr_run.cluster_id, seconds=1) is False
