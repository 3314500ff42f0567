"""
# fruits_pipeline

Turns the fruit photos of a landing folder into MobileNetV2 features and their PCA, on a transient EMR
cluster that never outlives the run.

```
landing folder ──upload_new_images──▶ s3://BUCKET/images/<label>/<file>
                                          │  step extract_features
                                          ▼
              s3://BUCKET/features/<weights>/   (a row per image content, grown by each run)
                                          │  step pca
                                          ▼
               s3://BUCKET/runs/<run key>/{pca/, report/} ──wait_for_output──▶ check_output
```

1. `check_config` validates the Variable and refuses a region or bucket outside the EU (GDPR) before
   anything is uploaded or created.
2. `upload_new_images` makes `images/` the landing folder's mirror: it sends only new or changed files
   (same key, size and ETag means already there), then removes, logging each, the images the landing
   folder no longer has (deleted, or moved to another label). The bucket is versioned: a removed image
   stays restorable as a noncurrent version for 30 days. A landing folder that would remove more than
   `max_removal_share` of the images (empty, not mounted) is refused in one line, removing nothing.
   `stage_artifacts` uploads the Spark jobs and the bootstrap of this DAG version to
   `s3://BUCKET/artifacts/<content hash>/`. `check_security_configuration` fails clearly unless the
   cluster's security configuration exists and requires IMDSv2.
3. `find_reusable_run` compares the images in S3 with those the last checked run of the same weights
   covered (`runs/_latest/<weights>.json`, from the manifest its `extract_features` wrote). When
   nothing changed and the run asks for the same variance, `create_cluster_or_reuse` skips the
   cluster: `reuse_outputs` names the run whose outputs hold, and `check_output` checks those.
   `reprocess_all` and another variance always run. Otherwise `create_cluster` starts the cluster;
   `add_steps` adds `extract_features` then `pca`; `watch_steps` waits for them and watches their
   cluster: when a step fails or the cluster ends first (bootstrap failure, VALIDATION_ERROR, lost
   instances, terminated from outside), it fails at once, with EMR's reason and without retries.
   `create_cluster` and `add_steps` are retried, and never create twice: a retry takes the run's active
   cluster (found by the run's tags) and the steps already on it (by name) instead of creating them.
   Every AWS call retries throttling and 5xx errors with backoff and jitter (botocore's standard mode).
4. `wait_for_output` waits for the PCA's `_SUCCESS`; `check_output` checks one PCA row of k values per
   image with features (the manifest's count) and a complete report (the reused run's, when reusing),
   writes the run's summary to `s3://BUCKET/runs/<run key>/summary.json` (uploaded, removed,
   featurized, reused, rejected, whether a cluster was created or which run's outputs were reused; keys:
   `fruits_contract.Summary`), and in both cases emits the run's assets through the aliases
   `fruits_features` and `fruits_pca` (the features dataset and the PCA output, the summary in each
   event's extra), on which a downstream DAG can be scheduled. The run's page has a **Report** tab
   showing the summary, the PCA's figures and plots, or why the run failed.
5. `terminate_cluster` is the teardown of `create_cluster`: it runs as soon as the steps are over,
   however they ended, and ends every active cluster tagged with the run; the run still fails when a
   step or the output check did, and a failed termination fails the run too. If Airflow itself dies,
   the cluster ends after its idle timeout.
   `report_failure` follows it, so that waiting for EMR to archive the logs keeps no cluster alive:
   when a step failed or the cluster ended first, it logs EMR's reason with the tails of the logs
   that explain it (the step's stdout and stderr, or the failed bootstrap action's stderr), and
   writes the same as JSON to `s3://BUCKET/runs/<run key>/failure.json`; otherwise it is skipped.
   A failure of its own never fails the run.

## Configuration: Airflow Variable `fruits_pipeline` (JSON)

| key | default | |
|---|---|---|
| `bucket` | required | the pipeline's S3 bucket, in the EU |
| `images_dir` | none | landing folder `<label>/<file>` on the worker; without it, the images already in S3 are used |
| `region` | `eu-west-1` | must be an `eu-*` region |
| `release_label` | `emr-7.13.0` | an `emr-7.x` release (Spark 3.5, Python 3.11 on the nodes) |
| `primary_instance_type`, `core_instance_type` | `m5.xlarge` | on-demand nodes |
| `core_count` | `2` | |
| `spot_task_instance_type`, `spot_task_count` | `m5.xlarge`, `0` | optional spot task nodes |
| `subnet_id` | required | the clusters' subnet, tagged `for-use-with-amazon-emr-managed-policies=true` |
| `emr_managed_master_security_group`, `emr_managed_slave_security_group` | required | the stack's security groups |
| `service_role` | `fruits-pipeline-emr-service-role` | |
| `job_flow_role` | `fruits-pipeline-emr-instance-profile` | instance profile of the nodes |
| `security_configuration` | `fruits-pipeline-imdsv2` | must exist and require IMDSv2 |
| `idle_timeout` | `3600` | seconds before an idle cluster terminates itself |
| `weights` | `imagenet` | MobileNetV2 weights of runs that name none; `none` where ImageNet's file cannot be fetched |
| `max_removal_share` | `0.5` | the largest share of the images in S3 one upload may remove (`1`: no limit) |

The project's CloudFormation stack (`cloudformation/fruits-pipeline.yaml`) creates the bucket, both roles
and the security configuration under these default names; its outputs are the Variable's keys.
AWS access goes through the `aws_default` connection only; no keys live in code or in the Variable.

## Trigger form

- `variance`: share of the variance the PCA keeps (default 0.95).
- `weights`: `imagenet`, `none`, or an `s3://` weights file; empty (the default, and every scheduled
  run) takes the Variable's `weights`. Each network grows its own
  dataset, `s3://BUCKET/features/<weights>/` (`imagenet`, `none` or `file-<hash>`), so a PCA never
  mixes features of two models and switching back featurizes only what is new.
- `reprocess_all`: featurize every image again. The run then writes its features to
  `s3://BUCKET/runs/<run key>/features/` and leaves the shared dataset untouched. The upload needs no
  forcing: it compares content.

The run key is the run id made safe for Hadoop paths (`:` and `+` become `_`, plus a short hash).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, chain, dag

from fruits_airflow import assets, tasks
from fruits_airflow.config import WEIGHTS_PATTERN
from fruits_airflow.operators import (
    EmrAddStepsOperator,
    EmrCreateJobFlowOperator,
    EmrStepsSensor,
    EmrTerminateJobFlowOperator,
    S3KeySensor,
)
from fruits_contract import DEFAULT_VARIANCE

START_DATE = datetime(2025, 1, 1, tzinfo=UTC)
TAGS = ["fruits", "emr", "spark", "pca"]

PARAMS = {
    "variance": Param(
        DEFAULT_VARIANCE,
        type="number",
        exclusiveMinimum=0,
        maximum=1,
        title="Variance to keep",
        description="Share of the features' variance the PCA keeps; k is the fewest components reaching it.",
    ),
    "weights": Param(
        None,
        type=["null", "string"],
        pattern=f"^({WEIGHTS_PATTERN})$",
        title="MobileNetV2 weights",
        description="imagenet, none (random, for tests), or an s3:// weights file; empty: the Variable's weights.",
    ),
    "reprocess_all": Param(
        False,
        type="boolean",
        title="Reprocess every image",
        description="Featurize all images again, into this run's own features prefix.",
    ),
}

# Sensors and uploads are idempotent: retry them, backing off.
RETRY_WITH_BACKOFF = {
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=15),
}
# Creating a cluster or adding steps twice costs money and duplicates work: never retry them blindly.
NEVER_RETRY = {"retries": 0}
# create_cluster and add_steps first look for what an earlier try created (fruits_airflow.run_clusters),
# so they may be retried; soon, as a cluster is waiting, and few times, as a bad request fails every try.
RETRY_FINDS_EARLIER_TRY = {"retries": 2, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": 2.0}

# Featurizing the whole Fruits-360 dataset (~90k images) on 2 m5.xlarge core nodes takes well under
# an hour; the cluster's start and bootstrap take about 15 minutes more.
WATCH_STEPS_TIMEOUT = timedelta(hours=4)
WATCH_STEPS_POKE_INTERVAL = timedelta(seconds=30)
WAIT_FOR_OUTPUT_TIMEOUT = timedelta(minutes=10)


@dag(
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=TAGS,
    params=PARAMS,
    default_args=NEVER_RETRY,
)
def fruits_pipeline() -> None:
    check_config = tasks.check_config.override(execution_timeout=timedelta(minutes=5), **RETRY_WITH_BACKOFF)()
    upload_new_images = tasks.upload_new_images.override(execution_timeout=timedelta(hours=2), **RETRY_WITH_BACKOFF)(
        check_config
    )
    stage_artifacts = tasks.stage_artifacts.override(execution_timeout=timedelta(minutes=10), **RETRY_WITH_BACKOFF)(
        check_config
    )
    check_security_configuration = tasks.check_security_configuration.override(
        execution_timeout=timedelta(minutes=5), **RETRY_WITH_BACKOFF
    )(check_config)
    find_reusable_run = tasks.find_reusable_run.override(execution_timeout=timedelta(minutes=10), **RETRY_WITH_BACKOFF)(
        check_config, upload_new_images
    )
    plan_run = tasks.plan_run.override(execution_timeout=timedelta(minutes=5))(check_config, stage_artifacts)
    create_cluster_or_reuse = tasks.create_cluster_or_reuse.override(execution_timeout=timedelta(minutes=5))(
        find_reusable_run
    )
    reuse_outputs = tasks.reuse_outputs.override(execution_timeout=timedelta(minutes=5))(find_reusable_run)

    create_cluster = EmrCreateJobFlowOperator(
        task_id="create_cluster",
        job_flow_overrides=plan_run["job_flow_overrides"],
        emr_conn_id=None,
        region_name=plan_run["region"],
        execution_timeout=timedelta(minutes=15),
        **RETRY_FINDS_EARLIER_TRY,
    )
    add_steps = EmrAddStepsOperator(
        task_id="add_steps",
        job_flow_id=create_cluster.output,
        steps=plan_run["steps"],
        region_name=plan_run["region"],
        execution_timeout=timedelta(minutes=10),
        **RETRY_FINDS_EARLIER_TRY,
    )
    watch_steps = EmrStepsSensor(
        task_id="watch_steps",
        job_flow_id=create_cluster.output,
        step_ids=add_steps.output,
        deferrable=True,
        poke_interval=WATCH_STEPS_POKE_INTERVAL.total_seconds(),
        max_attempts=int(WATCH_STEPS_TIMEOUT / WATCH_STEPS_POKE_INTERVAL),
        timeout=WATCH_STEPS_TIMEOUT.total_seconds(),
        region_name=plan_run["region"],
        execution_timeout=WATCH_STEPS_TIMEOUT + timedelta(minutes=30),
        **RETRY_WITH_BACKOFF,
    )
    wait_for_output = S3KeySensor(
        task_id="wait_for_output",
        bucket_name=plan_run["bucket"],
        bucket_key=plan_run["pca_success_key"],
        deferrable=True,
        poke_interval=30,
        timeout=WAIT_FOR_OUTPUT_TIMEOUT.total_seconds(),
        region_name=plan_run["region"],
        execution_timeout=WAIT_FOR_OUTPUT_TIMEOUT + timedelta(minutes=5),
        **RETRY_WITH_BACKOFF,
    )
    check_output = tasks.check_output.override(
        outlets=assets.OUTLETS, execution_timeout=timedelta(minutes=15), **RETRY_WITH_BACKOFF
    )(check_config, plan_run["paths"], upload_new_images, find_reusable_run)
    terminate_cluster = EmrTerminateJobFlowOperator(
        task_id="terminate_cluster",
        job_flow_id=create_cluster.output,
        region_name=plan_run["region"],
        execution_timeout=timedelta(minutes=15),
        **RETRY_WITH_BACKOFF,
    ).as_teardown(setups=create_cluster, on_failure_fail_dagrun=True)
    report_failure = tasks.report_failure.override(execution_timeout=timedelta(minutes=15), **RETRY_WITH_BACKOFF)(
        check_config, plan_run["paths"], create_cluster.output, add_steps.output
    ).as_teardown(setups=create_cluster)

    chain(
        # setup: validate, upload, stage; then start the cluster, unless nothing changed since a checked run
        check_config,
        [upload_new_images, stage_artifacts, check_security_configuration],
        find_reusable_run,
        plan_run,
        create_cluster_or_reuse,
        create_cluster,
        # body: run the steps, then check what they wrote
        add_steps,
        watch_steps,
        wait_for_output,
        check_output,
    )
    # nothing changed: no cluster; the check runs on the reused run's outputs
    create_cluster_or_reuse >> reuse_outputs >> check_output
    # teardown: as soon as the steps are over, however they ended; the output checks need no cluster,
    # so they stay leaves of the run and a failure of theirs (or of a step) still fails it.
    watch_steps >> terminate_cluster
    # then, if the steps or their cluster failed, why: EMR's reason and the tails of the cluster's logs
    terminate_cluster >> report_failure


fruits_pipeline()
