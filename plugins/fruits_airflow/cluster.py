"""The transient EMR cluster: its RunJobFlow request and the security configuration it requires.

The cluster keeps running between steps (``KeepJobFlowAliveWhenNoSteps``) so that ``terminate_cluster``
decides when it ends; the idle ``AutoTerminationPolicy`` is the backstop for when Airflow itself dies.
Its nodes run the jobs with the Python 3.11 virtualenv that the bootstrap action builds (EMR 7 runs
Python 3.9 by default), and require IMDSv2 through the security configuration. They launch into the
Variable's subnet with the stack's EMR-managed security groups, all three tagged for
AmazonEMRServicePolicy_v2 as the request is.

The roles and the security configuration come from the project's CloudFormation stack; the DAG
creates neither, so the Airflow side needs no IAM or security-configuration write permissions.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from fruits_airflow.artifacts import StagedArtifacts
from fruits_airflow.aws_codes import code_of
from fruits_airflow.config import STACK_TEMPLATE, ConfigError, PipelineConfig, fleet_weight
from fruits_airflow.paths import RunPaths

log = logging.getLogger(__name__)

# Where bootstrap/install_python_deps.sh builds the virtualenv of the jobs, on every node: on /mnt, EMR's
# first data volume, as the 15 GiB root volume is too small for TensorFlow and the installer's cache.
NODE_VENV = "/mnt/fruits-pipeline/venv"
NODE_PYTHON = f"{NODE_VENV}/bin/python"

# AmazonEMRServicePolicy_v2, the service role's policy, only launches and manages EC2 resources with
# this tag; EMR passes the cluster's tags on to its instances and volumes.
EMR_MANAGED_POLICIES_TAG = {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"}


def spark_configurations(region: str) -> list[dict[str, Any]]:
    """Spark's Python (the bootstrap's virtualenv) and region, for the driver and every executor.

    ``AWS_REGION`` lets boto3 and the AWS SDKs on the nodes call the region's own endpoints instead of
    asking the global S3 endpoint where a bucket is (which a private subnet's S3 gateway endpoint, being
    regional, does not serve): spark-env's exports reach the driver, ``spark.executorEnv`` the executors,
    ``spark.yarn.appMasterEnv`` YARN's application master.
    """
    return [
        {
            "Classification": "spark-env",
            "Configurations": [
                {
                    "Classification": "export",
                    "Properties": {
                        "PYSPARK_PYTHON": NODE_PYTHON,
                        "PYSPARK_DRIVER_PYTHON": NODE_PYTHON,
                        "AWS_REGION": region,
                    },
                }
            ],
        },
        {
            "Classification": "spark-defaults",
            "Properties": {
                "spark.pyspark.python": NODE_PYTHON,
                "spark.pyspark.driver.python": NODE_PYTHON,
                "spark.executorEnv.AWS_REGION": region,
                "spark.yarn.appMasterEnv.AWS_REGION": region,
            },
        },
    ]


# EMR tag values allow letters, digits, spaces and _ . : / = + - @ (up to 256 characters).
_TAG_UNSAFE = re.compile(r"[^\w .:/=+\-@]")


def _tag(key: str, value: str) -> dict[str, str]:
    return {"Key": key, "Value": _TAG_UNSAFE.sub("_", value)[:256]}


@dataclass(frozen=True)
class ClusterSize:
    """How many core nodes a run's cluster has, for how many images to featurize, and why.

    :param core_count: core nodes; 0 is EMR's primary-only cluster, whose YARN hosts the executors.
    :param images_to_featurize: the plan's estimate (``images_to_featurize``).
    :param reason: one sentence for the task log and the run's summary.
    """

    core_count: int
    images_to_featurize: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def images_to_featurize(n_images: int, n_covered: int, n_uploaded: int) -> int:
    """An estimate, before any cluster, of the images a run featurizes: those in S3 that the network's last
    checked run did not cover, and at least those this run uploaded (new or changed)."""
    return max(n_images - n_covered, n_uploaded, 0)


def size_cluster(config: PipelineConfig, n_to_featurize: int) -> ClusterSize:
    """The primary node alone up to ``single_node_max_images``, else a core node per ``images_per_core_node``
    images, at most ``core_count``: the cluster's start, bootstrap and end, which every node pays, are
    most of a run's bill, so a node earns its keep only on a large batch."""
    single = config.single_node_max_images
    if n_to_featurize <= single:
        return ClusterSize(
            0,
            n_to_featurize,
            f"{n_to_featurize} image(s) to featurize, at most single_node_max_images = {single}: "
            "the primary node alone (its YARN hosts the executors)",
        )
    wanted = math.ceil(n_to_featurize / config.images_per_core_node)
    core_count = min(wanted, config.core_count)
    capped = f", capped at core_count = {config.core_count}" if wanted > core_count else ""
    fleet = (
        f" (xlarge units of a core fleet of {', '.join(config.core_node_types)}, {config.core_market.lower()})"
        if config.uses_fleets
        else ""
    )
    return ClusterSize(
        core_count,
        n_to_featurize,
        f"{n_to_featurize} images to featurize, over single_node_max_images = {single}: {core_count} core "
        f"node(s){fleet}, one per images_per_core_node = {config.images_per_core_node}{capped}",
    )


