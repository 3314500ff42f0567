"""A node lost during a step: EMR's record of its end, and the Spark work that ran on it killed.

On EMR a core or task node can end before its cluster: EC2 reclaims a spot instance (after a two-minute
notice), or its hardware fails. ListInstances then shows the instance TERMINATED, with its own end time,
where its bill stops (fruits_airflow.cost reads that timeline), while the cluster runs on; YARN loses the
node's executors and their tasks, and Spark runs those tasks again on the nodes left, up to
``spark.task.maxFailures`` attempts each.

Every node of an emulated cluster is this machine, and a step's executors are threads of its one local
JVM, which also holds the driver (on EMR, on the primary node). What the endpoint can take away is what
ran tasks' Python code: PySpark's daemon and the workers it forked, children of that JVM. So
:func:`lose_node`

- marks one core or task instance TERMINATED (a spot one when the cluster has one, else an on-demand one),
  with EMR's code for an instance that failed and EC2's reason in the message, and its own end time;
- SIGKILLs the step's PySpark Python processes: their tasks fail as a lost executor's do, and Spark
  retries them (the emulated master allows it: local_aws.spark_submit.local_master).

A cluster that is its primary node alone has no core or task node to lose: nothing happens to it (the
primary's loss ends the cluster, which ``terminate_during_step`` stands for). EMR's replacement of lost
spot capacity (a resize, spot only) is not emulated: the cluster runs on one node short.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from moto.core.utils import utcnow
from moto.emr import models as emr_models

logger = logging.getLogger(__name__)

# EMR's InstanceStateChangeReason code for an instance that ended on its own (API reference); EMR documents
# no message, so the message carries EC2's StateReason of the instance (EC2 API reference).
INSTANCE_FAILURE = "INSTANCE_FAILURE"
SPOT_RECLAIMED = (
    "The instance was terminated by Amazon EC2: Server.SpotInstanceTermination: the Spot capacity was "
    "reclaimed (interruption)."
)
HARDWARE_LOST = "The instance was terminated by Amazon EC2: Server.InternalError: the instance's host failed."
_PYTHON_WORKER_MODULES = frozenset({"pyspark.daemon", "pyspark.worker"})


@dataclass(frozen=True)
class Loss:
    """When and why an instance ended before its cluster."""

    at: datetime
    message: str
    code: str = INSTANCE_FAILURE


class LosableInstance(emr_models.Instance):
    """An EMR instance that can end before its cluster (moto's follow their group's state and timeline)."""

    loss: Loss | None = None

    @property
    def status(self) -> dict[str, Any]:
        status = super().status
        if self.loss is not None:
            status["State"] = "TERMINATED"
            status["StateChangeReason"] = {"Code": self.loss.code, "Message": self.loss.message}
            status["Timeline"] = {**status["Timeline"], "EndDateTime": self.loss.at}
        return status


def losable(instance: emr_models.Instance) -> LosableInstance:
    """``instance`` as a :class:`LosableInstance` (moto's instance groups make plain ones)."""
    if isinstance(instance, LosableInstance):
        return instance
    return LosableInstance(
        instance.ec2_instance, instance.instance_group, instance.instance_fleet_id or None, instance.id
    )


def node_to_lose(cluster: Any) -> LosableInstance | None:
    """The first core or task instance still running, a spot one before any on-demand one; None without one."""
    candidates = [
        instance
        for instance in cluster.ec2_instances
        if isinstance(instance, LosableInstance)
        and instance.loss is None
        and instance.instance_group.role in {"CORE", "TASK"}
    ]
    candidates.sort(key=lambda instance: instance.market != "SPOT")
    return candidates[0] if candidates else None


def lose_node(cluster: Any, step_folder: Path) -> str | None:
    """Lose one core or task node of ``cluster`` during the step working in ``step_folder``; says what was lost.

    None when the cluster has no core or task node left to lose: the fault did not strike.
    """
    instance = node_to_lose(cluster)
    if instance is None:
        return None
    message = SPOT_RECLAIMED if instance.market == "SPOT" else HARDWARE_LOST
    instance.loss = Loss(utcnow(), message)
    killed = kill_python_workers(step_folder)
    role, market = instance.instance_group.role, instance.market
    return f"{market} {role} {instance.ec2_instance_id} of {cluster.id}: {killed} PySpark process(es) SIGKILLed"


def kill_python_workers(step_folder: Path) -> int:
    """SIGKILL PySpark's daemon and workers among the processes of the step working in ``step_folder``."""
    killed = 0
    for process in _step_processes(step_folder.resolve()):
        try:
            if _PYTHON_WORKER_MODULES & set(process.cmdline()):
                process.kill()
                killed += 1
        except psutil.Error:
            continue
    return killed


def _step_processes(folder: Path) -> list[psutil.Process]:
    """The processes working in ``folder`` (the step's command) and all their descendants."""
    found: dict[int, psutil.Process] = {}
    for process in psutil.process_iter(["cwd"]):
        try:
            if process.info["cwd"] and Path(process.info["cwd"]).resolve() == folder:
                found[process.pid] = process
                found.update((child.pid, child) for child in process.children(recursive=True))
        except psutil.Error:
            continue
    return list(found.values())
