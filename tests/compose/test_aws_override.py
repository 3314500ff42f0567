"""docker-compose.aws.yaml, the override that points the stack at a real AWS account: only the connection
and the Variable change, the embedded endpoint stays off, and nothing starts without a bucket and a role."""

from __future__ import annotations

import json

import pytest
from compose_spec import PyCompose

# Where aws_default is used: tasks (scheduler), deferred sensors (triggerer), the Report tab (API server).
AWS_CALLERS = ("airflow-apiserver", "airflow-scheduler", "airflow-triggerer")
LOCAL_AWS_SERVICES = ("local-aws", "local-aws-init", "local-aws-wheelhouse")


def aws_connection(override, service: str):
    from airflow.models.connection import Connection
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper

    value = override.environment(service)["AIRFLOW_CONN_AWS_DEFAULT"]
    return AwsConnectionWrapper(Connection.from_json(value, conn_id="aws_default"))


def test_override_is_valid_against_the_compose_spec(aws_override):
    PyCompose.from_json(aws_override.to_json()).validate()


def test_override_names_only_services_of_the_main_file(aws_override, compose):
    assert set(aws_override.services) <= set(compose.services)


def test_override_replaces_the_connection_and_variable_of_every_airflow_service(aws_override, compose):
    for service in compose.airflow_services():
        assert {"AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW_VAR_FRUITS_PIPELINE"} <= set(aws_override.environment(service))


def test_connection_has_no_endpoint_and_no_keys_and_assumes_the_role(aws_override, aws_env):
    connection = aws_connection(aws_override, "airflow-scheduler")
    assert connection.endpoint_url is None
    assert (connection.aws_access_key_id, connection.aws_secret_access_key) == (None, None)
    assert connection.role_arn == aws_env["FRUITS_AWS_ROLE_ARN"]
    assert connection.profile_name == aws_env["AWS_PROFILE"]
    assert connection.region_name == aws_env["FRUITS_REGION"]


def test_variable_is_the_given_bucket_and_network_with_the_same_landing_folder(aws_override, aws_env, local_variable):
    from fruits_airflow.config import parse_config

    on_aws = parse_config(json.loads(aws_override.environment("airflow-scheduler")["AIRFLOW_VAR_FRUITS_PIPELINE"]))
    assert (on_aws.bucket, on_aws.region) == (aws_env["FRUITS_BUCKET"], aws_env["FRUITS_REGION"])
    assert on_aws.subnet_id == aws_env["FRUITS_SUBNET_ID"]
    assert on_aws.emr_managed_master_security_group == aws_env["FRUITS_PRIMARY_SECURITY_GROUP"]
    assert on_aws.emr_managed_slave_security_group == aws_env["FRUITS_CORE_SECURITY_GROUP"]
    assert on_aws.images_dir == parse_config(local_variable).images_dir


@pytest.mark.parametrize(
    "name",
    [
        "FRUITS_BUCKET",
        "FRUITS_AWS_ROLE_ARN",
        "FRUITS_SUBNET_ID",
        "FRUITS_PRIMARY_SECURITY_GROUP",
        "FRUITS_CORE_SECURITY_GROUP",
    ],
)
def test_override_does_not_start_without(name, aws_env, aws_override, read_compose):
    env = {key: value for key, value in aws_env.items() if key != name}
    with pytest.raises(ValueError, match=f"{name} is not set"):
        read_compose(aws_override.path, env)


def test_embedded_endpoint_does_not_start(aws_override):
    assert all(aws_override.services[service].get("profiles") for service in LOCAL_AWS_SERVICES)


def test_nothing_requires_the_embedded_endpoint_once_it_is_off(compose):
    """Compose refuses to start a service whose required dependency is in an inactive profile."""
    requirements = {
        (name, dependency): condition.get("required", True)
        for name, service in compose.services.items()
        for dependency, condition in service.get("depends_on", {}).items()
        if dependency in LOCAL_AWS_SERVICES and name not in LOCAL_AWS_SERVICES
    }
    assert requirements
    assert [pair for pair, required in requirements.items() if required] == []


def test_aws_credentials_are_mounted_only_where_aws_is_called(aws_override, aws_env):
    mounted = {
        name
        for name, service in aws_override.services.items()
        if any(volume.startswith(f"{aws_env['HOME']}/.aws:") for volume in service.get("volumes", []))
    }
    assert mounted == set(AWS_CALLERS)


@pytest.mark.parametrize("service", AWS_CALLERS)
def test_the_profile_mount_is_writable_so_that_an_sso_token_can_be_refreshed(aws_override, aws_env, service):
    assert f"{aws_env['HOME']}/.aws:/home/airflow/.aws" in aws_override.services[service]["volumes"]


def test_the_api_server_gets_the_scheduler_s_aws_connection(aws_override):
    scheduler, api_server = (aws_override.environment(name) for name in ("airflow-scheduler", "airflow-apiserver"))
    assert api_server["AIRFLOW_CONN_AWS_DEFAULT"] == scheduler["AIRFLOW_CONN_AWS_DEFAULT"]
