"""An EmrStepSensor that also watches the steps' cluster, and fails for good when the run cannot complete."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor
from airflow.sdk.exceptions import AirflowFailException

from fruits_airflow.paths import RunPaths
from fruits_airflow.run_failures import COMPLETED, FAILED, RUNNING, find_failure, progress, with_job_error
from fruits_airflow.triggers import EmrStepsTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class EmrStepsSensor(EmrStepSensor):
    """Wait for the last of a run's steps; fail without retries as soon as the run cannot complete.

    Each poke reads the last step and its cluster: a step that failed or was cancelled, or a cluster
    that is ending before the steps completed (bootstrap failure, VALIDATION_ERROR, lost instances,
    a termination from outside), fails the task at once with EMR's reason, without waiting for the
    logs, so that the teardown can start. Giving up after ``max_attempts`` pokes fails it too. None of
    these is retried: a new try would find the same dead step or cluster. Other errors, such as an
    AWS API hiccup, are left to the task's retries.

    :param job_flow_id: the cluster running the steps. (templated)
    :param step_ids: the run's step ids in the order they were added, e.g. ``add_steps.output``.
        (templated)
    :param run_paths: the run's paths as ``plan_run`` publishes them, where a failed job writes its own
        reason (``RunPaths.job_failure_key``): that line then leads the task's failure. (templated)
    :param kwargs: passed to ``EmrStepSensor`` (``deferrable``, ``poke_interval``, ``max_attempts``...).
    """

    template_fields: Sequence[str] = (*EmrStepSensor.template_fields, "step_ids", "run_paths")

    def __init__(
        self, *, job_flow_id: str, step_ids: Sequence[str], run_paths: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(job_flow_id=job_flow_id, step_id="", **kwargs)
        self.step_ids = step_ids
        self.run_paths = run_paths

    @property
    def waiting_time(self) -> timedelta:
        """How long the sensor waits for the steps before it gives up."""
        return timedelta(seconds=self.max_attempts * self.poke_interval)

    def _watch_last_step(self) -> None:
        if not self.step_ids:
            raise AirflowFailException(f"no EMR step ids to watch on cluster {self.job_flow_id}")
        self.step_id = self.step_ids[-1]

    def execute(self, context: Context) -> None:
        self._watch_last_step()
        if not self.deferrable:
            super().execute(context)
        elif not self.poke(context):
            self.defer(
                # The trigger gives up on its own first, with a clearer message.
                timeout=self.waiting_time + timedelta(seconds=2 * self.poke_interval),
                trigger=EmrStepsTrigger(
                    job_flow_id=self.job_flow_id,
                    step_id=self.step_id,
                    poll_interval=self.poke_interval,
                    max_attempts=self.max_attempts,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                ),
                method_name="execute_complete",
            )

    def poke(self, context: Context) -> bool:
        step_state = self.state_from_response(self.get_emr_response(context))
        cluster_state = self.hook.conn.describe_cluster(ClusterId=self.job_flow_id)["Cluster"]["Status"]["State"]
        state = progress(step_state, cluster_state)
        self.log.info("EMR step %s %s, cluster %s %s", self.step_id, step_state, self.job_flow_id, cluster_state)
        if state == RUNNING:
            return False
        if state == COMPLETED:
            return True
        raise self._run_failure()

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        self._watch_last_step()
        status = (event or {}).get("status")
        if status == COMPLETED:
            self.log.info("EMR steps %s on cluster %s completed", list(self.step_ids), self.job_flow_id)
            return
        if status == FAILED:
            raise self._run_failure()
        raise AirflowFailException(
            f"EMR step {self.step_id} on cluster {self.job_flow_id} did not complete within {self.waiting_time} "
            f"({status}): the run fails without retries, and terminate_cluster ends the cluster."
        )

    def _run_failure(self) -> AirflowFailException:
        failure = find_failure(self.hook.conn, self.job_flow_id, list(self.step_ids))
        if failure is None:
            return AirflowFailException(f"EMR step {self.step_id} on {self.job_flow_id} did not complete.")
        if self.run_paths:
            s3_client = S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).get_conn()
            failure = with_job_error(s3_client, failure, RunPaths(**self.run_paths))
        reason = f"\n{failure.emr_reason()}" if failure.job_error else ""
        return AirflowFailException(
            f"{failure.summary()}{reason}\nNo retries; report_failure logs the tails of the cluster's logs."
        )
