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

A run checks the Variable, uploads what changed in the landing folder and stages this version's jobs;
it starts a cluster only if the images or the variance changed since the last checked run (else it
reuses that run's outputs), runs `extract_features` then `pca`, checks the output and writes the run's
`summary.json`; `terminate_cluster` ends the run's clusters however the steps ended, and `report_failure`
writes why they failed to `failure.json`, the failed job's own error line first. What the Airflow side
can see to be wrong (no images, a bad weights file or variance, a missing bucket) fails the run before
any cluster starts. Each run's page has a **Report** tab.

- **Configuration**: the Airflow Variable `fruits_pipeline` (JSON: the bucket, the network, cluster
  overrides), key by key in `docs/aws.md#the-variable-fruits_pipeline`. AWS is reached through the
  `aws_default` connection only.
- **Trigger form**: `variance` (0.95), `weights` (`imagenet`, `none` or an `s3://` weights file; empty:
  the Variable's) and `reprocess_all`, in `docs/aws.md#running-and-operating-the-dag`.
- **The tasks, and why each exists**: `docs/architecture.md#the-dags-tasks`.

Deploying and operating it on AWS: `docs/aws.md`.
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
    plan_run = tasks.plan_run.override(execution_timeout=timedelta(minutes=5))(
        check_config, stage_artifacts, find_reusable_run, upload_new_images
    )
    create_cluster_or_reuse = tasks.create_cluster_or_reuse.override(execution_timeout=timedelta(minutes=5))(
        find_reusable_run
    )
    reuse_outputs = tasks.reuse_outputs.override(execution_timeout=timedelta(minutes=5))(find_reusable_run)

    create_cluster = EmrCreateJobFlowOperator(
        task_id="create_cluster",
        job_flow_overrides=plan_run["job_flow_overrides"],
        emr_conn_id=None,
        config=check_config,  # where to record AWS's refusal of the cluster, if it comes to that
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
        run_paths=plan_run["paths"],
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
    )(check_config, plan_run["paths"], upload_new_images, find_reusable_run, plan_run["cluster_size"])
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
    # the choice of a cluster is a setup of the teardown too: a teardown runs when one of its setups succeeded,
    # so it ends the run's clusters even when create_cluster failed after RunJobFlow; the reuse branch skips it
    create_cluster_or_reuse.as_setup() >> terminate_cluster
    # then, if the steps or their cluster failed, why: EMR's reason and the tails of the cluster's logs
    terminate_cluster >> report_failure


fruits_pipeline()
