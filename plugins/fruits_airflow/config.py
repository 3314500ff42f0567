"""The pipeline's configuration: one Airflow Variable, validated once, with defaults kept here.

The Variable ``fruits_pipeline`` holds a flat JSON object. The bucket and the network are required (the
CloudFormation stack's outputs hold them all); every other key has a default below. Unknown keys are
refused rather than ignored, so that a typo such as ``"image_dir"`` fails loudly instead of silently
falling back to a default.

The network has no default on purpose: without a subnet, EMR picks one of the default VPC, and without
security groups it uses (or creates) EMR's default ones; AmazonEMRServicePolicy_v2, the service role's
policy, launches nothing into a subnet or security group not tagged for it.

Data must stay in the EU (GDPR): a region outside ``eu-*`` is refused here, before any task uploads or
creates anything.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fruits_airflow.wheelhouse import AARCH64, X86_64
from fruits_contract import DEFAULT_WEIGHTS, IMAGENET_WEIGHTS, RANDOM_WEIGHTS

VARIABLE_KEY = "fruits_pipeline"
AWS_CONN_ID = "aws_default"

DEFAULT_REGION = "eu-west-1"
# The newest 7.x: Spark 3.5.6-amzn-2, the Spark the tests run (pyspark 3.5.6 in the lock). EMR's Spark 4
# line (emr-spark-8.0.0, Spark 4.0.2) is left for later on purpose: the jobs and their tests are on 3.5.
DEFAULT_RELEASE_LABEL = "emr-7.13.0"
DEFAULT_INSTANCE_TYPE = "m5.xlarge"
DEFAULT_CORE_COUNT = 2
DEFAULT_SPOT_TASK_COUNT = 0
# A run with at most this many images to featurize runs on the primary node alone (EMR's primary-only
# cluster, whose YARN hosts the executors): a third of the default cluster's node-hours, for about a
# minute more of featurization at 20,000 images. Beyond it, a core node per IMAGES_PER_CORE_NODE, up to
# core_count.
DEFAULT_SINGLE_NODE_MAX_IMAGES = 20_000
DEFAULT_IMAGES_PER_CORE_NODE = 45_000
# How long EMR looks for a fleet's spot capacity before it provisions the rest on demand, which the whole
# cluster waits for: EMR's minimum, as a run takes 13-16 minutes (the console's default is 60).
DEFAULT_SPOT_TIMEOUT_MINUTES = 5
# The most instance types EMR takes in a fleet with an allocation strategy (the cluster always sets one).
MAX_FLEET_INSTANCE_TYPES = 30
# The project's CloudFormation stack (this template, in the repository) creates exactly these names;
# the DAG creates none of them.
STACK_TEMPLATE = "cloudformation/fruits-pipeline.yaml"
DEFAULT_SERVICE_ROLE = "fruits-pipeline-emr-service-role"
DEFAULT_JOB_FLOW_ROLE = "fruits-pipeline-emr-instance-profile"
DEFAULT_SECURITY_CONFIGURATION = "fruits-pipeline-imdsv2"
DEFAULT_IDLE_TIMEOUT = 3600
# The upload refuses to remove more than this share of the images in S3 at once: a landing folder
# suddenly empty or half-mounted must not empty the bucket.
DEFAULT_MAX_REMOVAL_SHARE = 0.5
# What the price table (fruits_airflow/prices.json) gives per instance type and region, USD per node-hour,
# and what the Variable's ``prices`` may override.
PRICE_FIELDS = ("ec2", "emr", "ec2_spot", "ebs")

# The trigger form's defaults are the jobs' own (fruits_contract). A run that names no weights (every
# scheduled run) takes the Variable's ``weights``, whose default is DEFAULT_WEIGHTS.
WEIGHTS_PATTERN = rf"{IMAGENET_WEIGHTS}|{RANDOM_WEIGHTS}|s3://\S+"

_EU_REGION = re.compile(r"eu-[a-z]+-\d+")
# The fleets' types are counted in xlarge units (4 vCPUs): xlarge is 1, 2xlarge 2, and so on.
_FLEET_INSTANCE_TYPE = re.compile(r"[a-z0-9-]+\.(\d*)xlarge")
# Graviton (arm64) instance types: a family, its generation, then 'g' (m6g, c7gd, r8g, t4g, x2gd...).
_GRAVITON = re.compile(r"[a-z]+\d+g[a-z]*\.[a-z0-9]+")
_PATTERNS: dict[str, tuple[re.Pattern[str], str]] = {
    "bucket": (
        re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"),
        "a bucket name such as 'my-fruits-bucket' (no 's3://', no path)",
    ),
    "region": (re.compile(r"[a-z]{2}(-[a-z]+)+-\d+"), "an AWS region such as 'eu-west-1'"),
    "release_label": (
        re.compile(r"emr-7\.\d+\.\d+"),
        "an emr-7.x release such as 'emr-7.13.0' (the jobs need Spark 3.5 and Python 3.11)",
    ),
    "primary_instance_type": (re.compile(r"[a-z0-9-]+\.[a-z0-9]+"), "an EC2 type such as 'm5.xlarge'"),
    "core_instance_type": (re.compile(r"[a-z0-9-]+\.[a-z0-9]+"), "an EC2 type such as 'm5.xlarge'"),
    "spot_task_instance_type": (re.compile(r"[a-z0-9-]+\.[a-z0-9]+"), "an EC2 type such as 'm5.xlarge'"),
    "subnet_id": (re.compile(r"subnet-[0-9a-f]+"), "a subnet id such as 'subnet-0123abcd'"),
    "emr_managed_master_security_group": (re.compile(r"sg-[0-9a-f]+"), "a security group id such as 'sg-0123abcd'"),
    "emr_managed_slave_security_group": (re.compile(r"sg-[0-9a-f]+"), "a security group id such as 'sg-0123abcd'"),
    "service_access_security_group": (re.compile(r"sg-[0-9a-f]+"), "a security group id such as 'sg-0123abcd'"),
    "weights": (re.compile(WEIGHTS_PATTERN), "'imagenet', 'none' or an s3:// weights file"),
    "core_market": (re.compile(r"ON_DEMAND|SPOT"), "'ON_DEMAND' or 'SPOT'"),
}
# What each required key is, for the error when it is missing.
_REQUIRED = {
    "bucket": "the S3 bucket of the pipeline, e.g. 'my-fruits-bucket'",
    "subnet_id": (
        "the subnet the clusters launch into, tagged for-use-with-amazon-emr-managed-policies=true "
        f"(the stack's output SubnetId, {STACK_TEMPLATE})"
    ),
    "emr_managed_master_security_group": (
        f"the primary node's security group (the stack's output EmrManagedMasterSecurityGroup, {STACK_TEMPLATE})"
    ),
    "emr_managed_slave_security_group": (
        f"the core nodes' security group (the stack's output EmrManagedSlaveSecurityGroup, {STACK_TEMPLATE})"
    ),
}
_RANGES: dict[str, tuple[int, int]] = {
    "core_count": (1, 100),
    "spot_task_count": (0, 100),
    "single_node_max_images": (0, 10_000_000),
    "images_per_core_node": (1, 10_000_000),
    # The limits EMR accepts for AutoTerminationPolicy.IdleTimeout.
    "idle_timeout": (60, 604_800),
    # The limits EMR accepts for a fleet's SpotSpecification.TimeoutDurationMinutes.
    "spot_timeout_minutes": (5, 1440),
}
# Fractions, in (low, high].
_SHARES: dict[str, tuple[float, float]] = {"max_removal_share": (0.0, 1.0)}


class ConfigError(ValueError):
    """The Variable ``fruits_pipeline`` is missing or has a bad value; the message names the key."""


@dataclass(frozen=True)
class PipelineConfig:
    """The validated content of the Variable ``fruits_pipeline``.

    :param bucket: the S3 bucket holding images, features, runs, logs and artifacts.
    :param subnet_id: the subnet the clusters launch into, tagged for AmazonEMRServicePolicy_v2.
    :param emr_managed_master_security_group: the primary node's EMR-managed security group, tagged
        for AmazonEMRServicePolicy_v2; the stack creates it.
    :param emr_managed_slave_security_group: the core and task nodes' EMR-managed security group,
        likewise.
    :param service_access_security_group: the EMR-managed security group for service access, required in a
        private subnet (the stack's output ServiceAccessSecurityGroup); None in a public one.
    :param images_dir: the landing folder ``<label>/<file>`` that ``upload_new_images`` syncs; when
        absent, the run uses the images already in the bucket.
    :param region: the AWS region of the bucket and the cluster; must be in the EU.
    :param release_label: the EMR release (7.x: Spark 3.5, Amazon Linux 2023 with Python 3.11).
    :param primary_instance_type: EC2 type of the primary node.
    :param core_instance_type: EC2 type of the on-demand core nodes.
    :param core_count: the most core nodes a run's cluster has; the plan adds one per
        ``images_per_core_node`` images to featurize (``cluster.size_cluster``).
    :param core_market: ``ON_DEMAND`` or ``SPOT``, the core nodes' market; the primary is always on demand.
        A spot core group has no on-demand fallback: when spot is short, the cluster waits for it; a core
        fleet (``core_instance_types``) has one.
    :param core_instance_types: instead of ``core_instance_type``, several types for the core (and task)
        nodes: the cluster then uses instance fleets, the primary fleet on demand, the core capacity counted
        in xlarge units (a 2xlarge is 2), spot allocated capacity-optimized when ``core_market`` is ``SPOT``.
    :param spot_timeout_minutes: how long a fleet's spot capacity is looked for before EMR provisions the
        rest on demand.
    :param single_node_max_images: a run featurizing at most this many images runs on the primary node
        alone; 0 always adds core nodes.
    :param images_per_core_node: images to featurize per core node, beyond ``single_node_max_images``.
    :param spot_task_instance_type: EC2 type of the optional spot task nodes.
    :param spot_task_count: number of spot task nodes; 0 for none.
    :param service_role: the EMR service role.
    :param job_flow_role: the EC2 instance profile of the nodes.
    :param security_configuration: an EMR security configuration requiring IMDSv2, which the stack
        creates; the DAG only checks it.
    :param weights: the MobileNetV2 weights of runs whose trigger form names none, scheduled runs
        included: ``imagenet`` on AWS; ``none`` (random) where the ImageNet file cannot be downloaded,
        as on the embedded endpoint.
    :param idle_timeout: seconds of idleness after which EMR terminates the cluster by itself, the
        backstop for the case where Airflow dies before ``terminate_cluster``.
    :param max_removal_share: the largest share of the images in S3 that one upload may remove (those
        gone from the landing folder); above it the upload fails and removes nothing. 1 allows emptying
        the bucket's ``images/``.
    :param prices: overrides of ``prices.json``, region -> instance type -> ``ec2``, ``emr``,
        ``ec2_spot``, ``ebs`` (USD per node-hour), for the run's bill (``fruits_airflow.cost``).
    """

    bucket: str
    subnet_id: str
    emr_managed_master_security_group: str
    emr_managed_slave_security_group: str
    service_access_security_group: str | None = None
    images_dir: str | None = None
    region: str = DEFAULT_REGION
    release_label: str = DEFAULT_RELEASE_LABEL
    primary_instance_type: str = DEFAULT_INSTANCE_TYPE
    core_instance_type: str = DEFAULT_INSTANCE_TYPE
    core_count: int = DEFAULT_CORE_COUNT
    spot_task_instance_type: str = DEFAULT_INSTANCE_TYPE
    spot_task_count: int = DEFAULT_SPOT_TASK_COUNT
    service_role: str = DEFAULT_SERVICE_ROLE
    job_flow_role: str = DEFAULT_JOB_FLOW_ROLE
    security_configuration: str = DEFAULT_SECURITY_CONFIGURATION
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT
    weights: str = DEFAULT_WEIGHTS
    max_removal_share: float = DEFAULT_MAX_REMOVAL_SHARE
    core_market: str = "ON_DEMAND"
    single_node_max_images: int = DEFAULT_SINGLE_NODE_MAX_IMAGES
    images_per_core_node: int = DEFAULT_IMAGES_PER_CORE_NODE
    prices: dict[str, Any] | None = None
    core_instance_types: list[str] | None = None
    spot_timeout_minutes: int = DEFAULT_SPOT_TIMEOUT_MINUTES

    @property
    def uses_fleets(self) -> bool:
        """Whether the cluster is built of instance fleets (``core_instance_types``) rather than groups."""
        return bool(self.core_instance_types)

    @property
    def core_node_types(self) -> list[str]:
        """Every type a core or task node may have."""
        return list(self.core_instance_types or [self.core_instance_type])

    def node_types(self, core_count: int) -> list[str]:
        """Every type a node of the cluster may have, with ``core_count`` core nodes (0: the primary alone)."""
        types = [self.primary_instance_type]
        if core_count:
            types += self.core_node_types
            if self.spot_task_count and not self.uses_fleets:
                types.append(self.spot_task_instance_type)
        return list(dict.fromkeys(types))

    def architectures(self, core_count: int) -> list[str]:
        """The nodes' architectures (``x86_64``, ``aarch64``), with ``core_count`` core nodes: each needs its
        wheelhouse. EMR allows both in one cluster, even in one fleet (its guide's own example has a core fleet of
        m5.xlarge and m6g.xlarge, emr-custom-ami.html); each node installs its own architecture's wheels."""
        return sorted({architecture(kind) for kind in self.node_types(core_count)})

    def to_dict(self) -> dict[str, Any]:
        """The Variable-shaped form, passed between tasks by XCom; ``parse_config`` reads it back."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


_FIELDS = {field.name: field for field in dataclasses.fields(PipelineConfig)}


def _check_prices(raw: Any) -> dict[str, dict[str, dict[str, float]]]:
    """The Variable's ``prices``: region -> instance type -> some of PRICE_FIELDS, each a number >= 0."""
    if not isinstance(raw, Mapping):
        raise _bad("prices", f"must be an object region -> instance type -> prices, got {raw!r}")
    for region, types in raw.items():
        if not isinstance(types, Mapping):
            raise _bad("prices", f"[{region!r}] must be an object instance type -> prices, got {types!r}")
        for kind, fields in types.items():
            if not isinstance(fields, Mapping) or not set(fields) <= set(PRICE_FIELDS):
                raise _bad("prices", f"[{region!r}][{kind!r}] must be an object of {', '.join(PRICE_FIELDS)}")
            for name, value in fields.items():
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise _bad("prices", f"[{region!r}][{kind!r}][{name!r}] must be USD per hour >= 0, got {value!r}")
    return {region: {kind: dict(fields) for kind, fields in types.items()} for region, types in raw.items()}


def _check_fleet_types(raw: Any) -> list[str]:
    """The Variable's ``core_instance_types``: 1 to 30 distinct EC2 types of an xlarge size or bigger."""
    expected = "a list of 1 to {} distinct EC2 types of size xlarge or Nxlarge, such as ['m5.xlarge', 'm6i.xlarge']"
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_FLEET_INSTANCE_TYPES or len(set(map(str, raw))) < len(raw):
        raise _bad("core_instance_types", f"must be {expected.format(MAX_FLEET_INSTANCE_TYPES)}, got {raw!r}")
    for kind in raw:
        if not isinstance(kind, str) or not _FLEET_INSTANCE_TYPE.fullmatch(kind):
            raise _bad(
                "core_instance_types",
                f"has {kind!r}: the fleet counts its capacity in xlarge units, so give types of size xlarge or Nxlarge "
                "such as 'm5.xlarge' or 'm5.2xlarge'",
            )
    return list(raw)


def fleet_weight(instance_type: str) -> int:
    """The xlarge units an instance of a fleet's type counts for (its WeightedCapacity): 1, or the N of Nxlarge."""
    match = _FLEET_INSTANCE_TYPE.fullmatch(instance_type)
    return int(match.group(1) or 1) if match else 1


def _check_exclusive(raw: Mapping[str, Any]) -> None:
    """Refuse what a fleet cluster would silently ignore: the groups' own types, when not the defaults."""
    if raw.get("core_instance_types") is None:
        return
    for key in ("core_instance_type", "spot_task_instance_type"):
        if raw.get(key) not in (None, DEFAULT_INSTANCE_TYPE):
            raise _bad(
                key,
                "applies to instance groups only, and 'core_instance_types' makes the cluster of instance fleets, "
                f"whose core and task nodes take those types: remove '{key}' or 'core_instance_types'",
            )


def _bad(key: str, problem: str) -> ConfigError:
    return ConfigError(f"Airflow Variable '{VARIABLE_KEY}': key '{key}' {problem}.")


def _check_value(key: str, value: Any) -> Any:
    if key == "prices":
        return _check_prices(value)
    if key == "core_instance_types":
        return _check_fleet_types(value)
    if key in _SHARES:
        low, high = _SHARES[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
            raise _bad(key, f"must be a number in ({low:g}, {high:g}], got {value!r}")
        return float(value)
    if key in _RANGES:
        low, high = _RANGES[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(key, f"must be an integer, got {value!r}")
        if not low <= value <= high:
            raise _bad(key, f"must be between {low} and {high}, got {value}")
        return value
    if not isinstance(value, str) or not value.strip():
        raise _bad(key, f"must be a non-empty string, got {value!r}")
    if key in _PATTERNS:
        pattern, expected = _PATTERNS[key]
        if not pattern.fullmatch(value):
            raise _bad(key, f"must be {expected}, got {value!r}")
    return value


def require_eu_region(region: str) -> str:
    """Refuse any region outside the EU: the business keeps this data in the EU (GDPR)."""
    if not _EU_REGION.fullmatch(region):
        raise _bad(
            "region",
            f"is {region!r}, which is outside the EU; the data must stay in the EU (GDPR), "
            f"so set it to an eu-* region such as '{DEFAULT_REGION}'",
        )
    return region


def parse_config(raw: Mapping[str, Any]) -> PipelineConfig:
    """Validate the Variable's JSON object and fill in the defaults.

    :raises ConfigError: naming the first bad, unknown or missing key.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"Airflow Variable '{VARIABLE_KEY}' must be a JSON object, got {type(raw).__name__}.")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise _bad(unknown[0], f"is unknown; the known keys are {', '.join(_FIELDS)}")
    missing = [key for key in _REQUIRED if raw.get(key) is None]
    if missing:
        raise _bad(missing[0], f"is required: {_REQUIRED[missing[0]]}")
    values = {key: _check_value(key, value) for key, value in raw.items() if value is not None}
    _check_exclusive(raw)
    require_eu_region(values.get("region", DEFAULT_REGION))
    return PipelineConfig(**values)


def is_graviton(instance_type: str) -> bool:
    """Whether an EC2 type is a Graviton (arm64) one, by its family's name."""
    return _GRAVITON.fullmatch(instance_type) is not None


def architecture(instance_type: str) -> str:
    """``aarch64`` for a Graviton type, else ``x86_64``: what ``uname -m`` says on such a node."""
    return AARCH64 if is_graviton(instance_type) else X86_64


def require_compiling_primary(config: PipelineConfig, model_cache_uri: str) -> None:
    """Refuse a Graviton primary for a run whose model is not cached: the primary would compile it with
    TensorFlow, which the lock pins as ``tensorflow-cpu``, whose wheels are x86_64 only (the aarch64 wheelhouse
    has the lean nodes' packages alone). With the model cached, a Graviton primary runs LiteRT like every node.

    :raises ConfigError: naming the primary's type, the cache entry and the fix.
    """
    if is_graviton(config.primary_instance_type):
        raise _bad(
            "primary_instance_type",
            f"is {config.primary_instance_type!r}, a Graviton (arm64) type, and this run's model is not cached at "
            f"{model_cache_uri}: the primary would compile it with tensorflow-cpu, which has no aarch64 wheel. Run "
            f"once with an x86_64 primary such as '{DEFAULT_INSTANCE_TYPE}' (it caches the model), then Graviton",
        )


def load_config() -> PipelineConfig:
    """Read and validate the Variable; call it inside a task, never at DAG parse time."""
    from airflow.sdk import Variable

    text = Variable.get(VARIABLE_KEY, default=None)
    if text is None:
        raise ConfigError(
            f"Airflow Variable '{VARIABLE_KEY}' is not set: create it as JSON from the outputs of the "
            f"CloudFormation stack ({STACK_TEMPLATE}), plus 'images_dir', the landing folder (README, Run on AWS)."
        )
    try:
        raw = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as error:
        raise ConfigError(f"Airflow Variable '{VARIABLE_KEY}' is not valid JSON: {error}.") from error
    return parse_config(raw)
