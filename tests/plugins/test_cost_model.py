"""The cost model runs the pipeline's own sizing and bill on a modelled timeline; the issue's goals hold in it."""

from __future__ import annotations

import pytest

from fruits_airflow import cost_model
from fruits_airflow.config import PipelineConfig


@pytest.fixture
def runs(variable) -> dict[str, dict[int, cost_model.ModelledRun]]:
    config = PipelineConfig(**variable)
    return {
        name: {n: cost_model.model_run(name, settings, n, spot_short=short) for n in (240, 2_000, 90_000)}
        for name, (settings, short) in cost_model.scenarios(config).items()
    }


def test_before_every_run_takes_three_nodes(runs):
    assert {run.nodes for run in runs["before"].values()} == {"3 m5.xlarge on_demand"}


def test_the_demo_s_240_images_and_a_daily_2000_take_one_node_at_most_40_percent_of_before(runs):
    for n in (240, 2_000):
        assert runs["after"][n].nodes == "1 m5.xlarge on_demand"
        assert runs["after"][n].usd <= 0.4 * runs["before"][n].usd


def test_a_first_run_of_90000_on_spot_core_nodes_is_no_slower_and_at_most_80_percent_of_before(runs):
    before, after = runs["before"][90_000], runs["after, spot core fleet"][90_000]

    assert after.minutes <= before.minutes
    assert after.usd <= 0.8 * before.usd
    assert after.nodes == "1 m5.xlarge on_demand, 2 m5.xlarge spot"


def test_without_spot_a_fleet_s_core_nodes_come_on_demand_after_the_timeout(runs):
    spot, short = runs["after, spot core fleet"][90_000], runs["after, spot core fleet, no spot left"][90_000]

    assert short.nodes == "3 m5.xlarge on_demand"
    assert short.minutes == pytest.approx(spot.minutes + 5)
    assert short.usd > runs["before"][90_000].usd


def test_the_cli_prints_its_assumptions_once_and_a_row_per_run_and_scenario(capsys):
    assert cost_model.main(["2000", "90000"]) == 0

    out = capsys.readouterr().out
    assert out.count("Assumed: the cluster starts in 8.5 min") == 1
    assert out.count("| 2,000 |") == 4
    assert out.count("| 90,000 |") == 4


def test_a_region_without_prices_fails_in_one_line(capsys):
    assert cost_model.main(["2000", "--region", "eu-south-2"]) == 2

    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("cost_model: error: No price for m5.xlarge in eu-south-2")
