"""What a run's cluster cost: node-hours from EMR's own timeline of its instances, priced from one table.

EMR and EC2 bill every instance per second, with a one-minute minimum, from its start to its end. EMR
keeps that timeline: ListInstances gives each instance's type, market (on-demand or spot) and
``Status.Timeline`` (created, ready, ended), DescribeCluster the cluster's. The same code reads it from
AWS and from the embedded endpoint, whose emulated cluster keeps its own, shorter timeline.

The prices are estimates: ``prices.json`` (beside this module) holds EC2's on-demand price, EMR's price on
top of it, a spot estimate and the default EBS volumes per instance type and EU region, with the date
they were read; the Variable's ``prices`` key overrides any of them. What AWS actually charged is in
Cost Explorer, a day later; this is the figure a run can show at once.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import WaiterError

from fruits_airflow.config import PRICE_FIELDS, VARIABLE_KEY, ConfigError

log = logging.getLogger(__name__)

PRICES_FILE = Path(__file__).with_name("prices.json")
ON_DEMAND, SPOT = "ON_DEMAND", "SPOT"
MIN_BILLED_SECONDS = 60
# How long check_output waits for the cluster's end, which terminate_cluster asked for, before it bills the
# time so far (the bill then says it is not final).
TERMINATION_WAIT_SECONDS = 600
TERMINATION_POLL_SECONDS = 10


@dataclass(frozen=True)
class NodePrice:
    """What one node of a type costs per hour in a region, by market (USD)."""

    ec2: float
    emr: float
    ec2_spot: float
    ebs: float
    public_ipv4: float

    def per_hour(self, market: str) -> float:
        """EC2 (on-demand, or the spot estimate) plus EMR's price, the default EBS volumes and the public IPv4."""
        ec2 = self.ec2_spot if market == SPOT else self.ec2
        return ec2 + self.emr + self.ebs + self.public_ipv4


@dataclass(frozen=True)
class PriceTable:
    """``prices.json`` with the Variable's overrides; ``read_on`` is the date its prices were read."""

    read_on: str
    regions: Mapping[str, Mapping[str, Mapping[str, float]]]
    public_ipv4: float

    def node_price(self, region: str, instance_type: str) -> NodePrice:
        """The price of ``instance_type`` in ``region``.

        :raises ConfigError: when the table has no price for it (or only some of its fields: a type new to
            prices.json needs them all), naming the Variable key that can add it.
        """
        known = self.regions.get(region, {})
        fields = known.get(instance_type)
        if fields is None or not set(PRICE_FIELDS) <= set(fields):
            listed = ", ".join(sorted(known)) or "none there"
            raise ConfigError(
                f"No price for {instance_type} in {region} (prices.json has {listed}): "
                f"add it to the Airflow Variable '{VARIABLE_KEY}' key 'prices', e.g. "
                f'{{"{region}": {{"{instance_type}": {{"ec2": 0.2, "emr": 0.05, "ec2_spot": 0.08, "ebs": 0.012}}}}}}.'
            )
        return NodePrice(**{name: float(fields[name]) for name in PRICE_FIELDS}, public_ipv4=self.public_ipv4)


@cache
def _published() -> dict[str, Any]:
    return json.loads(PRICES_FILE.read_text())


def load_prices(overrides: Mapping[str, Any] | None = None) -> PriceTable:
    """The published table, each field of ``overrides`` (region -> instance type -> field) replacing its own."""
    published = _published()
    regions: dict[str, dict[str, dict[str, float]]] = {
        region: {kind: dict(fields) for kind, fields in types.items()} for region, types in published["regions"].items()
    }
    for region, types in (overrides or {}).items():
        for kind, fields in types.items():
            regions.setdefault(region, {}).setdefault(kind, {}).update(fields)
    return PriceTable(published["read_on"], regions, float(published["public_ipv4"]))


@dataclass(frozen=True)
class Node:
    """One instance of the cluster, as ListInstances shows it."""

    instance_type: str
    market: str
    created: datetime
    ended: datetime | None

    def billed_seconds(self, now: datetime) -> float:
        """From its creation to its end (or ``now``, while it runs), one minute at least."""
        return max(MIN_BILLED_SECONDS, ((self.ended or now) - self.created).total_seconds())


