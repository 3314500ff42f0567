"""The DAG's AWS operators and sensors, each failing in one line when AWS denies it a call.

Same names and parameters as the classes they extend (the Amazon provider's, and the pipeline's own
step sensor); a denial is reported differently (``fruits_airflow.aws_errors``), every call retries as
AWS advises (``fruits_airflow.aws_retries``), and a retried creation finds what an earlier try created
(``fruits_airflow.run_clusters``): no second cluster, no steps added twice, no cluster left running.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators import emr
from airflow.providers.amazon.aws.sensors import s3
from botocore.exceptions import ClientError

from fruits_airflow import run_clusters, sensors, tasks
from fruits_airflow.aws_errors import AccessDenied, ExplainsAccessDenied, access_denied_explained
from fruits_airflow.aws_retries import RetriesAsAwsAdvises

if TYPE_CHECKING:
    from airflow.sdk import Context

TERMINATE_ACTION = "elasticmapreduce:TerminateJobFlows"


class EmrCreateJobFlowOperator(ExplainsAccessDenied, RetriesAsAwsAdvises, emr.EmrCreateJobFlowOperator):
    """Create the run's cluster, unless an earlier try of the task did; its id reaches the teardown in any case.

    An earlier try may have died after RunJobFlow: the run's active cluster, found by its tags, is then
    the task's result, and no second one is created. The provider's operator describes the new cluster
    (for its log link) before it returns the id; were that denied, ``terminate_cluster`` would get no
    id and the cluster would live on until its idle timeout.

    When AWS refuses the cluster itself (RunJobFlow denied or invalid: a role the policy may not pass, a
    request EMR rejects) and no retry is left, the run's failure is recorded as a refusal by this task, with
    AWS's reason as its line (``tasks.record_refusal``: XCom and ``failure.json``, which the demo and the
    Report tab read), since ``report_failure`` has no cluster to report on: nothing was spent.

    :param config: ``check_config``'s result: where to record a refusal (the run's bucket).
    """

    template_fields: Sequence[str] = (*emr.EmrCreateJobFlowOperator.template_fields, "config")

    def __init__(self, *, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config

    def execute(self, context: Context) -> Any:
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        with access_denied_explained():
            existing = run_clusters.active_run_clusters(self.hook.conn, dag_id, run_id)
        if existing:
            self.log.warning("Run %s already has cluster %s (an earlier try created it): using it", run_id, existing[0])
            return existing[0]
        try:
            return super().execute(context)
        except AccessDenied as denied:
            # The provider sets _job_flow_id once RunJobFlow answered.
            if not getattr(self, "_job_flow_id", None):
                self._record_refusal(denied, context, last_try=True)
                raise
            context["ti"].xcom_push(key="return_value", value=self._job_flow_id)
            raise AccessDenied(f"{denied} Cluster {self._job_flow_id} was created; the teardown ends it.") from None
        except ClientError as error:  # AWS answered: no cluster (a lost answer, a BotoCoreError, may hide one)
            if not getattr(self, "_job_flow_id", None):
                ti = context["ti"]
                self._record_refusal(error, context, last_try=ti.try_number > ti.max_tries)
            raise

    def _record_refusal(self, error: BaseException, context: Context, *, last_try: bool) -> None:
        """Record AWS's refusal of the cluster as the run's failure, once no retry of the task is left."""
        if not last_try:
            return
        reason = " ".join(str(error).split())  # one line, whatever AWS's message holds
        tasks.record_refusal(f"create_cluster: AWS started no cluster: {reason}", context["ti"], self.config)


class EmrAddStepsOperator(ExplainsAccessDenied, RetriesAsAwsAdvises, emr.EmrAddStepsOperator):
    """Add steps to the run's cluster, unless an earlier try of the task did: then return their ids."""

    def execute(self, context: Context) -> Any:
        if isinstance(self.steps, list) and self.job_flow_id:
            with access_denied_explained():
                added = run_clusters.steps_added(self.hook.conn, self.job_flow_id, self.steps)
            if added is not None:
                self.log.warning("Cluster %s has the steps (an earlier try added them): %s", self.job_flow_id, added)
                return added
        return super().execute(context)


class EmrTerminateJobFlowOperator(ExplainsAccessDenied, RetriesAsAwsAdvises, emr.EmrTerminateJobFlowOperator):
    """Terminate the run's cluster, and any other active cluster of the run (found by its tags).

    When a call before TerminateJobFlows is denied, the cluster is terminated all the same: the provider's
    operator describes the cluster (for its log links) before it terminates it; were that denied, the
    cluster would live on until its idle timeout. Without an id (``create_cluster`` failed before it
    returned one, perhaps after RunJobFlow), the run's clusters are found by their tags alone.
    """

    def execute(self, context: Context) -> Any:
        if not self.job_flow_id:
            self.log.warning("No cluster id reached the teardown: terminating the run's clusters found by their tags")
            self._terminate_other_run_clusters(context)
            return None
        try:
            result = super().execute(context)
        except AccessDenied as denied:
            if TERMINATE_ACTION in str(denied):
                raise
            with access_denied_explained():
                self.hook.conn.terminate_job_flows(JobFlowIds=[self.job_flow_id])
            raise AccessDenied(f"{denied} Cluster {self.job_flow_id} was terminated all the same.") from None
        self._terminate_other_run_clusters(context)
        return result

    def _terminate_other_run_clusters(self, context: Context) -> None:
        with access_denied_explained():
            run_ids = run_clusters.active_run_clusters(self.hook.conn, context["dag"].dag_id, context["run_id"])
            others = [cluster_id for cluster_id in run_ids if cluster_id != self.job_flow_id]
            if others:
                self.log.warning("Terminating the run's other active clusters too: %s", ", ".join(others))
                self.hook.conn.terminate_job_flows(JobFlowIds=others)


class EmrStepsSensor(ExplainsAccessDenied, RetriesAsAwsAdvises, sensors.EmrStepsSensor):
    """Wait for the run's steps, failing at once, with the reason, when a step or the cluster fails."""


class S3KeySensor(ExplainsAccessDenied, RetriesAsAwsAdvises, s3.S3KeySensor):
    """Wait for an S3 key."""
