from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from botocore.validate import validate_parameters

from fruits_airflow.cluster import (
    NODE_PYTHON,
    check_security_configuration,
    images_to_featurize,
    job_flow_overrides,
    size_cluster,
)
from fruits_airflow.config import ConfigError, parse_config
from fruits_airflow.paths import RunPaths
from local_aws.emr_fleet_checks import check_fleets

RUN_ID = "manual__2025-03-01T10:15:30+00:00"


@pytest.fixture
def request_for(staged_artifacts, variable):
    """Build a run's RunJobFlow request from Variable-shaped overrides."""

    def build(to_featurize=None, **overrides):
        config = parse_config({**variable, **overrides})
        paths = RunPaths.for_run(config.bucket, RUN_ID, reprocess_all=False, weights="imagenet")
        size = None if to_featurize is None else size_cluster(config, to_featurize)
        return job_flow_overrides(config, paths, staged_artifacts, dag_id="fruits_pipeline", run_id=RUN_ID, size=size)

    return build


def groups(job_flow: dict) -> dict[str, dict]:
    return {group["InstanceRole"]: group for group in job_flow["Instances"]["InstanceGroups"]}


def test_the_default_cluster_is_one_primary_and_two_on_demand_core_m5_xlarge(request_for):
    by_role = groups(request_for())

    assert sorted(by_role) == ["CORE", "MASTER"]
    assert (by_role["MASTER"]["InstanceCount"], by_role["MASTER"]["InstanceType"]) == (1, "m5.xlarge")
    assert (by_role["CORE"]["InstanceCount"], by_role["CORE"]["InstanceType"]) == (2, "m5.xlarge")
    assert {group["Market"] for group in by_role.values()} == {"ON_DEMAND"}


def test_spot_task_nodes_are_added_only_when_asked_for(request_for):
    by_role = groups(request_for(spot_task_count=3, spot_task_instance_type="r5.xlarge"))

    assert by_role["TASK"] == {
        "Name": "spot task",
        "Market": "SPOT",
        "InstanceRole": "TASK",
        "InstanceType": "r5.xlarge",
        "InstanceCount": 3,
    }


@pytest.mark.parametrize("to_featurize", [0, 240, 2_000, 20_000])
def test_a_small_increment_runs_on_the_primary_node_alone(request_for, to_featurize):
    by_role = groups(request_for(to_featurize, spot_task_count=2))

    assert list(by_role) == ["MASTER"]
    assert by_role["MASTER"]["InstanceCount"] == 1


@pytest.mark.parametrize(("to_featurize", "core_count"), [(20_001, 1), (45_000, 1), (45_001, 2), (90_000, 2)])
def test_a_larger_batch_adds_a_core_node_per_images_per_core_node(request_for, to_featurize, core_count):
    assert groups(request_for(to_featurize))["CORE"]["InstanceCount"] == core_count


def test_core_nodes_can_be_spot_and_the_primary_stays_on_demand(request_for):
    by_role = groups(request_for(90_000, core_market="SPOT"))

    assert (by_role["MASTER"]["Market"], by_role["CORE"]["Market"]) == ("ON_DEMAND", "SPOT")


def test_core_nodes_stop_at_core_count_and_the_plan_says_so(variable):
    size = size_cluster(parse_config({**variable, "core_count": 3, "images_per_core_node": 1000}), 90_000)

    assert size.core_count == 3
    assert "capped at core_count = 3" in size.reason


def test_the_thresholds_come_from_the_variable(variable):
    config = parse_config({**variable, "single_node_max_images": 0, "images_per_core_node": 100})

    assert size_cluster(config, 0).core_count == 0
    assert size_cluster(config, 150).core_count == 2
    assert "single_node_max_images = 0" in size_cluster(config, 150).reason


@pytest.mark.parametrize(
    ("n_images", "n_covered", "n_uploaded", "expected"),
    [(22_688, 0, 0, 22_688), (24_688, 22_688, 2_000, 2_000), (22_688, 22_688, 10, 10), (100, 200, 0, 0)],
)
def test_the_images_to_featurize_are_those_the_last_run_missed_or_this_one_uploaded(
    n_images, n_covered, n_uploaded, expected
):
    assert images_to_featurize(n_images, n_covered, n_uploaded) == expected