def run_tags(dag_id: str, run_id: str) -> list[dict[str, str]]:
    """The tags that name a run's clusters (fruits_airflow.run_clusters finds them by these)."""
    return [_tag("airflow:dag_id", dag_id), _tag("airflow:run_id", run_id)]


def _instance_groups(config: PipelineConfig, core_count: int) -> list[dict[str, Any]]:
    groups = [
        {
            "Name": "primary",
            "Market": "ON_DEMAND",
            "InstanceRole": "MASTER",
            "InstanceType": config.primary_instance_type,
            "InstanceCount": 1,
        },
    ]
    if core_count:
        groups.append(
            {
                "Name": "core",
                "Market": config.core_market,
                "InstanceRole": "CORE",
                "InstanceType": config.core_instance_type,
                "InstanceCount": core_count,
            }
        )
    # A run the plan put on one node takes no task nodes either.
    if config.spot_task_count and core_count:
        groups.append(
            {
                "Name": "spot task",
                "Market": "SPOT",
                "InstanceRole": "TASK",
                "InstanceType": config.spot_task_instance_type,
                "InstanceCount": config.spot_task_count,
            }
        )
    return groups


def _fleet(name: str, kind: str, config: PipelineConfig, units: int, market: str) -> dict[str, Any]:
    """A core or task fleet of ``units`` xlarge units on ``market``; spot allocated capacity-optimized (from the
    pools least likely to be interrupted), and provisioned on demand when spot is short after the timeout."""
    launch: dict[str, Any] = {"OnDemandSpecification": {"AllocationStrategy": "lowest-price"}}
    if market == "SPOT":
        launch["SpotSpecification"] = {
            "TimeoutDurationMinutes": config.spot_timeout_minutes,
            "TimeoutAction": "SWITCH_TO_ON_DEMAND",
            "AllocationStrategy": "capacity-optimized",
        }
    return {
        "Name": name,
        "InstanceFleetType": kind,
        "TargetOnDemandCapacity": units if market == "ON_DEMAND" else 0,
        "TargetSpotCapacity": units if market == "SPOT" else 0,
        "InstanceTypeConfigs": [
            {"InstanceType": node_type, "WeightedCapacity": fleet_weight(node_type)}
            for node_type in config.core_node_types
        ],
        "LaunchSpecifications": launch,
    }


def _instance_fleets(config: PipelineConfig, core_count: int) -> list[dict[str, Any]]:
    """The primary fleet, one on-demand node of ``primary_instance_type``; the core fleet and the task fleet
    (as the groups: only beside core nodes) of ``core_instance_types``."""
    fleets = [
        {
            "Name": "primary",
            "InstanceFleetType": "MASTER",
            "TargetOnDemandCapacity": 1,
            "InstanceTypeConfigs": [{"InstanceType": config.primary_instance_type}],
        }
    ]
    if core_count:
        fleets.append(_fleet("core", "CORE", config, core_count, config.core_market))
    if config.spot_task_count and core_count:
        fleets.append(_fleet("spot task", "TASK", config, config.spot_task_count, "SPOT"))
    return fleets


def bootstrap_args(
    config: PipelineConfig, artifacts: StagedArtifacts, core_count: int, primary_requirements: str
) -> list[str]:
    """The bootstrap action's options (bootstrap/install_python_deps.sh's header): the region, which its AWS CLI
    calls name (an EMR node's environment names none), and a wheelhouse per architecture of the cluster's types."""
    wheelhouses = [f"{arch}={artifacts.wheelhouse_uris[arch]}" for arch in config.architectures(core_count)]
    return [
        *("--region", config.region),
        *(argument for wheelhouse in wheelhouses for argument in ("--wheelhouse", wheelhouse)),
        *("--installer-requirements", artifacts.bootstrap_installer_requirements_uri),
        *("--requirements", artifacts.bootstrap_requirements_uri),
        *("--primary-requirements", primary_requirements),
    ]


