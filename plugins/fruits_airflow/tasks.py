"""The Python tasks of the fruits_pipeline DAG: thin glue between Airflow and the modules that do the work.

Each task takes the validated configuration from ``check_config`` (by XCom), so every task of a run
sees the same values even if the Variable is edited mid-run. AWS is reached only through the
``aws_default`` connection, in the configured EU region. Retries and timeouts are set in the DAG.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from botocore.client import BaseClient

from fruits_airflow import artifacts, assets, cluster, output_check, reuse, run_failures, run_summary, steps, upload
from fruits_airflow.aws_errors import access_denied_explained
from fruits_airflow.aws_retries import retrying
from fruits_airflow.config import AWS_CONN_ID, ConfigError, PipelineConfig, load_config, parse_config, require_eu_region
from fruits_airflow.paths import RunPaths

log = logging.getLogger(__name__)


def s3_client(region: str) -> BaseClient:
    """An S3 client of the ``aws_default`` connection, sized for the parallel upload, retrying as AWS advises."""
    config = retrying(max_pool_connections=upload.UPLOAD_WORKERS)
    return S3Hook(aws_conn_id=AWS_CONN_ID, region_name=region, config=config).get_conn()


def emr_client(region: str) -> BaseClient:
    """An EMR client of the ``aws_default`` connection, retrying as AWS advises (throttling above all)."""
    return EmrHook(aws_conn_id=AWS_CONN_ID, region_name=region, config=retrying()).get_conn()


def bucket_region(client: BaseClient, bucket: str) -> str:
    """The region a bucket lives in (GetBucketLocation says None for us-east-1)."""
    return client.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"


@task
@access_denied_explained()
def check_config() -> dict[str, Any]:
    """Validate the Variable and refuse to go on unless the bucket is in the EU; returns the config."""
    try:
        config = load_config()
        location = bucket_region(s3_client(config.region), config.bucket)
        require_eu_region(location)
    except ConfigError as error:
        raise AirflowFailException(str(error)) from error
    if location != config.region:
        log.warning("Bucket %s is in %s, the cluster will run in %s", config.bucket, location, config.region)
    log.info("Configuration: %s", config)
    return config.to_dict()


@task
@access_denied_explained()
def upload_new_images(config: dict[str, Any]) -> dict[str, int]:
    """Make images/ the landing folder's mirror; returns ``uploaded``, ``removed`` and ``n_images``."""
    settings = parse_config(config)
    if settings.images_dir is None:
        log.info("No images_dir configured: the run uses the images already in s3://%s/images/", settings.bucket)
        return dataclasses.asdict(upload.SyncResult(0, 0, 0))
    try:
        result = upload.upload_new_images(
            s3_client(settings.region),
            Path(settings.images_dir),
            settings.bucket,
            max_removal_share=settings.max_removal_share,
        )
    except (FileNotFoundError, upload.RemovalRefusedError) as error:
        raise AirflowFailException(str(error)) from None
    return dataclasses.asdict(result)


