"""An EmrStepSensor that, when the run's steps fail, says why in its own log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from fruits_airflow.step_logs import FAILED_STATES, LOG_WAIT_SECONDS, STDERR_TAIL_LINES, explain_step_failures

if TYPE_CHECKING:
    from airflow.sdk import Context


class EmrStepsFailureReportingSensor(EmrStepSensor):
    """Wait for the last of a run's steps; when a step fails, log its FailureDetails and log tails.

    The run's steps are watched through the last one: EMR cancels it when an earlier step fails, and
    the report then names the step that actually failed. A step that ends in a failed state fails
    the task without retries (rerunning the sensor cannot fix the step); other errors, such as an AWS
    API hiccup, are left to the task's retries.

    :param job_flow_id: the cluster running the steps. (templated)
    :param step_ids: the run's step ids in the order they were added, e.g. ``add_steps.output``.
        (templated)
    :param stderr_tail_lines: how many of the last stderr lines of a failed step to log.
    :param log_wait_seconds: how long to wait for EMR to archive a failed step's stderr.
    :param kwargs: passed to ``EmrStepSensor`` (``deferrable``, ``poke_interval``, ``max_attempts``...).
    """

    template_fields: Sequence[str] = (*EmrStepSensor.template_fields, "step_ids")

    def __init__(
        self,
        *,
        job_flow_id: str,
        step_ids: Sequence[str],
        stderr_tail_lines: int = STDERR_TAIL_LINES,
        log_wait_seconds: float = LOG_WAIT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(job_flow_id=job_flow_id, step_id="", **kwargs)
        self.step_ids = step_ids
        self.stderr_tail_lines = stderr_tail_lines
        self.log_wait_seconds = log_wait_seconds

    def _watch_last_step(self) -> None:
        if not self.step_ids:
            raise AirflowFailException(f"no EMR step ids to watch on cluster {self.job_flow_id}")
        self.step_id = self.step_ids[-1]

    def execute(self, context: Context) -> None:
        self._watch_last_step()
        super().execute(context)

    def poke(self, context: Context) -> bool:
        try:
            return super().poke(context)
        except AirflowException as error:
            # EmrBaseSensor.poke raises only when the step reached one of its failed states.
            raise self._step_failure() from error

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        self._watch_last_step()
        if event and event.get("status") == "success":
            return super().execute_complete(context, event)
        state = self.state_from_response(self.hook.conn.describe_step(ClusterId=self.job_flow_id, StepId=self.step_id))
        if state in FAILED_STATES:
            raise self._step_failure()
        raise AirflowException(f"Stopped waiting for EMR step {self.step_id} in state {state}: {event}")

    def _step_failure(self) -> AirflowFailException:
        s3_client = S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify).get_conn()
        failures = explain_step_failures(
            self.hook.conn,
            s3_client,
            self.job_flow_id,
            list(self.step_ids),
            tail_lines=self.stderr_tail_lines,
            log_wait_seconds=self.log_wait_seconds,
        )
        first_failed = next((failure for failure in failures if failure.state != "CANCELLED"), None)
        culprit = first_failed or (failures[0] if failures else None)
        summary = culprit.summary() if culprit else f"EMR step {self.step_id} did not complete"
        return AirflowFailException(
            f"{summary}. The tails of its stdout and stderr are in the log above; cluster {self.job_flow_id}."
        )
