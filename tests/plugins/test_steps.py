from __future__ import annotations

import pytest
from botocore.exceptions import ParamValidationError

from fruits_airflow.config import parse_config
from fruits_airflow.paths import RunPaths
from fruits_airflow.steps import spark_steps

RUN_ID = "manual__2025-03-01T10:15:30+00:00"
PATHS = RunPaths.for_run("fruits-test-bucket", RUN_ID, reprocess_all=False, weights="imagenet")


@pytest.fixture
def steps(staged_artifacts):
    """Build a run's steps; keyword arguments override the paths and the trigger form's values."""

    def build(paths=PATHS, variance=0.95, weights="imagenet"):
        return spark_steps(paths, staged_artifacts, variance=variance, weights=weights)

    return build


@pytest.fixture
def cluster_id(emr_hook, staged_artifacts, variable):
    from fruits_airflow.cluster import job_flow_overrides

    config = parse_config(variable)
    request = job_flow_overrides(config, PATHS, staged_artifacts, dag_id="fruits_pipeline", run_id=RUN_ID)
    return emr_hook.create_job_flow(request)["JobFlowId"]


def args_of(step: dict) -> list[str]:
    return step["HadoopJarStep"]["Args"]


def option(step: dict, name: str) -> str:
    args = args_of(step)
    return args[args.index(name) + 1]


def test_features_are_extracted_before_the_pca(steps):
    assert [step["Name"] for step in steps()] == ["extract_features", "pca"]


def test_a_failed_step_never_lets_the_next_one_continue(steps):
    assert {step["ActionOnFailure"] for step in steps()} == {"CANCEL_AND_WAIT"}


def test_each_step_submits_its_staged_script_with_the_staged_package(steps, staged_artifacts):
    extract_features, pca = steps()

    for step, script in ((extract_features, "extract_features.py"), (pca, "pca.py")):
        assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
        assert args_of(step)[0] == "spark-submit"
        assert option(step, "--py-files") == staged_artifacts.py_files_uri
        assert option(step, "--deploy-mode") == "client"
        assert staged_artifacts.scripts[script] in args_of(step)


def test_extract_features_reads_the_images_and_grows_the_shared_features(steps):
    extract_features, _ = steps(weights="none")

    assert option(extract_features, "--images") == "s3://fruits-test-bucket/images/"
    assert option(extract_features, "--features") == PATHS.features_uri == "s3://fruits-test-bucket/features/imagenet/"
    assert option(extract_features, "--rejects") == "s3://fruits-test-bucket/features_rejects/imagenet/"
    assert option(extract_features, "--weights") == "none"
    assert option(extract_features, "--manifest") == PATHS.uri(PATHS.manifest_key)


def test_extract_features_shares_one_model_cache_beside_the_code_versions(steps):
    extract_features, _ = steps()
    own_run = RunPaths.for_run("fruits-test-bucket", "manual__1", reprocess_all=True, weights="none")
    (own_extract_features, _) = steps(paths=own_run)

    assert option(extract_features, "--model-cache") == "s3://fruits-test-bucket/artifacts/models/"
    assert option(own_extract_features, "--model-cache") == option(extract_features, "--model-cache")


def test_the_pca_reads_those_features_and_writes_under_the_run(steps):
    _, pca = steps(variance=0.8)

    assert option(pca, "--features") == PATHS.features_uri
    assert option(pca, "--output") == PATHS.pca_uri
    assert option(pca, "--report") == PATHS.report_uri
    assert option(pca, "--variance") == "0.8"
    assert option(pca, "--images") == "s3://fruits-test-bucket/images/"
    assert option(pca, "--manifest") == PATHS.uri(PATHS.manifest_key)
    assert PATHS.pca_uri.startswith(f"s3://fruits-test-bucket/runs/{PATHS.run_key}/")


def test_a_run_with_its_own_features_uses_them_in_both_steps(steps):
    own = RunPaths.for_run("fruits-test-bucket", "manual__1", reprocess_all=True, weights="imagenet")

    extract_features, pca = steps(paths=own)

    assert option(extract_features, "--features") == option(pca, "--features") == own.features_uri
    assert own.features_uri.endswith("/runs/manual__1/features/")


def test_emr_accepts_the_steps(steps, cluster_id, emr, emr_hook, assert_emr_enums):
    assert_emr_enums("AddJobFlowSteps", {"JobFlowId": cluster_id, "Steps": steps()})

    # The call EmrAddStepsOperator makes.
    step_ids = emr_hook.add_job_flow_steps(job_flow_id=cluster_id, steps=steps())

    listed = emr.list_steps(ClusterId=cluster_id)["Steps"]
    assert len(step_ids) == 2
    assert {step["Name"] for step in listed} == {"extract_features", "pca"}


def test_an_invalid_step_field_fails(steps, cluster_id, emr_hook):
    broken = steps()
    broken[0]["HadoopJarStep"]["Arguments"] = broken[0]["HadoopJarStep"].pop("Args")

    with pytest.raises(ParamValidationError, match="Arguments"):
        emr_hook.add_job_flow_steps(job_flow_id=cluster_id, steps=broken)


def test_an_invalid_action_on_failure_fails(steps, assert_emr_enums):
    broken = steps()
    broken[1]["ActionOnFailure"] = "IGNORE"

    with pytest.raises(AssertionError, match="ActionOnFailure='IGNORE'"):
        assert_emr_enums("AddJobFlowSteps", {"JobFlowId": "j-1", "Steps": broken})
