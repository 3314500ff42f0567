from __future__ import annotations

import dataclasses
import gzip
import json
import logging
from types import SimpleNamespace

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from fruits_airflow import model_check, tasks
from fruits_airflow.artifacts import BOOTSTRAP_DIR
from fruits_airflow.config import parse_config
from fruits_airflow.paths import RunPaths
from fruits_airflow.wheelhouse import WHEELHOUSE_DIR_ENV, Wheelhouse
from fruits_contract import MODEL_CACHE_MANIFEST_SUFFIX
from tests.plugins.test_network import private_network

RUN_CONTEXT = {"run_id": "manual__2026-01-01T00:00:00+00:00", "dag": SimpleNamespace(dag_id="fruits_pipeline")}


@pytest.fixture(autouse=True)
def aws_default(monkeypatch):
    """The aws_default connection, with no keys: boto3 finds moto's fake ones in the environment."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))


@pytest.fixture
def set_variable(monkeypatch, network, aws):
    """Set the Variable to ``values`` and the network keys it always holds: a private subnet of moto's EC2 that
    reaches S3 through a gateway endpoint, with its service-access group."""
    network = {**network, **private_network(boto3.client("ec2", region_name="eu-west-1"))}

    def set_to(**values) -> None:
        monkeypatch.setenv("AIRFLOW_VAR_FRUITS_PIPELINE", json.dumps({**network, **values}))

    return set_to


def test_check_config_returns_the_validated_config(set_variable, bucket):
    set_variable(bucket=bucket, core_count=3)

    config = tasks.check_config.function()

    assert config["bucket"] == bucket
    assert config["core_count"] == 3
    assert config["region"] == "eu-west-1"


def test_a_non_eu_region_is_refused_before_aws_is_called(monkeypatch, set_variable):
    set_variable(bucket="fruits-test-bucket", region="us-east-1")

    def no_aws(region):
        raise AssertionError(f"AWS was called in {region}")

    monkeypatch.setattr(tasks, "s3_client", no_aws)

    with pytest.raises(AirflowFailException, match="key 'region' is 'us-east-1', which is outside the EU"):
        tasks.check_config.function()


def test_a_bucket_outside_the_eu_is_refused(set_variable, aws):
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="fruits-in-virginia")
    set_variable(bucket="fruits-in-virginia")

    with pytest.raises(AirflowFailException, match="'us-east-1', which is outside the EU"):
        tasks.check_config.function()


def test_a_bad_variable_fails_without_retries(set_variable):
    set_variable(bucket="fruits-test-bucket", core_count=0)

    with pytest.raises(AirflowFailException, match="key 'core_count' must be between 1 and"):
        tasks.check_config.function()


def test_without_a_landing_folder_nothing_is_uploaded(variable, bucket, s3):
    assert tasks.upload_new_images.function(variable) == {"uploaded": 0, "removed": 0, "n_images": 0}
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_an_empty_landing_folder_fails_in_one_line_and_removes_nothing(variable, bucket, s3, tmp_path):
    s3.put_object(Bucket=bucket, Key="images/Kiwi/0_100.jpg", Body=b"kiwi")

    with pytest.raises(AirflowFailException) as failure:
        tasks.upload_new_images.function({**variable, "images_dir": str(tmp_path)})

    (line,) = str(failure.value).splitlines()
    assert "would remove 1 of the 1 in images/ (100%, above max_removal_share 0.5)" in line
    assert "'max_removal_share' in the Variable fruits_pipeline" in line
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


def test_a_missing_landing_folder_fails_in_one_line(variable, tmp_path):
    with pytest.raises(AirflowFailException, match=r"images_dir .*nowhere is not a folder on this worker"):
        tasks.upload_new_images.function({**variable, "images_dir": str(tmp_path / "nowhere")})


def test_the_landing_folder_is_uploaded_through_aws_default(variable, bucket, s3, tmp_path):
    (tmp_path / "Kiwi").mkdir()
    (tmp_path / "Kiwi" / "0_100.jpg").write_bytes(b"kiwi")

    assert tasks.upload_new_images.function({**variable, "images_dir": str(tmp_path)})["uploaded"] == 1
    assert s3.head_object(Bucket=bucket, Key="images/Kiwi/0_100.jpg")["ContentLength"] == 4


def test_a_missing_security_configuration_fails_the_task_without_retries(variable, emr):
    with pytest.raises(AirflowFailException, match="deploy the project's CloudFormation stack"):
        tasks.check_security_configuration.function(variable)


def test_the_stacks_security_configuration_passes_the_task(variable, emr):
    settings = {"InstanceMetadataServiceConfiguration": {"MinimumInstanceMetadataServiceVersion": 2}}
    emr.create_security_configuration(Name="fruits-pipeline-imdsv2", SecurityConfiguration=json.dumps(settings))

    assert tasks.check_security_configuration.function(variable) == "fruits-pipeline-imdsv2"


@pytest.mark.parametrize(
    ("form", "variable_weights", "expected"),
    [(None, "none", "none"), ("", "none", "none"), ("imagenet", "none", "imagenet"), (None, None, "imagenet")],
)
def test_a_run_that_names_no_weights_takes_the_variable_s(variable, form, variable_weights, expected):
    settings = parse_config({**variable, "weights": variable_weights})

    assert tasks.run_weights(settings, {"weights": form, "reprocess_all": False}) == expected


def published_paths(bucket: str) -> dict:
    """The run's paths as plan_run publishes them."""
    return dataclasses.asdict(RunPaths.for_run(bucket, RUN_CONTEXT["run_id"], reprocess_all=False, weights="imagenet"))


