from __future__ import annotations

import json

import pytest

from fruits_airflow.config import ConfigError, PipelineConfig, is_graviton, load_config, parse_config


def test_only_the_bucket_and_the_network_are_required_and_the_rest_defaults(network):
    parsed = parse_config({"bucket": "my-fruits", **network})

    assert parsed == PipelineConfig(bucket="my-fruits", **network)
    assert parsed.region == "eu-west-1"
    assert parsed.release_label.startswith("emr-7.")
    assert (parsed.primary_instance_type, parsed.core_instance_type, parsed.core_count) == ("m5.xlarge", "m5.xlarge", 2)
    assert parsed.spot_task_count == 0
    assert parsed.service_role == "fruits-pipeline-emr-service-role"
    assert parsed.job_flow_role == "fruits-pipeline-emr-instance-profile"


def test_overrides_replace_the_defaults(network):
    raw = {
        **network,
        "bucket": "my-fruits",
        "images_dir": "/data/landing",
        "region": "eu-central-1",
        "release_label": "emr-7.5.0",
        "core_count": 4,
        "spot_task_count": 3,
        "spot_task_instance_type": "r5.2xlarge",
        "subnet_id": "subnet-0abc123",
        "service_role": "custom-service-role",
        "idle_timeout": 900,
    }

    parsed = parse_config(raw)

    assert parsed.to_dict() == {**PipelineConfig(bucket="x", **network).to_dict(), **raw}


def test_the_xcom_form_reads_back_to_the_same_config(variable):
    parsed = parse_config({**variable, "images_dir": "/data", "spot_task_count": 2})

    assert parse_config(parsed.to_dict()) == parsed


@pytest.mark.parametrize("region", ["us-east-1", "ap-southeast-2", "me-central-1", "il-central-1"])
def test_a_region_outside_the_eu_is_refused(variable, region):
    with pytest.raises(ConfigError, match=rf"key 'region' is '{region}', which is outside the EU"):
        parse_config({**variable, "region": region})


