"""The nodes and Airflow reach exactly the parts of the bucket and of EMR that the pipeline uses.

Keys come from ``fruits_airflow.paths``, so a new prefix in the layout fails here until the stack
grants it.
"""

from __future__ import annotations

from typing import Any

import pytest

from fruits_airflow.paths import MODELS_PREFIX, RunPaths

RUN_ID = "manual__2026-11-21T06:00:00+00:00"
ARTIFACTS = "artifacts/0123456789ab/"
STEP_LOG = "logs/j-2AXXXXXXGAPLF/steps/s-1XXXXXXXXXXXX/stderr.gz"
BOOTSTRAP_LOG = "logs/j-2AXXXXXXGAPLF/node/i-0123456789abcdef0/bootstrap-actions/1/stderr.gz"
READ_BY_THE_NODES = ["images/Apple Red 1/0_100.jpg", f"{ARTIFACTS}fruits_spark.zip", f"{ARTIFACTS}bootstrap/install.sh"]
REPROCESS_ALL = pytest.mark.parametrize("reprocess_all", [False, True], ids=["shared features", "own features"])


def written_by_the_steps(paths: RunPaths) -> list[str]:
    """What the Spark steps write, the folder keys and markers of Hadoop's S3 clients included."""
    features = paths.features_prefix.rstrip("/")
    return [
        f"{paths.features_prefix}part-00000.parquet",
        f"{paths.features_prefix}_fruits_model.json",
        f"{paths.rejects_prefix}part-00000.parquet",
        f"{paths.pca_prefix}_SUCCESS",
        f"{paths.report_prefix}explained_variance.json",
        paths.manifest_key,
        features,
        f"{features}_$folder$",
        f"{features.split('/')[0]}_$folder$",
    ]


def actions_of(document: dict[str, Any]) -> set[str]:
    return {
        action
        for statement in document["Statement"]
        for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    }


@pytest.fixture(scope="module")
def nodes(policies) -> dict[str, Any]:
    return policies["EmrInstanceRole.the-pipeline-bucket-prefixes"].document


@pytest.fixture(scope="module")
def airflow(policies) -> dict[str, Any]:
    return policies["AirflowPolicy"].document


@pytest.fixture(scope="module")
def run_paths(bucket):
    return lambda reprocess_all: RunPaths.for_run(bucket, RUN_ID, reprocess_all=reprocess_all, weights="imagenet")


@pytest.mark.parametrize("key", READ_BY_THE_NODES)
def test_the_nodes_read_images_and_artifacts_but_never_change_them(nodes, allows, object_arn, key):
    assert allows(nodes, "s3:GetObject", object_arn(key))
    assert not allows(nodes, "s3:PutObject", object_arn(key))
    assert not allows(nodes, "s3:DeleteObject", object_arn(key))


def test_the_nodes_read_and_add_compiled_models_but_never_delete_them(nodes, allows, object_arn, run_paths):
    key = f"{MODELS_PREFIX}mobilenet_v2-224px-none-seed42-tf2.21.0-v1.tflite"
    assert run_paths(False).model_cache_uri.endswith(f"/{MODELS_PREFIX}")

    assert allows(nodes, "s3:GetObject", object_arn(key))
    assert allows(nodes, "s3:PutObject", object_arn(key))
    assert not allows(nodes, "s3:DeleteObject", object_arn(key))
    assert not allows(nodes, "s3:PutObject", object_arn(f"{ARTIFACTS}fruits_spark.zip"))


