"""The stack refuses to exist outside the EU: its Region parameter and its rule, as CloudFormation checks them."""

from __future__ import annotations

import boto3
import pytest

from fruits_airflow.config import ConfigError, require_eu_region
from tools.stack_template import StackContext, refusals

EU_REGIONS = [region for region in boto3.session.Session().get_available_regions("emr") if region.startswith("eu-")]


def deploy(template, *, region_parameter: str, stack_region: str) -> list[str]:
    """Why CloudFormation would refuse the stack with this Region parameter, deployed in ``stack_region``."""
    parameters = {"BucketName": "acme-fruits-pipeline", "Region": region_parameter}
    return refusals(template, StackContext(parameters, region=stack_region, account_id="123456789012"))


def config_accepts(region: str) -> bool:
    try:
        require_eu_region(region)
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("region", EU_REGIONS)
def test_the_stack_deploys_in_every_eu_region(template, region):
    assert deploy(template, region_parameter=region, stack_region=region) == []


@pytest.mark.parametrize("region", ["us-east-1", "ap-southeast-2", "il-central-1", "me-central-1"])
def test_the_region_parameter_refuses_a_region_outside_the_eu(template, region):
    (reason,) = deploy(template, region_parameter=region, stack_region=region)

    assert reason.startswith(f"Region {region!r} must be an EU region")


def test_the_stack_refuses_an_eu_region_parameter_when_deployed_elsewhere(template):
    (reason,) = deploy(template, region_parameter="eu-west-1", stack_region="us-east-1")

    assert reason.startswith("Deploy the stack in the region its Region parameter names")


def test_the_default_region_is_the_dags(template):
    assert template["Parameters"]["Region"]["Default"] == "eu-west-1"


def test_the_stack_allows_exactly_the_aws_regions_the_dag_accepts(template):
    accepted = [region for region in boto3.session.Session().get_available_regions("emr") if config_accepts(region)]

    assert template["Parameters"]["Region"]["AllowedValues"] == accepted


def test_the_bucket_name_must_work_with_tls(template):
    (reason,) = refusals(
        template,
        StackContext({"BucketName": "acme.fruits", "Region": "eu-west-1"}, region="eu-west-1", account_id="1"),
    )

    assert reason.startswith("BucketName 'acme.fruits'")
