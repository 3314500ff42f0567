"""Run one step for real: build its local command, run it, and put its logs where EMR puts them.

The step reads and writes S3 through the endpoint's API itself, so what it wrote is in S3 as soon as
it wrote it, whatever the outcome, as on a cluster: ``_SUCCESS`` appears exactly when the job wrote it.
"""

from __future__ import annotations

import logging
import shlex
import signal
from dataclasses import dataclass, replace
from threading import Event

from local_aws.emr_emulation import EmulatedCluster, EmulatedStep
from local_aws.iam_enforcement import NodeRoleMissingError
from local_aws.node import NodeRuntime
from local_aws.process_groups import run_cancellable
from local_aws.step_command import StepCommand, StepCommandError, build_step_command
from local_aws.step_logs import StepLogs, step_log_uri

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepOutcome:
    """How a step ended: COMPLETED, CANCELLED, or FAILED with EMR's ``FailureDetails``."""

    state: str
    failure: dict[str, str] | None = None


def _failed(reason: str, message: str | None) -> StepOutcome:
    """EMR's FailureDetails; without a line that says more than the reason, no Message (EMR often has none)."""
    return StepOutcome("FAILED", {"Reason": reason, **({"Message": message} if message else {})})


class StepExecutor:
    """Runs steps in work folders under ``work_root/<cluster id>/steps/<step id>/``.

    :param runtime: the endpoint's S3, the work folders, the environment and the node.
    """

    def __init__(self, runtime: NodeRuntime) -> None:
        self._runtime = runtime

    def run(self, cluster: EmulatedCluster, step: EmulatedStep, cancel: Event) -> StepOutcome:
        """Run ``step`` to its end; setting ``cancel`` kills it and makes the outcome CANCELLED."""
        logs = StepLogs(self._runtime.work_root / cluster.id / "steps" / step.id)
        logs.note(f"step {step.id} {step.name!r}: jar {step.jar}, args {shlex.join(step.args)}")
        outcome = self._run(cluster, step, logs, cancel)
        logs.note(f"step ended {outcome.state}: {outcome.failure or ''}")
        logs.upload(self._runtime.s3, cluster.log_uri, cluster.id, step.id)
        if outcome.failure and cluster.log_uri:
            log_file = step_log_uri(cluster.log_uri, cluster.id, step.id, "stderr")
            outcome = replace(outcome, failure={**outcome.failure, "LogFile": log_file})
        return outcome

    def _run(self, cluster: EmulatedCluster, step: EmulatedStep, logs: StepLogs, cancel: Event) -> StepOutcome:
        try:
            command = build_step_command(
                step.jar,
                list(step.args),
                environ=self._runtime.environ(cluster),
                configurations=cluster.requested_configurations,
                node_path=self._runtime.node.node_path,
                region=self._runtime.region,
            )
        except StepCommandError as error:
            return _failed("The step cannot run on the local endpoint", str(error))
        except NodeRoleMissingError as error:
            return _failed("The cluster's nodes have no role", str(error))
        logs.note(f"local command: {shlex.join(command.argv)}")
        if cancel.is_set():
            return StepOutcome("CANCELLED")
        logger.info("step %s runs: %s", step.id, shlex.join(command.argv))
        try:
            exit_code = self._run_process(command, logs, cancel)
        except OSError as error:
            return _failed("The step's command could not start", f"{command.argv[0]}: {error.strerror}")
        logs.note(f"exit code {exit_code}")
        message = logs.failure_message()
        logs.command_exited(exit_code)
        if cancel.is_set():
            return StepOutcome("CANCELLED")
        if exit_code < 0:  # killed: its last lines say nothing of why
            killed = f"killed by {signal.Signals(-exit_code).name}"
            return _failed(f"The step's command exited with code {exit_code}", killed)
        if exit_code != 0:
            return _failed(f"The step's command exited with code {exit_code}", message)
        return StepOutcome("COMPLETED")

    def _run_process(self, command: StepCommand, logs: StepLogs, cancel: Event) -> int:
        with logs.stdout.open("wb") as stdout, logs.stderr.open("wb") as stderr:
            return run_cancellable(
                command.argv,
                cwd=logs.folder,
                env=command.env,
                stdout=stdout,
                stderr=stderr,
                cancel=cancel,
                grace=self._runtime.kill_grace_seconds,
            )