@task
@access_denied_explained()
def find_reusable_run(
    config: dict[str, Any], uploaded: dict[str, int], run_id: str | None = None, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Whether the last checked run's outputs still hold: same images in S3, same variance and weights."""
    settings = parse_config(config)
    decision = reuse.find_reusable_run(
        s3_client(settings.region),
        run_paths(settings, run_id, params),
        variance=float(params["variance"]),
        weights=run_weights(settings, params),
        reprocess_all=params["reprocess_all"],
    )
    log.info("%s", decision.reason)
    return decision.to_dict()


@task.branch
def create_cluster_or_reuse(found: dict[str, Any]) -> str:
    """``create_cluster``, unless ``find_reusable_run`` found outputs that still hold: then ``reuse_outputs``."""
    return "reuse_outputs" if found["reused_run_id"] else "create_cluster"


@task
def reuse_outputs(found: dict[str, Any]) -> str:
    """Say which run's outputs this run reuses, instead of creating a cluster; returns that run's id."""
    log.info("%s", found["reason"])
    return found["reused_run_id"]


@task
@access_denied_explained()
def stage_artifacts(config: dict[str, Any]) -> dict[str, Any]:
    """Build this DAG version's Spark artifacts and stage them under s3://BUCKET/artifacts/<version>/."""
    settings = parse_config(config)
    with tempfile.TemporaryDirectory(prefix="fruits-artifacts-") as out_dir:
        built = artifacts.build_spark_artifacts(Path(out_dir))
        staged = artifacts.upload_artifacts(s3_client(settings.region), settings.bucket, built)
    return dataclasses.asdict(staged)


@task
@access_denied_explained()
def check_security_configuration(config: dict[str, Any]) -> str:
    """Fail clearly unless the cluster's security configuration, which the stack creates, requires IMDSv2."""
    settings = parse_config(config)
    try:
        return cluster.check_security_configuration(emr_client(settings.region), settings.security_configuration)
    except ConfigError as error:
        raise AirflowFailException(str(error)) from error


def run_weights(settings: PipelineConfig, params: dict[str, Any]) -> str:
    """The trigger form's weights, else (scheduled runs, an empty field) the Variable's."""
    return params.get("weights") or settings.weights


def run_paths(settings: PipelineConfig, run_id: str, params: dict[str, Any]) -> RunPaths:
    weights = run_weights(settings, params)
    return RunPaths.for_run(settings.bucket, run_id, reprocess_all=params["reprocess_all"], weights=weights)


@task(multiple_outputs=True)
def plan_run(
    config: dict[str, Any],
    staged: dict[str, Any],
    run_id: str | None = None,
    dag: Any = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the later tasks need, computed once: the cluster request, the steps and the run's paths."""
    settings = parse_config(config)
    staged_artifacts = artifacts.StagedArtifacts(**staged)
    paths = run_paths(settings, run_id, params)
    log.info("Run %s writes under %s", run_id, paths.uri(paths.run_prefix))
    return {
        "region": settings.region,
        "bucket": settings.bucket,
        "job_flow_overrides": cluster.job_flow_overrides(
            settings, paths, staged_artifacts, dag_id=dag.dag_id, run_id=run_id
        ),
        "steps": steps.spark_steps(
            paths, staged_artifacts, variance=params["variance"], weights=run_weights(settings, params)
        ),
        "pca_success_key": paths.pca_success_key,
        "paths": dataclasses.asdict(paths),
    }


@task(trigger_rule="none_failed_min_one_success")
@access_denied_explained()
def check_output(
    config: dict[str, Any],
    paths: dict[str, Any],
    uploaded: Any,
    found: dict[str, Any],
    run_id: str | None = None,
    dag: Any = None,
    params: dict[str, Any] | None = None,
    outlet_events: Any = None,
) -> dict[str, Any]:
    """Fail clearly unless the PCA (this run's, or the reused run's) has one row of k values per image with features.

    The image count is the manifest's; the report must be complete. The task runs once the output is
    there, or once ``reuse_outputs`` chose another run's (then that run's outputs are checked). Then it
    writes the run's summary beside its outputs (``summary.json``) and, when the DAG declares the assets'
    aliases as outlets, emits the events of the features dataset and the PCA output with that summary, in
    both cases. Returns the summary without its list of rejects.

    :param paths: the run's paths as ``plan_run`` published them.
    :param uploaded: what ``upload_new_images`` returned, for the summary's counts.
    :param found: what ``find_reusable_run`` decided (``reuse.ReuseDecision.to_dict``).
    """
    settings = parse_config(config)
    run = RunPaths(**paths)
    reused_key = found["reused_run_key"]
    outputs = dataclasses.replace(run, run_key=reused_key) if reused_key else run
    client = s3_client(settings.region)
    try:
        checked = output_check.verify_output(client, outputs)
    except output_check.OutputCheckError as error:
        raise AirflowFailException(f"Run output check failed: {error}.") from error
    if reused_key:
        log.info("Run %s reused run %s's outputs: %s", run_id, found["reused_run_id"], checked.pca_uri)
    summary = run_summary.build_summary(
        client,
        run,
        checked,
        dag_id=dag.dag_id,
        run_id=run_id,
        weights=run_weights(settings, params),
        upload_result=uploaded,
        variance=float(params["variance"]),
        outputs=outputs,
        reused_run_id=found["reused_run_id"],
    )
    run_summary.write_summary(client, run, summary)
    if outlet_events is not None:
        assets.add_events(outlet_events, outputs, summary)
    return run_summary.event_extra(summary)


@task
@access_denied_explained()
def report_failure(
    config: dict[str, Any],
    paths: dict[str, Any],
    job_flow_id: str | None,
    step_ids: list[str] | None,
    run_id: str | None = None,
    dag: Any = None,
) -> str:
    """Log why the run's steps or cluster failed, with the tails of the cluster's logs; write it as failure.json.

    It runs after the teardown, so that waiting for EMR to archive the logs keeps no cluster alive, and
    is skipped when nothing failed. Returns the report's URI, ``s3://BUCKET/runs/<run key>/failure.json``.
    """
    if not job_flow_id:
        raise AirflowSkipException("No cluster was started: EMR has nothing to report.")
    settings = parse_config(config)
    failure = run_failures.find_failure(emr_client(settings.region), job_flow_id, step_ids or [])
    if failure is None:
        raise AirflowSkipException(f"EMR shows no failed step and no early end of cluster {job_flow_id}.")
    client = s3_client(settings.region)
    failure = run_failures.with_log_tails(client, failure)
    run_failures.log_failure(failure)
    where = RunPaths(**paths)
    report = {
        "dag_id": dag.dag_id,
        "run_id": run_id,
        "reported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **failure.to_dict(),
    }
    client.put_object(
        Bucket=settings.bucket,
        Key=where.failure_key,
        Body=json.dumps(report, indent=2).encode(),
        ContentType="application/json",
    )
    log.info("Failure report written to %s", where.uri(where.failure_key))
    return where.uri(where.failure_key)
