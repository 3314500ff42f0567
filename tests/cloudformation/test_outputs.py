"""The stack's outputs are what the Variable fruits_pipeline needs, under the names the DAG defaults to."""

from __future__ import annotations

import re

import pytest

from fruits_airflow.config import (
    DEFAULT_JOB_FLOW_ROLE,
    DEFAULT_SECURITY_CONFIGURATION,
    DEFAULT_SERVICE_ROLE,
    PipelineConfig,
    parse_config,
)


def variable_key(output_key: str) -> str:
    """An output's Variable key: ``JobFlowRole`` feeds ``job_flow_role``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", output_key).lower()


@pytest.fixture(scope="module")
def variable(template, context) -> dict[str, str]:
    """The Variable built from the deployed stack's outputs, as the README's command builds it."""
    outputs = context.resolve(template, template["Outputs"])
    return {variable_key(key): output["Value"] for key, output in outputs.items()}


def test_each_output_feeds_a_variable_key_and_says_which(template):
    for key, output in template["Outputs"].items():
        assert variable_key(key) in PipelineConfig.__dataclass_fields__, key
        assert output["Description"].startswith(f"Variable key {variable_key(key)}"), key


def test_the_outputs_are_exactly_the_bucket_the_roles_and_the_security_configuration(variable):
    assert sorted(variable) == ["bucket", "job_flow_role", "region", "security_configuration", "service_role"]


def test_the_outputs_make_a_valid_variable(variable, bucket):
    config = parse_config(variable)

    assert (config.bucket, config.region) == (bucket, "eu-west-1")


def test_the_stack_creates_the_names_the_dag_defaults_to(variable):
    assert variable["service_role"] == DEFAULT_SERVICE_ROLE
    assert variable["job_flow_role"] == DEFAULT_JOB_FLOW_ROLE
    assert variable["security_configuration"] == DEFAULT_SECURITY_CONFIGURATION


def test_a_variable_with_only_the_bucket_uses_the_stacks_resources(variable, bucket):
    assert parse_config({"bucket": bucket}) == parse_config(variable)


def test_the_instance_profile_and_its_role_share_a_name(resources):
    # EMR refuses an instance profile whose role has another name ("invalid instance profile").
    assert resources["EmrInstanceProfile"]["Roles"] == [resources["EmrInstanceRole"]["RoleName"]]
    assert resources["EmrInstanceProfile"]["InstanceProfileName"] == resources["EmrInstanceRole"]["RoleName"]