def test_the_cluster_waits_for_airflow_to_end_it_with_an_idle_backstop(request_for):
    job_flow = request_for(idle_timeout=1800)

    assert job_flow["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert job_flow["Instances"]["TerminationProtected"] is False
    assert job_flow["AutoTerminationPolicy"] == {"IdleTimeout": 1800}


def test_the_cluster_runs_spark_on_emr_7_and_logs_under_the_bucket(request_for):
    job_flow = request_for()

    assert job_flow["ReleaseLabel"].startswith("emr-7.")
    assert job_flow["Applications"] == [{"Name": "Spark"}]
    assert job_flow["LogUri"] == "s3://fruits-test-bucket/logs/"


def test_the_bootstrap_action_installs_the_staged_requirements_from_the_wheelhouse(request_for, staged_artifacts):
    (action,) = request_for()["BootstrapActions"]

    assert action["ScriptBootstrapAction"] == {
        "Path": staged_artifacts.bootstrap_script_uri,
        "Args": [
            *("--region", "eu-west-1"),
            *("--wheelhouse", f"x86_64={staged_artifacts.wheelhouse_uris['x86_64']}"),
            *("--installer-requirements", staged_artifacts.bootstrap_installer_requirements_uri),
            *("--requirements", staged_artifacts.bootstrap_requirements_uri),
            *("--primary-requirements", staged_artifacts.bootstrap_primary_requirements_uri),
        ],
    }


def bootstrap_options(job_flow: dict) -> dict[str, list[str]]:
    (action,) = job_flow["BootstrapActions"]
    args = action["ScriptBootstrapAction"]["Args"]
    options: dict[str, list[str]] = {}
    for option, value in zip(args[::2], args[1::2], strict=True):
        options.setdefault(option, []).append(value)
    return options


def test_the_bootstrap_action_is_given_the_cluster_s_region(request_for):
    assert bootstrap_options(request_for(region="eu-central-1"))["--region"] == ["eu-central-1"]


@pytest.mark.parametrize(
    ("overrides", "arches"),
    [
        ({"core_instance_type": "m6g.xlarge"}, ["aarch64", "x86_64"]),
        ({"primary_instance_type": "m7g.xlarge", "core_instance_type": "m7g.xlarge"}, ["aarch64"]),
        ({"core_instance_types": ["m5.xlarge", "m6g.xlarge"]}, ["aarch64", "x86_64"]),
        ({"spot_task_instance_type": "c7g.xlarge", "spot_task_count": 1}, ["aarch64", "x86_64"]),
    ],
    ids=["graviton-core", "graviton-only", "mixed-fleet", "graviton-task"],
)
def test_each_architecture_of_the_cluster_s_types_gets_its_wheelhouse(request_for, staged_artifacts, overrides, arches):
    wheelhouses = bootstrap_options(request_for(**overrides))["--wheelhouse"]

    assert wheelhouses == [f"{arch}={staged_artifacts.wheelhouse_uris[arch]}" for arch in arches]


def test_a_primary_only_cluster_takes_the_primary_s_architecture_alone(request_for, staged_artifacts):
    job_flow = request_for(to_featurize=10, core_instance_type="m6g.xlarge")

    assert bootstrap_options(job_flow)["--wheelhouse"] == [f"x86_64={staged_artifacts.wheelhouse_uris['x86_64']}"]


def test_spark_runs_the_python_the_bootstrap_installed(request_for):
    configurations = {item["Classification"]: item for item in request_for()["Configurations"]}

    (export,) = configurations["spark-env"]["Configurations"]
    assert export["Classification"] == "export"
    assert export["Properties"]["PYSPARK_PYTHON"] == NODE_PYTHON
    assert export["Properties"]["PYSPARK_DRIVER_PYTHON"] == NODE_PYTHON
    assert configurations["spark-defaults"]["Properties"]["spark.pyspark.python"] == NODE_PYTHON


def test_a_private_subnet_s_cluster_names_the_service_access_group(request_for):
    instances = request_for(service_access_security_group="sg-0c3")["Instances"]

    assert instances["ServiceAccessSecurityGroup"] == "sg-0c3"


def test_a_public_subnet_s_cluster_names_no_service_access_group(request_for):
    assert "ServiceAccessSecurityGroup" not in request_for()["Instances"]


def test_the_driver_and_every_executor_know_the_cluster_s_region(request_for):
    configurations = {item["Classification"]: item for item in request_for(region="eu-central-1")["Configurations"]}

    (export,) = configurations["spark-env"]["Configurations"]
    assert export["Properties"]["AWS_REGION"] == "eu-central-1"
    defaults = configurations["spark-defaults"]["Properties"]
    assert defaults["spark.executorEnv.AWS_REGION"] == "eu-central-1"
    assert defaults["spark.yarn.appMasterEnv.AWS_REGION"] == "eu-central-1"


def test_roles_and_security_configuration_come_from_the_config(request_for):
    job_flow = request_for(service_role="svc", job_flow_role="profile")

    assert (job_flow["ServiceRole"], job_flow["JobFlowRole"]) == ("svc", "profile")
    assert job_flow["SecurityConfiguration"] == "fruits-pipeline-imdsv2"


def test_the_cluster_launches_into_the_variables_subnet_with_its_security_groups(request_for):
    instances = request_for(
        subnet_id="subnet-0abc",
        emr_managed_master_security_group="sg-0a11",
        emr_managed_slave_security_group="sg-0c0e2",
    )["Instances"]

    assert instances["Ec2SubnetId"] == "subnet-0abc"
    assert (instances["EmrManagedMasterSecurityGroup"], instances["EmrManagedSlaveSecurityGroup"]) == (
        "sg-0a11",
        "sg-0c0e2",
    )


def test_tags_name_the_dag_run(request_for, staged_artifacts):
    tags = {tag["Key"]: tag["Value"] for tag in request_for()["Tags"]}

    assert tags["airflow:dag_id"] == "fruits_pipeline"
    assert tags["airflow:run_id"] == RUN_ID
    assert tags["fruits-pipeline:artifacts"] == staged_artifacts.version


def test_emr_accepts_the_request(request_for, provisioned_variable, emr, emr_hook, assert_emr_enums):
    overrides = request_for(spot_task_count=2, **provisioned_variable)
    assert_emr_enums("RunJobFlow", overrides)

    cluster = emr.describe_cluster(ClusterId=emr_hook.create_job_flow(overrides)["JobFlowId"])["Cluster"]

    attributes = cluster["Ec2InstanceAttributes"]
    assert attributes["Ec2SubnetId"] == provisioned_variable["subnet_id"]
    assert attributes["EmrManagedMasterSecurityGroup"] == provisioned_variable["emr_managed_master_security_group"]
    assert attributes["EmrManagedSlaveSecurityGroup"] == provisioned_variable["emr_managed_slave_security_group"]
    assert cluster["LogUri"] == "s3://fruits-test-bucket/logs/"
    assert cluster["ReleaseLabel"] == overrides["ReleaseLabel"]
    assert {tag["Key"]: tag["Value"] for tag in cluster["Tags"]}["airflow:run_id"] == RUN_ID


def test_emr_accepts_a_primary_only_request(request_for, provisioned_variable, emr, emr_hook, assert_emr_enums):
    overrides = request_for(240, **provisioned_variable)
    assert_emr_enums("RunJobFlow", overrides)

    cluster_id = emr_hook.create_job_flow(overrides)["JobFlowId"]

    (group,) = emr.list_instance_groups(ClusterId=cluster_id)["InstanceGroups"]
    assert (group["InstanceGroupType"], group["RequestedInstanceCount"]) == ("MASTER", 1)


def test_an_invalid_field_in_the_request_fails(request_for, emr_hook):
    overrides = request_for()
    overrides["Instances"]["KeepAlive"] = True

    with pytest.raises(ParamValidationError, match="KeepAlive"):
        emr_hook.create_job_flow(overrides)


def test_an_invalid_enum_in_the_request_fails(request_for, assert_emr_enums):
    overrides = request_for()
    overrides["Instances"]["InstanceGroups"][0]["Market"] = "CHEAP"

    with pytest.raises(AssertionError, match="Market='CHEAP'"):
        assert_emr_enums("RunJobFlow", overrides)


IMDSV2 = {"InstanceMetadataServiceConfiguration": {"MinimumInstanceMetadataServiceVersion": 2}}


def test_a_security_configuration_requiring_imdsv2_passes(emr):
    emr.create_security_configuration(Name="fruits-pipeline-imdsv2", SecurityConfiguration=json.dumps(IMDSV2))

    assert check_security_configuration(emr, "fruits-pipeline-imdsv2") == "fruits-pipeline-imdsv2"


def test_a_missing_security_configuration_fails_naming_the_stack_and_is_not_created(emr):
    with pytest.raises(
        ConfigError,
        match=r"'fruits-pipeline-imdsv2' does not exist in eu-west-1: deploy the project's CloudFormation stack "
        r"\(cloudformation/fruits-pipeline.yaml\)",
    ):
        check_security_configuration(emr, "fruits-pipeline-imdsv2")

    with pytest.raises(ClientError, match="InvalidRequestException"):
        emr.describe_security_configuration(Name="fruits-pipeline-imdsv2")


def test_an_existing_security_configuration_without_imdsv2_is_refused(emr):
    emr.create_security_configuration(Name="legacy", SecurityConfiguration=json.dumps({"EncryptionConfiguration": {}}))

    with pytest.raises(ConfigError, match="'legacy' in eu-west-1 does not require IMDSv2"):
        check_security_configuration(emr, "legacy")


def test_the_cluster_is_tagged_for_the_emr_managed_policies(request_for):
    tags = {tag["Key"]: tag["Value"] for tag in request_for()["Tags"]}

    # AmazonEMRServicePolicy_v2 only launches instances for clusters carrying this tag.
    assert tags["for-use-with-amazon-emr-managed-policies"] == "true"


FLEET_TYPES = ["m5.xlarge", "m5a.xlarge", "m6i.2xlarge"]


def fleets(job_flow: dict) -> dict[str, dict]:
    assert "InstanceGroups" not in job_flow["Instances"]
    return {fleet["InstanceFleetType"]: fleet for fleet in job_flow["Instances"]["InstanceFleets"]}


def test_core_instance_types_make_a_spot_core_fleet_with_an_on_demand_fallback(request_for):
    by_type = fleets(request_for(90_000, core_instance_types=FLEET_TYPES, core_market="SPOT"))

    assert by_type["MASTER"]["TargetOnDemandCapacity"] == 1
    assert by_type["MASTER"]["InstanceTypeConfigs"] == [{"InstanceType": "m5.xlarge"}]
    core = by_type["CORE"]
    assert (core["TargetSpotCapacity"], core["TargetOnDemandCapacity"]) == (2, 0)
    assert [(c["InstanceType"], c["WeightedCapacity"]) for c in core["InstanceTypeConfigs"]] == [
        ("m5.xlarge", 1),
        ("m5a.xlarge", 1),
        ("m6i.2xlarge", 2),
    ]
    assert core["LaunchSpecifications"]["SpotSpecification"] == {
        "TimeoutDurationMinutes": 5,
        "TimeoutAction": "SWITCH_TO_ON_DEMAND",
        "AllocationStrategy": "capacity-optimized",
    }
    assert core["LaunchSpecifications"]["OnDemandSpecification"] == {"AllocationStrategy": "lowest-price"}


def test_an_on_demand_core_fleet_has_no_spot_target(request_for):
    core = fleets(request_for(90_000, core_instance_types=FLEET_TYPES, spot_timeout_minutes=30))["CORE"]

    assert (core["TargetSpotCapacity"], core["TargetOnDemandCapacity"]) == (0, 2)
    assert "SpotSpecification" not in core["LaunchSpecifications"]


def test_a_small_increment_on_fleets_is_the_primary_fleet_alone(request_for):
    assert list(fleets(request_for(240, core_instance_types=FLEET_TYPES, spot_task_count=2))) == ["MASTER"]


def test_spot_task_nodes_on_fleets_are_a_spot_task_fleet_of_the_core_types(request_for):
    task = fleets(request_for(90_000, core_instance_types=FLEET_TYPES, spot_task_count=3))["TASK"]

    assert (task["TargetSpotCapacity"], task["TargetOnDemandCapacity"]) == (3, 0)
    assert [c["InstanceType"] for c in task["InstanceTypeConfigs"]] == FLEET_TYPES


@pytest.mark.parametrize("to_featurize", [240, 90_000])
def test_emr_s_checks_accept_the_fleet_request(request_for, assert_emr_enums, to_featurize):
    overrides = request_for(to_featurize, core_instance_types=FLEET_TYPES, core_market="SPOT", spot_task_count=1)
    assert_emr_enums("RunJobFlow", overrides)
    validate_parameters(
        overrides,
        boto3.client("emr", region_name="eu-west-1").meta.service_model.operation_model("RunJobFlow").input_shape,
    )

    # The embedded endpoint's checks of what EMR refuses (tests/local_aws/test_emr_fleets.py).
    assert check_fleets(overrides["Instances"], overrides["ReleaseLabel"]) == overrides["Instances"]["InstanceFleets"]


def test_the_plan_says_the_core_nodes_are_a_fleet(variable):
    config = parse_config({**variable, "core_instance_types": FLEET_TYPES, "core_market": "SPOT"})

    assert "core fleet of m5.xlarge, m5a.xlarge, m6i.2xlarge, spot" in size_cluster(config, 90_000).reason