@pytest.mark.parametrize("region", ["eu-west-1", "eu-central-2", "eu-north-1", "eu-south-2"])
def test_eu_regions_are_accepted(variable, region):
    assert parse_config({**variable, "region": region}).region == region


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        ({}, "bucket", "is required"),
        ({"bucket": "s3://my-fruits"}, "bucket", "must be a bucket name"),
        ({"bucket": "My_Fruits"}, "bucket", "must be a bucket name"),
        ({"bucket": "my-fruits", "image_dir": "/data"}, "image_dir", "is unknown"),
        ({"bucket": "my-fruits", "images_dir": ""}, "images_dir", "must be a non-empty string"),
        ({"bucket": "my-fruits", "region": 1}, "region", "must be a non-empty string"),
        ({"bucket": "my-fruits", "release_label": "emr-6.15.0"}, "release_label", "must be an emr-7.x release"),
        ({"bucket": "my-fruits", "core_count": 0}, "core_count", "must be between 1 and"),
        ({"bucket": "my-fruits", "core_count": "2"}, "core_count", "must be an integer"),
        ({"bucket": "my-fruits", "core_count": True}, "core_count", "must be an integer"),
        ({"bucket": "my-fruits", "spot_task_count": -1}, "spot_task_count", "must be between 0 and"),
        ({"bucket": "my-fruits", "idle_timeout": 30}, "idle_timeout", "must be between 60 and 604800"),
        ({"bucket": "my-fruits", "subnet_id": "vpc-123"}, "subnet_id", "must be a subnet id"),
        (
            {"bucket": "my-fruits", "emr_managed_master_security_group": "default"},
            "emr_managed_master_security_group",
            "must be a security group id",
        ),
        ({"bucket": "my-fruits", "core_instance_type": "big"}, "core_instance_type", "must be an EC2 type"),
        ({"bucket": "my-fruits", "weights": "resnet50"}, "weights", "must be 'imagenet', 'none' or an s3://"),
        (
            {"bucket": "my-fruits", "core_instance_types": "m5.xlarge"},
            "core_instance_types",
            "must be a list of 1 to 30",
        ),
        ({"bucket": "my-fruits", "core_instance_types": []}, "core_instance_types", "must be a list"),
        (
            {"bucket": "my-fruits", "core_instance_types": ["m5.xlarge"] * 2},
            "core_instance_types",
            "must be a list of 1 to 30 distinct",
        ),
        ({"bucket": "my-fruits", "core_instance_types": ["m5.large"]}, "core_instance_types", "has 'm5.large'"),
        ({"bucket": "my-fruits", "spot_timeout_minutes": 2}, "spot_timeout_minutes", "must be between 5 and 1440"),
        (
            {"bucket": "my-fruits", "core_instance_types": ["m5.xlarge"], "core_instance_type": "m6i.xlarge"},
            "core_instance_type",
            "applies to instance groups only",
        ),
        (
            {"bucket": "my-fruits", "core_instance_types": ["m5.xlarge"], "spot_task_instance_type": "r5.xlarge"},
            "spot_task_instance_type",
            "applies to instance groups only",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(network, raw, key, problem):
    with pytest.raises(ConfigError, match=rf"Variable 'fruits_pipeline': key '{key}' {problem}"):
        parse_config({**network, **raw})


@pytest.mark.parametrize(
    ("key", "explanation"),
    [
        ("subnet_id", "the subnet the clusters launch into, tagged for-use-with-amazon-emr-managed-policies=true"),
        ("emr_managed_master_security_group", "the primary node's security group"),
        ("emr_managed_slave_security_group", "the core nodes' security group"),
    ],
)
def test_a_missing_network_key_is_refused_in_one_line_naming_the_stacks_output(variable, key, explanation):
    raw = {name: value for name, value in variable.items() if name != key}

    with pytest.raises(ConfigError) as refused:
        parse_config(raw)

    message = str(refused.value)
    assert message.startswith(f"Airflow Variable 'fruits_pipeline': key '{key}' is required: {explanation}")
    assert "cloudformation/fruits-pipeline.yaml" in message
    assert "\n" not in message


def test_a_variable_that_is_not_an_object_is_refused():
    with pytest.raises(ConfigError, match="must be a JSON object"):
        parse_config(["my-fruits"])


def test_load_config_reads_the_json_variable(monkeypatch, network):
    monkeypatch.setenv("AIRFLOW_VAR_FRUITS_PIPELINE", json.dumps({"bucket": "my-fruits", "core_count": 3, **network}))

    assert load_config() == PipelineConfig(bucket="my-fruits", core_count=3, **network)


def test_a_missing_variable_says_how_to_create_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_FRUITS_PIPELINE", raising=False)

    with pytest.raises(ConfigError, match=r"'fruits_pipeline' is not set: create it as JSON"):
        load_config()


def test_a_variable_that_is_not_json_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_FRUITS_PIPELINE", "bucket=my-fruits")

    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_config()


@pytest.mark.parametrize("primary", ["m6g.xlarge", "m7gd.2xlarge", "c8g.xlarge", "t4g.large"])
def test_a_graviton_primary_is_accepted_and_its_nodes_are_aarch64(variable, primary):
    """plan_run refuses it only for a run whose model is not cached (test_tasks)."""
    config = parse_config({**variable, "primary_instance_type": primary})

    assert config.architectures(0) == ["aarch64"]
    assert config.architectures(2) == ["aarch64", "x86_64"]


@pytest.mark.parametrize("core", ["m6g.xlarge", "r7g.2xlarge"])
def test_graviton_core_and_task_nodes_are_accepted(variable, core):
    config = parse_config({**variable, "core_instance_type": core, "spot_task_instance_type": core})

    assert (config.core_instance_type, config.spot_task_instance_type) == (core, core)


@pytest.mark.parametrize("x86", ["m5.xlarge", "g4dn.xlarge", "m6i.2xlarge", "c5n.xlarge", "m5a.xlarge"])
def test_x86_types_are_not_taken_for_graviton(x86):
    assert not is_graviton(x86)


def test_the_default_cluster_is_x86_64_alone(variable):
    assert parse_config(variable).architectures(2) == ["x86_64"]


def test_a_fleet_variable_survives_the_xcom_round_trip(variable):
    config = parse_config({**variable, "core_instance_types": ["m5.xlarge", "m6g.2xlarge"], "core_market": "SPOT"})

    again = parse_config(config.to_dict())

    assert again == config
    assert again.uses_fleets
    assert again.core_node_types == ["m5.xlarge", "m6g.2xlarge"]