def job_flow_overrides(
    config: PipelineConfig,
    paths: RunPaths,
    artifacts: StagedArtifacts,
    *,
    dag_id: str,
    run_id: str,
    model_cached: bool = False,
    size: ClusterSize | None = None,
) -> dict[str, Any]:
    """The RunJobFlow request of a run's cluster, as ``EmrCreateJobFlowOperator`` sends it.

    :param model_cached: whether the model cache holds the run's compiled model: then the primary node gets
        the core nodes' packages, without TensorFlow (fruits_airflow.model_check).
    :param size: the plan's size (``size_cluster``); by default, ``core_count`` core nodes.
    """
    primary_requirements = (
        artifacts.bootstrap_requirements_uri if model_cached else artifacts.bootstrap_primary_requirements_uri
    )
    core_count = config.core_count if size is None else size.core_count
    instances: dict[str, Any] = {
        **(
            {"InstanceFleets": _instance_fleets(config, core_count)}
            if config.uses_fleets
            else {"InstanceGroups": _instance_groups(config, core_count)}
        ),
        "Ec2SubnetId": config.subnet_id,
        "EmrManagedMasterSecurityGroup": config.emr_managed_master_security_group,
        "EmrManagedSlaveSecurityGroup": config.emr_managed_slave_security_group,
        **(
            {"ServiceAccessSecurityGroup": config.service_access_security_group}
            if config.service_access_security_group
            else {}
        ),
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }
    return {
        "Name": f"{dag_id} {paths.run_key}"[:256],
        "ReleaseLabel": config.release_label,
        "LogUri": paths.logs_uri,
        "Applications": [{"Name": "Spark"}],
        "Instances": instances,
        "BootstrapActions": [
            {
                "Name": "install_python_deps",
                "ScriptBootstrapAction": {
                    "Path": artifacts.bootstrap_script_uri,
                    "Args": bootstrap_args(config, artifacts, core_count, primary_requirements),
                },
            }
        ],
        "Configurations": spark_configurations(config.region),
        "ServiceRole": config.service_role,
        "JobFlowRole": config.job_flow_role,
        "SecurityConfiguration": config.security_configuration,
        "AutoTerminationPolicy": {"IdleTimeout": config.idle_timeout},
        "StepConcurrencyLevel": 1,
        "VisibleToAllUsers": True,
        "Tags": [
            EMR_MANAGED_POLICIES_TAG,
            *run_tags(dag_id, run_id),
            _tag("fruits-pipeline:run_key", paths.run_key),
            _tag("fruits-pipeline:artifacts", artifacts.version),
        ],
    }


def check_security_configuration(emr_client: BaseClient, name: str) -> str:
    """Make sure the security configuration ``name`` exists and requires IMDSv2; the stack creates it.

    :raises ConfigError: when ``name`` does not exist in the client's region, or lets the nodes use IMDSv1.
    """
    region = emr_client.meta.region_name
    try:
        existing = emr_client.describe_security_configuration(Name=name)
    except ClientError as error:
        if code_of(error) != "InvalidRequestException":
            raise
        raise ConfigError(
            f"EMR security configuration {name!r} does not exist in {region}: deploy the project's CloudFormation "
            f"stack ({STACK_TEMPLATE}) in {region}, which creates it, or set the Variable 'fruits_pipeline' key "
            "'security_configuration' to one that requires IMDSv2."
        ) from error
    settings = json.loads(existing["SecurityConfiguration"])
    version = settings.get("InstanceMetadataServiceConfiguration", {}).get("MinimumInstanceMetadataServiceVersion")
    if version != 2:
        raise ConfigError(
            f"EMR security configuration {name!r} in {region} does not require IMDSv2 "
            "(InstanceMetadataServiceConfiguration.MinimumInstanceMetadataServiceVersion = 2): use the one the "
            f"project's CloudFormation stack ({STACK_TEMPLATE}) creates, by removing the Variable 'fruits_pipeline' "
            "key 'security_configuration', or another that requires IMDSv2."
        )
    log.info("EMR security configuration %s in %s requires IMDSv2", name, region)
    return name
