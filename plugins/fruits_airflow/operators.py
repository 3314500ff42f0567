"""The DAG's AWS operators and sensors, each failing in one line when AWS denies it a call.

Same names and parameters as the classes they extend (the Amazon provider's, and the pipeline's own
step sensor); only a denial is reported differently (``fruits_airflow.aws_errors``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators import emr
from airflow.providers.amazon.aws.sensors import s3

from fruits_airflow import sensors
from fruits_airflow.aws_errors import AccessDenied, ExplainsAccessDenied, access_denied_explained

if TYPE_CHECKING:
    from airflow.sdk import Context

TERMINATE_ACTION = "elasticmapreduce:TerminateJobFlows"


class EmrCreateJobFlowOperator(ExplainsAccessDenied, emr.EmrCreateJobFlowOperator):
    """Create a cluster; when a call after RunJobFlow is denied, the cluster's id still reaches the teardown.

    The provider's operator describes the new cluster (for its log link) before it returns the id; were
    that denied, ``terminate_cluster`` would get no id and the cluster would live on until its idle timeout.
    """

    def execute(self, context: Context) -> Any:
        try:
            return super().execute(context)
        except AccessDenied as denied:
            # The provider sets _job_flow_id once RunJobFlow answered.
            if not getattr(self, "_job_flow_id", None):
                raise
            context["ti"].xcom_push(key="return_value", value=self._job_flow_id)
            raise AccessDenied(f"{denied} Cluster {self._job_flow_id} was created; the teardown ends it.") from None


class EmrAddStepsOperator(ExplainsAccessDenied, emr.EmrAddStepsOperator):
    """Add steps to a cluster."""


class EmrTerminateJobFlowOperator(ExplainsAccessDenied, emr.EmrTerminateJobFlowOperator):
    """Terminate a cluster; when a call before TerminateJobFlows is denied, the cluster is terminated all the same.

    The provider's operator describes the cluster (for its log links) before it terminates it; were that
    denied, the cluster would live on until its idle timeout.
    """

    def execute(self, context: Context) -> Any:
        try:
            return super().execute(context)
        except AccessDenied as denied:
            if TERMINATE_ACTION in str(denied):
                raise
            with access_denied_explained():
                self.hook.conn.terminate_job_flows(JobFlowIds=[self.job_flow_id])
            raise AccessDenied(f"{denied} Cluster {self.job_flow_id} was terminated all the same.") from None


class EmrStepsSensor(ExplainsAccessDenied, sensors.EmrStepsSensor):
    """Wait for the run's steps, failing at once, with the reason, when a step or the cluster fails."""


class S3KeySensor(ExplainsAccessDenied, s3.S3KeySensor):
    """Wait for an S3 key."""