def cluster_nodes(emr_client: BaseClient, cluster_id: str) -> list[Node]:
    """Every instance the cluster ever had, ended ones included (EMR lists them for the cluster's life)."""
    nodes = []
    for page in emr_client.get_paginator("list_instances").paginate(ClusterId=cluster_id):
        for instance in page["Instances"]:
            timeline = instance.get("Status", {}).get("Timeline", {})
            if "CreationDateTime" not in timeline:
                continue
            nodes.append(
                Node(
                    instance["InstanceType"],
                    instance.get("Market", ON_DEMAND),
                    timeline["CreationDateTime"],
                    timeline.get("EndDateTime"),
                )
            )
    return nodes


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None


def bill(nodes: list[Node], prices: PriceTable, region: str, *, now: datetime) -> dict[str, Any]:
    """The summary's ``cost``: USD, node-hours, nodes per type and per market, and a line per type and market."""
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    for node in nodes:
        line = lines.setdefault(
            (node.instance_type, node.market),
            {
                "instance_type": node.instance_type,
                "market": node.market,
                "nodes": 0,
                "node_hours": 0.0,
                "usd_per_node_hour": prices.node_price(region, node.instance_type).per_hour(node.market),
            },
        )
        line["nodes"] += 1
        line["node_hours"] += node.billed_seconds(now) / 3600
    for line in lines.values():
        line["usd"] = round(line["node_hours"] * line["usd_per_node_hour"], 4)
        line["node_hours"] = round(line["node_hours"], 4)
        line["usd_per_node_hour"] = round(line["usd_per_node_hour"], 4)
    return {
        "usd": round(sum(line["usd"] for line in lines.values()), 4),
        "node_hours": round(sum(line["node_hours"] for line in lines.values()), 4),
        "nodes": dict(Counter(node.instance_type for node in nodes)),
        "markets": dict(Counter(node.market for node in nodes)),
        "lines": sorted(lines.values(), key=lambda line: (line["instance_type"], line["market"])),
        "final": all(node.ended for node in nodes),
        "region": region,
        "prices_read_on": prices.read_on,
    }


def no_bill(prices: PriceTable, region: str) -> dict[str, Any]:
    """The ``cost`` of a run that created no cluster (it reused outputs): nothing."""
    return bill([], prices, region, now=datetime.now(UTC))


def wait_for_end(emr_client: BaseClient, cluster_id: str, seconds: int = TERMINATION_WAIT_SECONDS) -> bool:
    """Wait until the cluster has ended (terminate_cluster asked for it); False when it has not in ``seconds``."""
    delay = min(TERMINATION_POLL_SECONDS, seconds)
    config = {"Delay": delay, "MaxAttempts": max(1, math.ceil(seconds / max(delay, 1)))}
    try:
        emr_client.get_waiter("cluster_terminated").wait(ClusterId=cluster_id, WaiterConfig=config)
    except WaiterError as error:
        # The waiter gives up on TERMINATED_WITH_ERRORS, which is an end too.
        state = (error.last_response or {}).get("Cluster", {}).get("Status", {}).get("State")
        if state == "TERMINATED_WITH_ERRORS":
            return True
        log.warning("Cluster %s has not ended yet (%s): billing its time so far", cluster_id, error)
        return False
    return True


def cluster_bill(
    emr_client: BaseClient,
    cluster_id: str,
    prices: PriceTable,
    region: str,
    *,
    wait_seconds: int = TERMINATION_WAIT_SECONDS,
) -> dict[str, Any]:
    """The bill of cluster ``cluster_id``, once it has ended (or after ``wait_seconds``), with its own timeline."""
    wait_for_end(emr_client, cluster_id, wait_seconds)
    described = emr_client.describe_cluster(ClusterId=cluster_id)["Cluster"]
    timeline = described["Status"].get("Timeline", {})
    cost = bill(cluster_nodes(emr_client, cluster_id), prices, region, now=datetime.now(UTC))
    cost["cluster"] = {
        "id": cluster_id,
        # INSTANCE_FLEET: a spot fleet's on-demand core nodes are its fallback when spot was short.
        "instance_collection": described.get("InstanceCollectionType"),
        "created": _iso(timeline.get("CreationDateTime")),
        "ready": _iso(timeline.get("ReadyDateTime")),
        "ended": _iso(timeline.get("EndDateTime")),
    }
    log.info(
        "Cluster %s: %s node-hours (%s), about $%.4f at the prices of %s%s",
        cluster_id,
        cost["node_hours"],
        ", ".join(f"{line['nodes']} {line['instance_type']} {line['market']}" for line in cost["lines"]) or "no nodes",
        cost["usd"],
        prices.read_on,
        "" if cost["final"] else " (still running: not final)",
    )
    return cost