def failure_key(bucket: str) -> str:
    return RunPaths(**published_paths(bucket)).failure_key


def test_a_bootstrap_failure_is_reported_with_its_stderr_tail_in_failure_json(emr_run, s3, bucket, network, caplog):
    message = "On the master instance (i-0b0t), bootstrap action 1 returned a non-zero return code"
    emr_run.end_cluster("TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", message)
    s3.put_object(
        Bucket=bucket,
        Key=f"logs/{emr_run.cluster_id}/node/i-0b0t/bootstrap-actions/1/stderr.gz",
        Body=gzip.compress(
            b"[install_python_deps] installing 52 pinned packages\nerror: Failed to parse: `numpy=== 2`\n"
        ),
    )

    with caplog.at_level(logging.ERROR):
        uri = tasks.report_failure.function(
            {"bucket": bucket, **network}, published_paths(bucket), emr_run.cluster_id, emr_run.step_ids, **RUN_CONTEXT
        )

    assert uri == f"s3://{bucket}/{failure_key(bucket)}"
    assert uri.startswith(f"s3://{bucket}/runs/manual__2026-01-01T00_00_00_00_00-")
    report = json.loads(s3.get_object(Bucket=bucket, Key=failure_key(bucket))["Body"].read())
    assert (report["dag_id"], report["run_id"], report["cause"]) == (
        "fruits_pipeline",
        RUN_CONTEXT["run_id"],
        "cluster",
    )
    assert report["cluster"]["reason_code"] == "BOOTSTRAP_FAILURE"
    assert (report["cost"]["nodes"], report["cost"]["cluster"]["id"]) == ({"m5.xlarge": 1}, emr_run.cluster_id)
    assert report["logs"][0]["tail"].endswith("error: Failed to parse: `numpy=== 2`")
    assert "error: Failed to parse: `numpy=== 2`" in caplog.text


def test_a_run_whose_cluster_was_never_created_reports_nothing(s3, bucket):
    with pytest.raises(AirflowSkipException, match="No cluster was started"):
        tasks.report_failure.function(None, None, None, None, **RUN_CONTEXT)


def test_a_run_with_no_failure_on_emr_writes_no_report(emr_run, s3, bucket, network):
    with pytest.raises(AirflowSkipException, match="no failed step"):
        tasks.report_failure.function(
            {"bucket": bucket, **network}, published_paths(bucket), emr_run.cluster_id, emr_run.step_ids, **RUN_CONTEXT
        )

    assert s3.list_objects_v2(Bucket=bucket, Prefix="runs/")["KeyCount"] == 0


def test_plan_run_publishes_the_paths_its_steps_use_and_they_survive_xcom(bucket, network, staged_artifacts):
    planned = tasks.plan_run.function(
        {"bucket": bucket, **network},
        dataclasses.asdict(staged_artifacts),
        params={"variance": 0.9, "weights": "none", "reprocess_all": True},
        **RUN_CONTEXT,
    )

    paths = RunPaths(**json.loads(json.dumps(planned["paths"])))
    extract_args = planned["steps"][0]["HadoopJarStep"]["Args"]
    assert (paths.own_features, paths.weights_id) == (True, "none")
    assert paths.features_uri in extract_args
    assert paths.pca_success_key == planned["pca_success_key"]


