"""The transient EMR cluster: its RunJobFlow request and the security configuration it requires.

The cluster keeps running between steps (``KeepJobFlowAliveWhenNoSteps``) so that ``terminate_cluster``
decides when it ends; the idle ``AutoTerminationPolicy`` is the backstop for when Airflow itself dies.
Its nodes run the jobs with the Python 3.11 virtualenv that the bootstrap action builds (EMR 7 runs
Python 3.9 by default), and require IMDSv2 through the security configuration.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from fruits_airflow.artifacts import StagedArtifacts
from fruits_airflow.config import ConfigError, PipelineConfig
from fruits_airflow.paths import RunPaths

log = logging.getLogger(__name__)

# Where bootstrap/install_python_deps.sh builds the virtualenv of the jobs, on every node.
NODE_VENV = "/opt/fruits-pipeline/venv"
NODE_PYTHON = f"{NODE_VENV}/bin/python"

IMDSV2_SECURITY_CONFIGURATION = {
    "InstanceMetadataServiceConfiguration": {
        "MinimumInstanceMetadataServiceVersion": 2,
        "HttpPutResponseHopLimit": 1,
    }
}

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
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }
    if config.subnet_id:
        instances["Ec2SubnetId"] = config.subnet_id
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
                    "Args": [artifacts.bootstrap_requirements_uri],
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
            _tag("airflow:dag_id", dag_id),
            _tag("airflow:run_id", run_id),
            _tag("fruits-pipeline:run_key", paths.run_key),
            _tag("fruits-pipeline:artifacts", artifacts.version),
        ],
    }


def ensure_security_configuration(emr_client: BaseClient, name: str) -> str:
    """Create the IMDSv2 security configuration ``name`` if missing; refuse an existing one without IMDSv2.

    :raises ConfigError: when ``name`` exists but lets the nodes use IMDSv1.
    """
    try:
        existing = emr_client.describe_security_configuration(Name=name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "InvalidRequestException":
            raise
        emr_client.create_security_configuration(
            Name=name, SecurityConfiguration=json.dumps(IMDSV2_SECURITY_CONFIGURATION)
        )
        log.info("Created EMR security configuration %s, which requires IMDSv2", name)
        return name
    settings = json.loads(existing["SecurityConfiguration"])
    version = settings.get("InstanceMetadataServiceConfiguration", {}).get("MinimumInstanceMetadataServiceVersion")
    if version != 2:
        raise ConfigError(
            f"Airflow Variable 'fruits_pipeline': key 'security_configuration' names {name!r}, which does not "
            "require IMDSv2 (InstanceMetadataServiceConfiguration.MinimumInstanceMetadataServiceVersion = 2); "
            "use one that does, or remove the key to let the DAG create its own."
        )
    log.info("EMR security configuration %s exists and requires IMDSv2", name)
    return name
