"""The trigger of the deferred ``watch_steps``: the run's last step and its cluster, polled together.

The provider's ``EmrStepSensorTrigger`` looks at the step only, so a cluster that dies before its
steps run (a bootstrap failure, VALIDATION_ERROR, no capacity) leaves it waiting until EMR cancels
the steps, or until it gives up. Each poll here reads both, and ends at the first decisive one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.triggers.base import BaseTrigger, TriggerEvent
from botocore.client import BaseClient

from fruits_airflow.run_failures import RUNNING, progress

TIMED_OUT = "TIMED_OUT"


def poll(emr_client: BaseClient, cluster_id: str, step_id: str) -> str:
    """COMPLETED, FAILED or RUNNING, from the step's state and its cluster's (see ``run_failures.progress``)."""
    step_state = emr_client.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]["State"]
    cluster_state = emr_client.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
    return progress(step_state, cluster_state)


class EmrStepsTrigger(BaseTrigger):
    """Fire when a run's last step completes, fails or is cancelled, or when its cluster ends first.

    The event's ``status`` is COMPLETED, FAILED, or TIMED_OUT after ``max_attempts`` polls.

    :param job_flow_id: the cluster running the steps.
    :param step_id: the run's last step.
    :param poll_interval: seconds between polls.
    :param max_attempts: how many polls before giving up.
    :param aws_conn_id: the Airflow connection to AWS.
    :param region_name: the cluster's region.
    :param verify: whether to verify SSL certificates, as the hooks take it.
    :param botocore_config: botocore client configuration, as the hooks take it.
    """

    def __init__(
        self,
        *,
        job_flow_id: str,
        step_id: str,
        poll_interval: float,
        max_attempts: int,
        aws_conn_id: str | None,
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.job_flow_id = job_flow_id
        self.step_id = step_id
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_flow_id": self.job_flow_id,
                "step_id": self.step_id,
                "poll_interval": self.poll_interval,
                "max_attempts": self.max_attempts,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
            },
        )

    def _emr_client(self) -> BaseClient:
        hook = EmrHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )
        return hook.conn

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # boto3 blocks: its calls run in a thread, never on the triggerer's event loop.
        emr_client = await asyncio.to_thread(self._emr_client)
        for attempt in range(self.max_attempts):
            if attempt:
                await asyncio.sleep(self.poll_interval)
            state = await asyncio.to_thread(poll, emr_client, self.job_flow_id, self.step_id)
            if state != RUNNING:
                yield TriggerEvent({"status": state, "step_id": self.step_id})
                return
            self.log.info(
                "EMR step %s on cluster %s still running (poll %d)", self.step_id, self.job_flow_id, attempt + 1
            )
        yield TriggerEvent({"status": TIMED_OUT, "step_id": self.step_id})
