"""What EMR refuses in RunJobFlow's ``Instances.InstanceFleets``, as its API reference and management guide say.

:func:`check_fleets` raises a ``ValidationException`` for fleets together with instance groups (or
``MasterInstanceType``, ``SlaveInstanceType``), anything but one primary fleet and at most one core and one
task fleet, a primary fleet whose target is not exactly one unit of one market, a core or task fleet with
no capacity, a weight below 1, more than 5 instance types (30 with an allocation strategy), a spot timeout
outside 5-1440 minutes, an unknown timeout action or allocation strategy, and a release without fleets
(before emr-4.8.0, or emr-5.0.x) or without allocation strategies (before emr-5.12.1). The messages' wording
is the endpoint's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from moto.emr.exceptions import ValidationException
from moto.emr.utils import ReleaseLabel

FLEET_TYPES = ("MASTER", "CORE", "TASK")
SPOT_STRATEGIES = frozenset(
    {"capacity-optimized", "price-capacity-optimized", "lowest-price", "diversified", "capacity-optimized-prioritized"}
)
ON_DEMAND_STRATEGIES = frozenset({"lowest-price", "prioritized"})
TIMEOUT_ACTIONS = frozenset({"SWITCH_TO_ON_DEMAND", "TERMINATE_CLUSTER"})
SPOT_TIMEOUT_MINUTES = (5, 1440)
MAX_TYPES, MAX_TYPES_WITH_STRATEGY = 5, 30


def sent(value: Any) -> Any:
    """A parsed request value as the client sent it (moto keeps its own casing of keys)."""
    original = getattr(value, "original_dict", None)
    return original() if callable(original) else value


def _invalid(message: str) -> ValidationException:
    return ValidationException(message)


def _has_strategy(fleet: Mapping[str, Any]) -> bool:
    spec = fleet.get("LaunchSpecifications") or {}
    return bool((spec.get("SpotSpecification") or {}).get("AllocationStrategy") or spec.get("OnDemandSpecification"))


def _check_release(release_label: str | None, fleets: Sequence[Mapping[str, Any]]) -> None:
    if not release_label or not ReleaseLabel.version_re.match(release_label):
        return
    release = ReleaseLabel(release_label)
    if release < ReleaseLabel("emr-4.8.0") or (release.major, release.minor) == (5, 0):
        raise _invalid(f"Instance fleets are not supported by release {release_label}: use emr-4.8.0 or later.")
    if any(_has_strategy(fleet) for fleet in fleets) and release < ReleaseLabel("emr-5.12.1"):
        raise _invalid(f"Allocation strategies are not supported by release {release_label}: use emr-5.12.1 or later.")


def _check_launch_specifications(name: str, spec: Mapping[str, Any]) -> None:
    spot = spec.get("SpotSpecification")
    if spot is not None:
        low, high = SPOT_TIMEOUT_MINUTES
        if spot.get("TimeoutAction") not in TIMEOUT_ACTIONS:
            raise _invalid(f"{name}: TimeoutAction must be one of {sorted(TIMEOUT_ACTIONS)}.")
        if not low <= int(spot.get("TimeoutDurationMinutes", -1)) <= high:
            raise _invalid(f"{name}: TimeoutDurationMinutes must be between {low} and {high}.")
        strategy = spot.get("AllocationStrategy")
        if strategy is not None and strategy not in SPOT_STRATEGIES:
            raise _invalid(f"{name}: spot AllocationStrategy must be one of {sorted(SPOT_STRATEGIES)}.")
    on_demand = spec.get("OnDemandSpecification")
    if on_demand is not None and on_demand.get("AllocationStrategy") not in ON_DEMAND_STRATEGIES:
        raise _invalid(f"{name}: on-demand AllocationStrategy must be one of {sorted(ON_DEMAND_STRATEGIES)}.")


def _check_fleet(fleet: Mapping[str, Any]) -> None:
    kind = fleet.get("InstanceFleetType")
    name = f"The {kind} instance fleet"
    types = fleet.get("InstanceTypeConfigs") or []
    if not types:
        raise _invalid(f"{name} must have at least one InstanceTypeConfig.")
    most = MAX_TYPES_WITH_STRATEGY if _has_strategy(fleet) else MAX_TYPES
    if len(types) > most:
        raise _invalid(f"{name} has {len(types)} instance type configurations; the maximum is {most}.")
    on_demand, spot = fleet.get("TargetOnDemandCapacity"), fleet.get("TargetSpotCapacity")
    weights = [int(config.get("WeightedCapacity", 1)) for config in types]
    if kind == "MASTER":
        if sorted(target for target in (on_demand or 0, spot or 0)) != [0, 1]:
            raise _invalid(f"{name} must have exactly one of TargetOnDemandCapacity and TargetSpotCapacity, set to 1.")
        if any(weight != 1 for weight in weights):
            raise _invalid(f"{name}: WeightedCapacity must be 1 for the master instance fleet.")
    else:
        if not (on_demand or 0) + (spot or 0):
            raise _invalid(f"{name}: at least one of TargetOnDemandCapacity and TargetSpotCapacity must be above 0.")
        if any(weight < 1 for weight in weights):
            raise _invalid(f"{name}: WeightedCapacity must be 1 or greater.")
    _check_launch_specifications(name, fleet.get("LaunchSpecifications") or {})


def check_fleets(instances: Mapping[str, Any], release_label: str | None) -> list[dict[str, Any]]:
    """The request's fleets, as sent, once they pass what EMR checks; [] for a request without fleets.

    :raises ValidationException: naming what EMR refuses.
    """
    fleets = [sent(fleet) for fleet in instances.get("InstanceFleets") or []]
    if not fleets:
        return []
    others = [key for key in ("InstanceGroups", "MasterInstanceType", "SlaveInstanceType") if instances.get(key)]
    if others:
        raise _invalid(
            f"Instance fleets and {others[0]} are mutually exclusive: a cluster uses fleets or instance groups."
        )
    kinds = [fleet.get("InstanceFleetType") for fleet in fleets]
    unknown = [kind for kind in kinds if kind not in FLEET_TYPES]
    if unknown:
        raise _invalid(f"InstanceFleetType {unknown[0]!r} is not one of {', '.join(FLEET_TYPES)}.")
    if kinds.count("MASTER") != 1 or kinds.count("CORE") > 1 or kinds.count("TASK") > 1:
        raise _invalid("A cluster has exactly one MASTER instance fleet and at most one CORE and one TASK fleet.")
    _check_release(release_label, fleets)
    for fleet in fleets:
        _check_fleet(fleet)
    return fleets
