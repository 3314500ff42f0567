"""The Python tasks of the fruits_pipeline DAG: thin glue between Airflow and the modules that do the work.

Each task takes the validated configuration from ``check_config`` (by XCom), so every task of a run
sees the same values even if the Variable is edited mid-run. AWS is reached only through the
``aws_default`` connection, in the configured EU region. Retries and timeouts are set in the DAG.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from boto3.exceptions import S3UploadFailedError
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError

from fruits_airflow import (
    artifacts,
    assets,
    cluster,
    cost,
    model_check,
    network,
    output_check,
    preflight,
    reuse,
    run_failures,
    run_summary,
    steps,
    upload,
    wheelhouse,
)
from fruits_airflow.aws_errors import access_denied_explained
from fruits_airflow.aws_retries import retrying
from fruits_airflow.config import (
    AWS_CONN_ID,
    ConfigError,
    PipelineConfig,
    load_config,
    parse_config,
    require_compiling_primary,
    require_eu_region,
)
from fruits_airflow.paths import RunPaths, run_key

log = logging.getLogger(__name__)

# The DAG's task that creates the run's cluster; check_output pulls the cluster's id from it, for the bill.
CREATE_CLUSTER_TASK_ID = "create_cluster"
# report_failure has waited for the logs already (after terminate_cluster): it bills the cluster as it is then,
# until now if it has not ended yet (the bill says it is not final).
FAILURE_BILL_WAIT_SECONDS = 0
T = TypeVar("T")


def s3_client(region: str) -> BaseClient:
    """An S3 client of the ``aws_default`` connection, sized for the parallel upload, retrying as AWS advises."""
    config = retrying(max_pool_connections=upload.UPLOAD_WORKERS)
    return S3Hook(aws_conn_id=AWS_CONN_ID, region_name=region, config=config).get_conn()


def emr_client(region: str) -> BaseClient:
    """An EMR client of the ``aws_default`` connection, retrying as AWS advises (throttling above all)."""
    return EmrHook(aws_conn_id=AWS_CONN_ID, region_name=region, config=retrying()).get_conn()


def ec2_client(region: str) -> BaseClient:
    """An EC2 client of the ``aws_default`` connection (the subnet's description)."""
    return AwsBaseHook(aws_conn_id=AWS_CONN_ID, client_type="ec2", region_name=region).get_conn()


class RunRefused(AirflowFailException):
    """A refusal of ``check_config`` once the bucket is known to be usable: ``config`` says where to record it."""

    def __init__(self, line: str, config: dict[str, Any]) -> None:
        super().__init__(line)
        self.config = config


def records_refusal(function: Callable[..., T]) -> Callable[..., T]:
    """Record the one line with which a task refuses the run before any cluster, for the demo and the Report tab.

    The record (``run_failures.refusal_report``) goes to the task's XCom ``refusal`` (given its ``ti``), and to
    the run's ``failure.json`` when the bucket is usable: the task takes the checked config (every task after
    ``check_config``), or ``check_config`` refused after checking the bucket (``RunRefused``). A bucket that does
    not exist, is outside the EU or is denied holds no record: the XCom alone says why.
    """

    @functools.wraps(function)
    def recording(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except AirflowFailException as refused:
            bound = inspect.signature(function).bind_partial(*args, **kwargs).arguments
            config = refused.config if isinstance(refused, RunRefused) else bound.get("config")
            record_refusal(str(refused), bound.get("ti"), config)
            raise

    return recording


def record_refusal(line: str, ti: Any, config: dict[str, Any] | None) -> None:
    """See ``records_refusal``; a record that cannot be written is logged, and the refusal stands."""
    if ti is None:
        return
    report = run_failures.refusal_report(line, dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id)
    settings = parse_config(config) if config else None
    if settings is not None:
        with contextlib.suppress(ConfigError):  # a price table plan_run refused: the record goes without its $0
            report["cost"] = cost.no_bill(cost.load_prices(settings.prices), settings.region)
    ti.xcom_push(key=run_failures.REFUSAL_XCOM_KEY, value=report)
    if settings is None:
        return
    try:
        where = run_failures.write_report(
            s3_client(settings.region), RunPaths(settings.bucket, run_key(ti.run_id)), report
        )
    except (BotoCoreError, ClientError, S3UploadFailedError) as error:
        log.warning("The refusal could not be recorded in s3://%s: %s", settings.bucket, error)
        return
    log.info("Refusal recorded in %s", where)


@task
@records_refusal
@access_denied_explained()
def check_config(params: dict[str, Any] | None = None, ti: Any = None) -> dict[str, Any]:
    """Validate the Variable and the run's parameters, and refuse to go on unless the bucket exists in the EU,
    the weights file (if any) can be read by the nodes, and a cluster can work in the subnet (public or
    private: fruits_airflow.network); returns the config.

    :param ti: the task instance, to record a refusal (``records_refusal``).
    """
    try:
        config = load_config()
        client = s3_client(config.region)
        location = preflight.bucket_region(client, config.bucket)
        require_eu_region(location)
    except (ConfigError, preflight.RefusedError) as error:
        raise AirflowFailException(str(error)) from error
    try:
        if params is not None:
            preflight.check_variance(params.get("variance"))
            preflight.check_weights_file(client, config.bucket, run_weights(config, params))
        network.check_subnet(ec2_client(config.region), config)
    except (ConfigError, preflight.RefusedError) as error:
        raise RunRefused(str(error), config.to_dict()) from error
    if location != config.region:
        log.warning("Bucket %s is in %s, the cluster will run in %s", config.bucket, location, config.region)
    log.info("Configuration: %s", config)
    return config.to_dict()


@task
@records_refusal
@access_denied_explained()
def upload_new_images(config: dict[str, Any], ti: Any = None) -> dict[str, int]:
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
    except (FileNotFoundError, upload.LandingFolderError) as error:
        raise AirflowFailException(str(error)) from None
    return dataclasses.asdict(result)


@task
@records_refusal
@access_denied_explained()
def find_reusable_run(
    config: dict[str, Any],
    uploaded: dict[str, int],
    run_id: str | None = None,
    params: dict[str, Any] | None = None,
    ti: Any = None,
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
    try:
        preflight.require_enough_images(decision.n_images, settings.bucket, settings.images_dir)
    except preflight.RefusedError as error:
        raise AirflowFailException(str(error)) from None
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
@records_refusal
@access_denied_explained()
def stage_artifacts(config: dict[str, Any], ti: Any = None) -> dict[str, Any]:
    """Build this DAG version's Spark artifacts and stage them under s3://BUCKET/artifacts/<version>/; the
    nodes' wheelhouse of every architecture the Variable's instance types have (aarch64 for Graviton) must be in
    the bucket too (uploaded from this machine's build when it has one)."""
    settings = parse_config(config)
    client = s3_client(settings.region)
    with tempfile.TemporaryDirectory(prefix="fruits-artifacts-") as out_dir:
        built = artifacts.build_spark_artifacts(Path(out_dir))
        staged = artifacts.upload_artifacts(client, settings.bucket, built)
    try:
        for arch in settings.architectures(settings.core_count):
            build = wheelhouse.Wheelhouse.of(artifacts.BOOTSTRAP_DIR, arch=arch)
            wheelhouse.ensure_published(client, settings.bucket, build)
    except wheelhouse.WheelhouseMissingError as error:
        raise AirflowFailException(str(error)) from None
    return dataclasses.asdict(staged)


@task
@records_refusal
@access_denied_explained()
def check_security_configuration(config: dict[str, Any], ti: Any = None) -> str:
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


def plan_size(settings: PipelineConfig, found: dict[str, Any] | None, uploaded: Any) -> cluster.ClusterSize:
    """The cluster's size for what ``find_reusable_run`` and ``upload_new_images`` saw; its prices must be known.

    :raises ConfigError: when the price table has no price for a node type of the cluster in its region.
    """
    found = found or {}
    n_uploaded = uploaded.get("uploaded", 0) if isinstance(uploaded, dict) else 0
    to_featurize = cluster.images_to_featurize(found.get("n_images", 0), found.get("n_covered", 0), n_uploaded)
    size = cluster.size_cluster(settings, to_featurize)
    prices = cost.load_prices(settings.prices)
    node_types = [settings.primary_instance_type] + (settings.core_node_types if size.core_count else [])
    for node_type in node_types:
        prices.node_price(settings.region, node_type)
    return size


@task(multiple_outputs=True)
@records_refusal
@access_denied_explained()
def plan_run(
    config: dict[str, Any],
    staged: dict[str, Any],
    found: dict[str, Any] | None = None,
    uploaded: Any = None,
    run_id: str | None = None,
    dag: Any = None,
    params: dict[str, Any] | None = None,
    ti: Any = None,
) -> dict[str, Any]:
    """Everything the later tasks need, computed once: the cluster's size and request, the steps, the run's paths.

    Whether the model cache holds the run's model decides the primary node's packages; a model the nodes
    cannot compile (ImageNet's weights file not in the bucket, or a Graviton primary, which gets no TensorFlow)
    fails the run here, before any cluster.

    :param found: what ``find_reusable_run`` saw (the images in S3, those its network's last run covered).
    :param uploaded: what ``upload_new_images`` returned.
    """
    settings = parse_config(config)
    staged_artifacts = artifacts.StagedArtifacts(**staged)
    paths = run_paths(settings, run_id, params)
    weights = run_weights(settings, params)
    log.info("Run %s writes under %s", run_id, paths.uri(paths.run_prefix))
    try:
        model = model_check.plan_model(s3_client(settings.region), paths.model_cache_uri, weights)
        if not model.cached:
            require_compiling_primary(settings, model.entry_uri)
        size = plan_size(settings, found, uploaded)
    except model_check.ModelInputMissingError as error:
        raise AirflowFailException(str(error)) from None
    except ConfigError as error:
        raise AirflowFailException(str(error)) from error
    log.info("Cluster size: %s", size.reason)
    return {
        "region": settings.region,
        "bucket": settings.bucket,
        "cluster_size": size.to_dict(),
        "job_flow_overrides": cluster.job_flow_overrides(
            settings,
            paths,
            staged_artifacts,
            dag_id=dag.dag_id,
            run_id=run_id,
            model_cached=model.cached,
            size=size,
        ),
        "steps": steps.spark_steps(
            paths,
            staged_artifacts,
            variance=params["variance"],
            weights=weights,
            imagenet_weights=model.imagenet_weights_uri,
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
    cluster_size: dict[str, Any] | None = None,
    run_id: str | None = None,
    dag: Any = None,
    params: dict[str, Any] | None = None,
    outlet_events: Any = None,
    ti: Any = None,
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
    :param cluster_size: the size ``plan_run`` chose, and why.
    :param ti: the task instance, to pull the run's cluster id from ``create_cluster`` (None when it was
        skipped: the run reused outputs). The summary's ``cost`` is that cluster's bill, once
        ``terminate_cluster`` has ended it (``cost.cluster_bill``). The id is pulled rather than passed:
        a task taking ``create_cluster.output`` would follow that setup task directly, which Airflow
        allows only with the trigger rule all_success.
    """
    settings = parse_config(config)
    run = RunPaths(**paths)
    job_flow_id = ti.xcom_pull(task_ids=CREATE_CLUSTER_TASK_ID) if ti is not None else None
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
        cost=run_cost(settings, job_flow_id),
        cluster_size=cluster_size if job_flow_id else None,
    )
    run_summary.write_summary(client, run, summary)
    if outlet_events is not None:
        assets.add_events(outlet_events, outputs, summary)
    return run_summary.event_extra(summary)


def run_cost(
    settings: PipelineConfig, job_flow_id: str | None, *, wait_seconds: int = cost.TERMINATION_WAIT_SECONDS
) -> dict[str, Any]:
    """The run's bill: its cluster's (``cost.cluster_bill``), or nothing for a run that created none."""
    prices = cost.load_prices(settings.prices)
    if not job_flow_id:
        return cost.no_bill(prices, settings.region)
    return cost.cluster_bill(
        emr_client(settings.region), job_flow_id, prices, settings.region, wait_seconds=wait_seconds
    )


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
    where = RunPaths(**paths)
    failure = run_failures.with_log_tails(client, run_failures.with_job_error(client, failure, where))
    run_failures.log_failure(failure)
    report = {
        "dag_id": dag.dag_id,
        "run_id": run_id,
        "reported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **failure.to_dict(),
        # A failed run is billed too; terminate_cluster has asked for the end already.
        "cost": run_cost(settings, job_flow_id, wait_seconds=FAILURE_BILL_WAIT_SECONDS),
    }
    uri = run_failures.write_report(client, where, report)
    log.info("Failure report written to %s", uri)
    return uri
