"""Instance fleets on the emulated EMR: RunJobFlow's ``Instances.InstanceFleets``, which moto 5 ignores.

A fleet names several instance types, each worth ``WeightedCapacity`` units, and target capacities on
demand and on spot; EMR provisions instances until each target is met. Here:

- :func:`local_aws.emr_fleet_checks.check_fleets` refuses, as a ``ValidationException``, what EMR's
  documents say EMR refuses.
- :class:`SpotMarket` is the emulated region's spot capacity per instance type (any amount by default).
  Spot units go to the type with the most capacity left (EMR's ``capacity-optimized``; every spot
  strategy is emulated so, ties going to the type listed first); on-demand units to the first type listed
  (``lowest-price`` needs prices the endpoint does not have) or, with ``prioritized``, the lowest
  ``Priority``. When spot is short, ``SWITCH_TO_ON_DEMAND`` provisions the rest on demand and
  ``TERMINATE_CLUSTER`` ends the cluster ``TERMINATED_WITH_ERRORS`` (``INSTANCE_FLEET_TIMEOUT``), both
  at once: the endpoint does not wait ``TimeoutDurationMinutes``.
- Each instance is an EC2 instance of moto with its own type and market; it follows its fleet, which
  follows the cluster (PROVISIONING, BOOTSTRAPPING, RUNNING, TERMINATED) as instance groups do.
  ListInstances shows them (and filters by ``InstanceFleetId`` and ``InstanceFleetType``),
  ListInstanceFleets the fleets with their provisioned capacities, DescribeCluster's
  ``InstanceCollectionType`` which of the two a cluster uses; ListInstanceGroups refuses a fleet cluster
  and ListInstanceFleets a group cluster, as EMR does.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult, PaginatedResult
from moto.core.utils import utcnow
from moto.emr import models as emr_models
from moto.emr.responses import ElasticMapReduceResponse
from moto.moto_api._internal import mock_random

from local_aws.emr_fleet_checks import check_fleets, sent
from local_aws.node_loss import LosableInstance

ON_DEMAND, SPOT = "ON_DEMAND", "SPOT"
SPOT_CAPACITY_VARIABLE = "LOCAL_AWS_SPOT_CAPACITY"


def parse_spot_capacity(text: str, source: str) -> dict[str, int]:
    """``{"m5.xlarge": 0, ...}``: the spot instances left per type.

    :raises ValueError: naming ``source`` when ``text`` is not such an object.
    """
    try:
        capacity = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source} is not JSON ({error}): give an object such as '{{\"m5.xlarge\": 0}}'.") from None
    if not isinstance(capacity, dict) or not all(
        isinstance(count, int) and not isinstance(count, bool) and count >= 0 for count in capacity.values()
    ):
        raise ValueError(f"{source} must map instance types to spot instances left (0 or more), got {text}.")
    return capacity


class SpotMarket:
    """The spot capacity of the emulated region: instances left per type; None for any amount of every type.

    Clusters draw from it as they start, and give nothing back (a spot pool refills on its own schedule).
    """

    def __init__(self, capacity: Mapping[str, int] | None = None) -> None:
        self._lock = threading.Lock()
        self._left: dict[str, int] | None = None
        self.capacity = capacity

    @property
    def capacity(self) -> dict[str, int] | None:
        """The spot instances left per type; None for any amount."""
        with self._lock:
            return None if self._left is None else dict(self._left)

    @capacity.setter
    def capacity(self, capacity: Mapping[str, int] | None) -> None:
        left = None if capacity is None else {kind: int(count) for kind, count in capacity.items()}
        if left and min(left.values()) < 0:
            raise ValueError(f"Spot capacity {capacity} is negative; give 0 or more instances per type.")
        with self._lock:
            self._left = left

    @classmethod
    def from_environment(cls) -> SpotMarket:
        """The capacity of ``$LOCAL_AWS_SPOT_CAPACITY`` (JSON: instance type -> instances), else any amount."""
        text = os.environ.get(SPOT_CAPACITY_VARIABLE)
        return cls(parse_spot_capacity(text, f"${SPOT_CAPACITY_VARIABLE}") if text else None)

    def take(self, configs: Sequence[Mapping[str, Any]], units: int) -> tuple[Sequence[Mapping[str, Any]], int]:
        """Spot instances for ``units`` units, from the type with the most capacity left each time (ties: the
        first listed); returns the configs taken, one per instance, and the units still missing."""
        taken: list[Mapping[str, Any]] = []
        with self._lock:
            while units > 0:
                if self._left is None:
                    best = configs[0]
                else:
                    left = self._left
                    best = max(configs, key=lambda config: left.get(config["InstanceType"], 0))
                    if left.get(best["InstanceType"], 0) <= 0:
                        break
                    left[best["InstanceType"]] -= 1
                taken.append(best)
                units -= int(best.get("WeightedCapacity", 1))
        return taken, max(units, 0)


def _on_demand(configs: Sequence[Mapping[str, Any]], spec: Mapping[str, Any], units: int) -> list[Mapping[str, Any]]:
    """On-demand instances for ``units`` units, all of one type: the first listed, or the highest priority."""
    if units <= 0:
        return []
    if (spec.get("OnDemandSpecification") or {}).get("AllocationStrategy") == "prioritized":
        configs = sorted(configs, key=lambda config: float(config.get("Priority", math.inf)))
    chosen = configs[0]
    return [chosen] * math.ceil(units / int(chosen.get("WeightedCapacity", 1)))


class InstanceFleet:
    """One fleet of a cluster, as ListInstanceFleets shows it; its state follows the cluster's."""

    def __init__(self, cluster: emr_models.Cluster, config: Mapping[str, Any]) -> None:
        self.id = "if-" + "".join(mock_random.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(13))
        self.cluster_id = cluster.id
        self.name = config.get("Name")
        self.instance_fleet_type = config["InstanceFleetType"]
        self.target_on_demand_capacity = int(config.get("TargetOnDemandCapacity") or 0)
        self.target_spot_capacity = int(config.get("TargetSpotCapacity") or 0)
        self.provisioned_on_demand_capacity = 0
        self.provisioned_spot_capacity = 0
        self.instance_type_specifications = [
            {**item, "WeightedCapacity": int(item.get("WeightedCapacity", 1))}
            for item in config.get("InstanceTypeConfigs") or []
        ]
        self.launch_specifications = config.get("LaunchSpecifications")
        self.state = "PROVISIONING"
        self.state_change_reason: dict[str, str] = {}
        self.creation_date_time = utcnow()
        self.ready_date_time = None
        self.end_date_time = None

    @property
    def role(self) -> str:
        """The node type, under the name moto's instance filters read from an instance group."""
        return self.instance_fleet_type

    @property
    def status(self) -> dict[str, Any]:
        return {
            "State": self.state,
            "StateChangeReason": self.state_change_reason,
            "Timeline": {
                "CreationDateTime": self.creation_date_time,
                "ReadyDateTime": self.ready_date_time,
                "EndDateTime": self.end_date_time,
            },
        }