@REPROCESS_ALL
@pytest.mark.parametrize("action", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"])
def test_the_nodes_write_features_rejects_and_runs(nodes, allows, object_arn, run_paths, reprocess_all, action):
    keys = written_by_the_steps(run_paths(reprocess_all))

    assert [key for key in keys if not allows(nodes, action, object_arn(key))] == []


def test_the_nodes_push_their_logs_but_never_read_nor_delete_them(nodes, allows, object_arn):
    assert allows(nodes, "s3:PutObject", object_arn(STEP_LOG))
    assert not allows(nodes, "s3:GetObject", object_arn(STEP_LOG))
    assert not allows(nodes, "s3:DeleteObject", object_arn(STEP_LOG))


@pytest.mark.parametrize(
    "resource",
    ["arn:aws:s3:::acme-fruits-pipeline/secrets/credentials.csv", "arn:aws:s3:::someone-elses/images/Kiwi/0_100.jpg"],
)
def test_the_nodes_reach_no_other_object(nodes, allows, resource):
    assert not allows(nodes, "s3:GetObject", resource)
    assert not allows(nodes, "s3:PutObject", resource)


def test_the_nodes_and_airflow_list_the_bucket(nodes, airflow, allows, arn):
    assert allows(nodes, "s3:ListBucket", arn("Bucket"))
    assert allows(airflow, "s3:ListBucket", arn("Bucket"))
    assert allows(airflow, "s3:GetBucketLocation", arn("Bucket"))


@pytest.mark.parametrize("key", ["images/Kiwi/0_100.jpg", f"{ARTIFACTS}pca.py"])
def test_airflow_uploads_images_and_artifacts(airflow, allows, object_arn, key):
    assert allows(airflow, "s3:PutObject", object_arn(key))
    assert allows(airflow, "s3:AbortMultipartUpload", object_arn(key))


@REPROCESS_ALL
def test_airflow_reads_what_it_checks_and_the_step_logs(airflow, allows, object_arn, run_paths, reprocess_all):
    paths = run_paths(reprocess_all)
    read = [
        f"{ARTIFACTS}fruits_spark.zip",
        paths.pca_success_key,
        f"{paths.pca_prefix}part-00000.parquet",
        f"{paths.report_prefix}explained_variance.json",
        paths.manifest_key,
        paths.latest_key,
        STEP_LOG,
    ]

    assert [key for key in read if not allows(airflow, "s3:GetObject", object_arn(key))] == []


@REPROCESS_ALL
def test_airflow_writes_the_run_s_failure_report_and_reads_the_bootstrap_logs(
    airflow, allows, object_arn, run_paths, reprocess_all
):
    paths = run_paths(reprocess_all)

    assert allows(airflow, "s3:PutObject", object_arn(paths.failure_key))
    assert allows(airflow, "s3:GetObject", object_arn(BOOTSTRAP_LOG))


@REPROCESS_ALL
def test_airflow_writes_the_run_s_summary_and_the_networks_latest(
    airflow, allows, object_arn, run_paths, reprocess_all
):
    paths = run_paths(reprocess_all)

    assert allows(airflow, "s3:PutObject", object_arn(paths.summary_key))
    assert allows(airflow, "s3:PutObject", object_arn(paths.latest_key))


def test_airflow_removes_images_and_nothing_else(airflow, allows, object_arn, run_paths):
    paths = run_paths(False)
    others = [f"{ARTIFACTS}fruits_spark.zip", paths.summary_key, paths.latest_key, STEP_LOG]

    assert allows(airflow, "s3:DeleteObject", object_arn("images/Apple Red 1/0_100.jpg"))
    assert [key for key in others if allows(airflow, "s3:DeleteObject", object_arn(key))] == []
    assert not allows(airflow, "s3:GetObject", object_arn(f"{paths.features_prefix}part-00000.parquet"))


@REPROCESS_ALL
def test_airflow_never_writes_nor_deletes_what_the_steps_write(airflow, allows, object_arn, run_paths, reprocess_all):
    keys = [*written_by_the_steps(run_paths(reprocess_all)), STEP_LOG]

    assert [key for key in keys if allows(airflow, "s3:PutObject", object_arn(key))] == []
    assert [key for key in keys if allows(airflow, "s3:DeleteObject", object_arn(key))] == []
    assert "s3:*" not in actions_of(airflow)


def test_airflow_manages_only_the_clusters_of_the_stacks_account_and_region(airflow, allows):
    here = "arn:aws:elasticmapreduce:eu-west-1:123456789012:cluster/j-2AXXXXXXGAPLF"
    elsewhere = "arn:aws:elasticmapreduce:eu-central-1:123456789012:cluster/j-2AXXXXXXGAPLF"

    assert allows(airflow, "elasticmapreduce:TerminateJobFlows", here)
    assert not allows(airflow, "elasticmapreduce:TerminateJobFlows", elsewhere)