def test_a_failed_step_s_report_and_log_lead_with_the_job_s_own_line(emr_run, s3, bucket, network, caplog):
    job_error = "extract_features: error: no image could be decoded: all 3 under --images s3://b/images/ were rejected"
    emr_run.set_step(0, "FAILED", {"Reason": "Unknown Error."})
    emr_run.set_step(1, "CANCELLED")
    paths = published_paths(bucket)
    job_failure_key = RunPaths(**paths).job_failure_key("extract_features")
    s3.put_object(Bucket=bucket, Key=job_failure_key, Body=json.dumps({"message": job_error}).encode())
    for stream in ("stdout", "stderr"):
        key = f"logs/{emr_run.cluster_id}/steps/{emr_run.step_ids[0]}/{stream}.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(f"{stream} tail\n".encode()))

    with caplog.at_level(logging.ERROR):
        tasks.report_failure.function(
            {"bucket": bucket, **network}, paths, emr_run.cluster_id, emr_run.step_ids, **RUN_CONTEXT
        )

    report = json.loads(s3.get_object(Bucket=bucket, Key=failure_key(bucket))["Body"].read())
    assert report["summary"] == job_error
    assert report["emr_reason"].endswith("FAILED: Unknown Error.")
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert errors[:2] == [job_error, report["emr_reason"]]


def plan(config: dict, staged_artifacts, found: dict, uploaded: dict, caplog=None) -> dict:
    return tasks.plan_run.function(
        config,
        dataclasses.asdict(staged_artifacts),
        found,
        uploaded,
        params={"variance": 0.95, "weights": "none", "reprocess_all": False},
        **RUN_CONTEXT,
    )


def test_the_demo_s_240_images_plan_a_one_node_cluster_and_the_log_says_why(bucket, network, staged_artifacts, caplog):
    caplog.set_level(logging.INFO, logger="fruits_airflow.tasks")
    found = {"n_images": 240, "n_covered": 0}

    planned = plan({"bucket": bucket, **network}, staged_artifacts, found, {"uploaded": 240})

    groups = planned["job_flow_overrides"]["Instances"]["InstanceGroups"]
    assert [group["InstanceRole"] for group in groups] == ["MASTER"]
    assert planned["cluster_size"]["core_count"] == 0
    assert planned["cluster_size"]["images_to_featurize"] == 240
    assert f"Cluster size: {planned['cluster_size']['reason']}" in caplog.text


def test_a_first_run_of_90_000_images_plans_core_nodes(bucket, network, staged_artifacts):
    planned = plan({"bucket": bucket, **network}, staged_artifacts, {"n_images": 90_000, "n_covered": 0}, {})

    groups = {group["InstanceRole"]: group for group in planned["job_flow_overrides"]["Instances"]["InstanceGroups"]}
    assert groups["CORE"]["InstanceCount"] == 2


def test_a_node_type_without_a_price_fails_the_plan_in_one_line(bucket, network, staged_artifacts):
    config = {"bucket": bucket, **network, "primary_instance_type": "c5.4xlarge"}

    with pytest.raises(AirflowFailException, match=r"No price for c5\.4xlarge in eu-west-1") as error:
        plan(config, staged_artifacts, {"n_images": 240, "n_covered": 0}, {})

    assert len(str(error.value).splitlines()) == 1


def test_a_fleet_type_without_a_price_fails_the_plan_only_when_core_nodes_are_planned(
    bucket, network, staged_artifacts
):
    config = {"bucket": bucket, **network, "core_instance_types": ["m5.xlarge", "c5.4xlarge"], "core_market": "SPOT"}

    planned = plan(config, staged_artifacts, {"n_images": 240, "n_covered": 0}, {})
    with pytest.raises(AirflowFailException, match=r"No price for c5\.4xlarge in eu-west-1"):
        plan(config, staged_artifacts, {"n_images": 90_000, "n_covered": 0}, {})

    assert [fleet["InstanceFleetType"] for fleet in planned["job_flow_overrides"]["Instances"]["InstanceFleets"]] == [
        "MASTER"
    ]


