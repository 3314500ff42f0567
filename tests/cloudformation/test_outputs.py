"""The stack's outputs are what the Variable fruits_pipeline needs, under the names the DAG defaults to."""

from __future__ import annotations

import pytest

from fruits_airflow.cluster import EMR_MANAGED_POLICIES_TAG
from fruits_airflow.config import (
    DEFAULT_JOB_FLOW_ROLE,
    DEFAULT_SECURITY_CONFIGURATION,
    DEFAULT_SERVICE_ROLE,
    PipelineConfig,
    parse_config,
)
from tools.stack_template import output_variable


def variable_key(output_key: str) -> str:
    """An output's Variable key: ``JobFlowRole`` feeds ``job_flow_role``."""
    (key,) = output_variable({output_key: {"Value": ""}})
    return key


@pytest.fixture(scope="module")
def variable(template, context) -> dict[str, str]:
    """The Variable built from the deployed stack's outputs, as docs/aws.md's deploy command builds it."""
    return output_variable(context.resolve(template, template["Outputs"]))


def test_each_output_feeds_a_variable_key_and_says_which(template):
    for key, output in template["Outputs"].items():
        assert variable_key(key) in PipelineConfig.__dataclass_fields__, key
        assert output["Description"].startswith(f"Variable key {variable_key(key)}"), key


def test_the_outputs_are_exactly_the_bucket_the_roles_the_security_configuration_and_the_network(variable):
    assert sorted(variable) == [
        "bucket",
        "emr_managed_master_security_group",
        "emr_managed_slave_security_group",
        "job_flow_role",
        "region",
        "security_configuration",
        "service_role",
        "subnet_id",
    ]


def test_the_variable_gets_the_subnet_given_and_one_security_group_per_node_role(variable, context):
    assert variable["subnet_id"] == context.parameters["SubnetId"]
    assert variable["emr_managed_master_security_group"] != variable["emr_managed_slave_security_group"]


def test_the_security_groups_are_in_the_vpc_given_and_tagged_for_emrs_managed_policies(resources, context):
    for logical_id in ("PrimarySecurityGroup", "CoreSecurityGroup"):
        group = resources[logical_id]
        assert group["VpcId"] == context.parameters["VpcId"]
        assert EMR_MANAGED_POLICIES_TAG in group["Tags"]


def test_the_outputs_make_a_valid_variable(variable, bucket):
    config = parse_config(variable)

    assert (config.bucket, config.region) == (bucket, "eu-west-1")


def test_the_stack_creates_the_names_the_dag_defaults_to(variable):
    assert variable["service_role"] == DEFAULT_SERVICE_ROLE
    assert variable["job_flow_role"] == DEFAULT_JOB_FLOW_ROLE
    assert variable["security_configuration"] == DEFAULT_SECURITY_CONFIGURATION


def test_a_variable_with_only_the_bucket_and_the_network_uses_the_stacks_resources(variable):
    network = ("bucket", "subnet_id", "emr_managed_master_security_group", "emr_managed_slave_security_group")

    assert parse_config({key: variable[key] for key in network}) == parse_config(variable)


def test_the_instance_profile_and_its_role_share_a_name(resources):
    # EMR refuses an instance profile whose role has another name ("invalid instance profile").
    assert resources["EmrInstanceProfile"]["Roles"] == [resources["EmrInstanceRole"]["RoleName"]]
    assert resources["EmrInstanceProfile"]["InstanceProfileName"] == resources["EmrInstanceRole"]["RoleName"]
