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
import re
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from fruits_airflow.artifacts import StagedArtifacts
from fruits_airflow.config import STACK_TEMPLATE, ConfigError, PipelineConfig
from fruits_airflow.paths import RunPaths

log = logging.getLogger(__name__)

# Where bootstrap/install_python_deps.sh builds the virtualenv of the jobs, on every node: on /mnt, EMR's
# first data volume, as the 15 GiB root volume is too small for TensorFlow and the installer's cache.
NODE_VENV = "/mnt/fruits-pipeline/venv"
NODE_PYTHON = f"{NODE_VENV}/bin/python"

# AmazonEMRServicePolicy_v2, the service role's policy, only launches and manages EC2 resources with
# this tag; EMR passes the cluster's tags on to its instances and volumes.
EMR_MANAGED_POLICIES_TAG = {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"}

SPARK_PYTHON_CONFIGURATIONS = [
    {
        "Classification": "spark-env",
        "Configurations": [
            {
                "Classification": "export",
                "Properties": {"PYSPARK_PYTHON": NODE_PYTHON, "PYSPARK_DRIVER_PYTHON": NODE_PYTHON},
            }
        ],
    },
    {
        "Classification": "spark-defaults",
        "Properties": {"spark.pyspark.python": NODE_PYTHON, "spark.pyspark.driver.python": NODE_PYTHON},
    },
]

# EMR tag values allow letters, digits, spaces and _ . : / = + - @ (up to 256 characters).
_TAG_UNSAFE = re.compile(r"[^\w .:/=+\-@]")


def _tag(key: str, value: str) -> dict[str, str]:
    return {"Key": key, "Value": _TAG_UNSAFE.sub("_", value)[:256]}


def run_tags(dag_id: str, run_id: str) -> list[dict[str, str]]:
    """The tags that name a run's clusters (fruits_airflow.run_clusters finds them by these)."""
    return [_tag("airflow:dag_id", dag_id), _tag("airflow:run_id", run_id)]


def _instance_groups(config: PipelineConfig) -> list[dict[str, Any]]:
    groups = [
        {
            "Name": "primary",
            "Market": "ON_DEMAND",
            "InstanceRole": "MASTER",
            "InstanceType": config.primary_instance_type,
            "InstanceCount": 1,
        },
        {
            "Name": "core",
            "Market": "ON_DEMAND",
            "InstanceRole": "CORE",
            "InstanceType": config.core_instance_type,
            "InstanceCount": config.core_count,
        },
    ]
    if config.spot_task_count:
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


def job_flow_overrides(
    config: PipelineConfig, paths: RunPaths, artifacts: StagedArtifacts, *, dag_id: str, run_id: str
) -> dict[str, Any]:
    """The RunJobFlow request of a run's cluster, as ``EmrCreateJobFlowOperator`` sends it."""
    instances: dict[str, Any] = {
        "InstanceGroups": _instance_groups(config),
        "Ec2SubnetId": config.subnet_id,
        "EmrManagedMasterSecurityGroup": config.emr_managed_master_security_group,
        "EmrManagedSlaveSecurityGroup": config.emr_managed_slave_security_group,
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
                    "Args": [artifacts.bootstrap_requirements_uri, artifacts.bootstrap_primary_requirements_uri],
                },
            }
        ],
        "Configurations": SPARK_PYTHON_CONFIGURATIONS,
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
        if error.response.get("Error", {}).get("Code") != "InvalidRequestException":
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