def test_a_graviton_primary_is_refused_in_one_line_when_the_run_s_model_is_not_cached(
    bucket, network, staged_artifacts
):
    config = {"bucket": bucket, **network, "primary_instance_type": "m6g.xlarge", "core_instance_type": "m6g.xlarge"}

    with pytest.raises(AirflowFailException) as error:
        plan(config, staged_artifacts, {"n_images": 240, "n_covered": 0}, {})

    (line,) = str(error.value).splitlines()
    assert "key 'primary_instance_type' is 'm6g.xlarge', a Graviton (arm64) type" in line
    assert f"not cached at s3://{bucket}/artifacts/models/" in line
    assert "tensorflow-cpu, which has no aarch64 wheel" in line
    assert "'m5.xlarge'" in line


def test_a_graviton_primary_with_the_model_cached_gets_the_lean_pins_and_the_aarch64_wheelhouse(
    bucket, network, staged_artifacts, s3
):
    config = {"bucket": bucket, **network, "primary_instance_type": "m7g.xlarge", "core_instance_type": "m7g.xlarge"}
    paths = tasks.run_paths(parse_config(config), RUN_CONTEXT["run_id"], {"weights": "none", "reprocess_all": False})
    entry = model_check.plan_model(s3, paths.model_cache_uri, "none").entry_uri.removeprefix(f"s3://{bucket}/")
    for suffix in (MODEL_CACHE_MANIFEST_SUFFIX, ".tflite"):
        s3.put_object(Bucket=bucket, Key=f"{entry}{suffix}", Body=b"cached")

    planned = plan(config, staged_artifacts, {"n_images": 240, "n_covered": 0}, {})

    (action,) = planned["job_flow_overrides"]["BootstrapActions"]
    args = action["ScriptBootstrapAction"]["Args"]
    assert args[args.index("--primary-requirements") + 1] == staged_artifacts.bootstrap_requirements_uri
    assert args[args.index("--wheelhouse") + 1] == f"aarch64={staged_artifacts.wheelhouse_uris['aarch64']}"
    assert args.count("--wheelhouse") == 1


@pytest.fixture
def local_builds(tmp_path, monkeypatch):
    """``make install``'s x86_64 build, as small stand-in layers: the one wheelhouse this machine has."""
    monkeypatch.setenv(WHEELHOUSE_DIR_ENV, str(tmp_path / "wheelhouses"))
    build = Wheelhouse.of(BOOTSTRAP_DIR)
    build.local_dir.mkdir(parents=True)
    for layer in build.layers:
        (build.local_dir / layer).write_bytes(layer.encode())
    return tmp_path / "wheelhouses"


def test_a_graviton_cluster_is_refused_in_one_line_until_the_aarch64_wheelhouse_is_published(
    bucket, network, local_builds
):
    config = {"bucket": bucket, **network, "core_instance_types": ["m5.xlarge", "m6g.xlarge"]}

    with pytest.raises(AirflowFailException) as error:
        tasks.stage_artifacts.function(config)

    (line,) = str(error.value).splitlines()
    key = Wheelhouse.of(BOOTSTRAP_DIR, arch="aarch64").key
    assert f"The aarch64 nodes' wheelhouse s3://{bucket}/artifacts/wheelhouse/{key}/nodes.tar is missing" in line
    assert f"`make publish-wheelhouse BUCKET={bucket} ARCH=aarch64`" in line


def test_a_graviton_cluster_stages_the_aarch64_wheelhouse_s_lean_layer_alone(bucket, network, local_builds, s3):
    build = Wheelhouse.of(BOOTSTRAP_DIR, local_builds, arch="aarch64")
    build.local_dir.mkdir(parents=True)
    (build.local_dir / "nodes.tar").write_bytes(b"aarch64 wheels")

    staged = tasks.stage_artifacts.function({"bucket": bucket, **network, "core_instance_type": "m6g.xlarge"})

    listed = s3.list_objects_v2(Bucket=bucket, Prefix=build.prefix)["Contents"]
    assert [item["Key"] for item in listed] == [f"{build.prefix}nodes.tar"]
    assert staged["wheelhouse_uris"]["aarch64"] == build.uri(bucket)