class FleetInstance(LosableInstance):
    """An instance of a fleet, with its own type and market (moto's take both from an instance group)."""

    def __init__(self, ec2_instance: Any, fleet: InstanceFleet, market: str) -> None:
        super().__init__(ec2_instance=ec2_instance, instance_group=fleet, instance_fleet_id=fleet.id)
        self._market = market

    @property
    def market(self) -> str:
        return self._market

    @property
    def instance_group_id(self) -> str | None:
        return None


def _launch(
    backend: emr_models.ElasticMapReduceBackend,
    cluster: Any,
    fleet: InstanceFleet,
    configs: Sequence[Mapping[str, Any]],
    market: str,
) -> None:
    for config in configs:
        (ec2_instance,) = backend.ec2_backend.run_instances(
            emr_models.EXAMPLE_AMI_ID, 1, None, [], instance_type=config["InstanceType"], is_instance_type_default=False
        ).instances
        cluster.add_instance(FleetInstance(ec2_instance, fleet, market))


def provision(backend: Any, cluster: Any, config: Mapping[str, Any], market: SpotMarket) -> InstanceFleet:
    """Create one fleet of ``cluster`` and its instances; a short spot target follows its timeout action."""
    fleet = InstanceFleet(cluster, config)
    configs = fleet.instance_type_specifications
    spec = config.get("LaunchSpecifications") or {}
    spot, missing = market.take(configs, fleet.target_spot_capacity)
    on_demand = _on_demand(configs, spec, fleet.target_on_demand_capacity)
    action = (spec.get("SpotSpecification") or {}).get("TimeoutAction", "TERMINATE_CLUSTER")
    if missing and action == "SWITCH_TO_ON_DEMAND":
        on_demand += _on_demand(configs, spec, missing)
    elif missing:
        cluster.fleet_timeout = (
            f"The {fleet.instance_fleet_type} instance fleet could not be provisioned with Spot capacity: "
            f"{missing} of {fleet.target_spot_capacity} unit(s) missing when the provisioning timeout expired."
        )
    fleet.provisioned_spot_capacity = sum(int(c.get("WeightedCapacity", 1)) for c in spot)
    fleet.provisioned_on_demand_capacity = sum(int(c.get("WeightedCapacity", 1)) for c in on_demand)
    cluster.instance_fleets.append(fleet)
    _launch(backend, cluster, fleet, spot, SPOT)
    _launch(backend, cluster, fleet, on_demand, ON_DEMAND)
    return fleet


def _collection_refused(operation: str, used: str, instead: str) -> JsonRESTError:
    return JsonRESTError(
        "InvalidRequestException",
        f"Instance fleets and instance groups are mutually exclusive. The EMR cluster specified in the request uses "
        f"{used}. The {operation} operation does not support clusters that use {used}. Use the {instead} operation "
        f"instead.",
    )


class FleetsResponse(ElasticMapReduceResponse):
    """Moto's EMR API with instance fleets (RunJobFlow, ListInstanceFleets, ListInstances, ListInstanceGroups)."""

    spot_market: ClassVar[SpotMarket] = SpotMarket()

    def run_job_flow(self) -> ActionResult:
        instances = sent(self._get_param("Instances", {})) or {}
        fleets = check_fleets(instances, self._get_param("ReleaseLabel"))
        result = super().run_job_flow()
        if fleets:
            cluster = self.backend.describe_cluster(result.result["JobFlowId"])
            cluster.instance_collection_type = "INSTANCE_FLEET"
            for fleet in fleets:
                provision(self.backend, cluster, fleet, self.spot_market)
            if getattr(cluster, "fleet_timeout", None):
                _end_with_fleet_timeout(cluster)
        return result

    def _cluster(self) -> Any:
        return self.backend.describe_cluster(self._get_param("ClusterId"))

    def list_instance_fleets(self) -> ActionResult:
        cluster = self._cluster()
        if cluster.instance_collection_type != "INSTANCE_FLEET":
            raise _collection_refused("ListInstanceFleets", "instance groups", "ListInstanceGroups")
        return PaginatedResult({"InstanceFleets": list(cluster.instance_fleets)})

    def list_instance_groups(self) -> ActionResult:
        if self._cluster().instance_collection_type == "INSTANCE_FLEET":
            raise _collection_refused("ListInstanceGroups", "instance fleets", "ListInstanceFleets")
        return super().list_instance_groups()

    def list_instances(self) -> ActionResult:
        result = super().list_instances()
        fleet_id, fleet_type = self._get_param("InstanceFleetId"), self._get_param("InstanceFleetType")
        if fleet_id or fleet_type:
            result.result["Instances"] = [
                instance
                for instance in result.result["Instances"]
                if isinstance(instance, FleetInstance)
                and (not fleet_id or instance.instance_fleet_id == fleet_id)
                and (not fleet_type or instance.instance_group.role == fleet_type)
            ]
        return result


def _end_with_fleet_timeout(cluster: Any) -> None:
    """TERMINATE_CLUSTER with spot short: the cluster ends before it bootstraps, its steps cancelled."""
    cluster.set_state("TERMINATED_WITH_ERRORS", code="INSTANCE_FLEET_TIMEOUT", message=cluster.fleet_timeout)
    for step in cluster.steps:
        step.set_state("CANCELLED", message="Cancelled because the cluster failed to start")


@contextmanager
def spot_market(market: SpotMarket) -> Iterator[None]:
    """Give every cluster created meanwhile its spot capacity from ``market``."""
    previous = FleetsResponse.spot_market
    FleetsResponse.spot_market = market
    try:
        yield
    finally:
        FleetsResponse.spot_market = previous
