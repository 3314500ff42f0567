"""EMR's step state machine: one background thread per cluster runs its steps one at a time, in order.

Steps go PENDING → RUNNING → COMPLETED, or FAILED, after which ActionOnFailure decides: CONTINUE goes
on, CANCEL_AND_WAIT cancels the pending steps and the cluster waits, TERMINATE_CLUSTER (and the older
TERMINATE_JOB_FLOW) cancels them and shuts the cluster down with errors. Clusters go STARTING →
BOOTSTRAPPING while their bootstrap actions run (local_aws.bootstrap_actions) → WAITING, RUNNING while a
step runs, WAITING between steps when kept alive, and TERMINATED when asked to, or when their steps are
done and they are not kept alive. A failed bootstrap action ends the cluster TERMINATED_WITH_ERRORS
(BOOTSTRAP_FAILURE) and cancels its steps, none of which runs.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Protocol

from moto.core.utils import utcnow

from local_aws.bootstrap_actions import BootstrapActions, BootstrapFailure
from local_aws.emr_emulation import EmulatedCluster, EmulatedStep
from local_aws.step_execution import StepExecutor, StepOutcome

logger = logging.getLogger(__name__)

_TERMINATING_ACTIONS = frozenset({"TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW"})


@dataclass(frozen=True)
class _Termination:
    state: str
    code: str
    message: str
    step_message: str


_USER_REQUEST = _Termination(
    "TERMINATED", "USER_REQUEST", "Terminated by user request", "Cancelled because the cluster was terminated"
)
_ALL_STEPS_COMPLETED = _Termination(
    "TERMINATED", "ALL_STEPS_COMPLETED", "Steps completed", "Cancelled because the cluster was terminated"
)
_STEP_FAILURE = _Termination(
    "TERMINATED_WITH_ERRORS", "STEP_FAILURE", "Shut down as step failed", "Cancelled because a step failed"
)


def _bootstrap_failure(failure: BootstrapFailure) -> _Termination:
    return _Termination(
        "TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", failure.message, "Cancelled because the cluster failed to start"
    )


def _internal_error(error: Exception, doing: str = "start the cluster") -> _Termination:
    message = f"The local endpoint failed to {doing}: {error!r}"
    return _Termination("TERMINATED_WITH_ERRORS", "INTERNAL_ERROR", message, "Cancelled because the cluster failed")


class StepObserver(Protocol):
    """Told when each step starts and ends (local_aws.faults arms its step faults there)."""

    def step_started(self, cluster: EmulatedCluster, step: EmulatedStep) -> None: ...

    def step_ended(self, cluster: EmulatedCluster, step: EmulatedStep) -> None: ...


class StepRunner:
    """Receives the emulated backend's hooks and runs every cluster's steps.

    :param executor: runs one step for real.
    :param bootstrap: runs a cluster's bootstrap actions for real.
    :param observer: told when each step starts and ends.
    """

    def __init__(
        self, executor: StepExecutor, bootstrap: BootstrapActions, observer: StepObserver | None = None
    ) -> None:
        self._executor = executor
        self._bootstrap_actions = bootstrap
        self._observer = observer
        self._workers: dict[str, _ClusterWorker] = {}
        self._lock = threading.Lock()

    def cluster_created(self, cluster: EmulatedCluster) -> None:
        worker = _ClusterWorker(cluster, self._executor, self._bootstrap_actions, self._observer)
        with self._lock:
            self._workers[cluster.id] = worker
        worker.start()

    def steps_added(self, cluster: EmulatedCluster) -> None:
        self._worker(cluster).wake()

    def termination_requested(self, cluster: EmulatedCluster) -> None:
        self._worker(cluster).terminate(_USER_REQUEST)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Terminate every cluster, killing running steps, and wait for their outputs and logs to be written."""
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.terminate(_USER_REQUEST)
        for worker in workers:
            worker.join(timeout)
            if worker.is_alive():
                logger.warning("cluster %s did not stop within %.0f s", worker.cluster.id, timeout)

    def _worker(self, cluster: EmulatedCluster) -> _ClusterWorker:
        with self._lock:
            return self._workers[cluster.id]


class _ClusterWorker(threading.Thread):
    """Drives one cluster; the only writer of its state and of its steps' states."""

    def __init__(
        self,
        cluster: EmulatedCluster,
        executor: StepExecutor,
        bootstrap: BootstrapActions,
        observer: StepObserver | None,
    ) -> None:
        super().__init__(name=f"emr-{cluster.id}", daemon=True)
        self.cluster = cluster
        self._observer = observer
        self._executor = executor
        self._bootstrap_actions = bootstrap
        self._wakeup = threading.Condition()
        self._termination: _Termination | None = None
        self._cancel = threading.Event()

    def wake(self) -> None:
        with self._wakeup:
            self._wakeup.notify()

    def terminate(self, termination: _Termination) -> None:
        """Ask the cluster to shut down; a running step is killed. The first reason given wins."""
        with self._wakeup:
            if self._termination is None:
                self._termination = termination
                self._set_cluster_state("TERMINATING", termination.message, code=termination.code)
            self._cancel.set()
            self._wakeup.notify()

    def run(self) -> None:
        try:
            self._drive()
        except Exception as error:  # a bug anywhere here must end the cluster, never leave its steps PENDING
            logger.exception("cluster %s: the cluster's runner failed", self.cluster.id)
            self._end_after_internal_error(error)

    def _drive(self) -> None:
        if self._bootstrapped():
            with self._wakeup:
                if self._termination is None:
                    self._set_cluster_state("WAITING", "Cluster ready to run steps.")
            while (step := self._next_step()) is not None:
                self._run_step(step)
        self._shut_down()

    def _bootstrapped(self) -> bool:
        """Run the bootstrap actions; False when one failed or the cluster is terminating."""
        with self._wakeup:
            if self._termination is not None:
                return False
            self._set_cluster_state("BOOTSTRAPPING", "Running bootstrap actions")
        try:
            failure = self._bootstrap_actions.run(self.cluster, self._cancel)
        except Exception as error:  # a bug here must end the cluster, never leave it BOOTSTRAPPING
            logger.exception("cluster %s: the bootstrap runner failed", self.cluster.id)
            self.terminate(_internal_error(error))
            return False
        if failure is not None:
            self.terminate(_bootstrap_failure(failure))
        with self._wakeup:
            return self._termination is None

    def _next_step(self) -> EmulatedStep | None:
        """Start the first PENDING step, waiting for one while the cluster is kept alive; None once it ends.

        Runs under the lock that :meth:`terminate` takes, so a termination never races a step's start.
        """
        with self._wakeup:
            while self._termination is None:
                pending = self._pending_steps()
                if pending:
                    self._set_cluster_state("RUNNING", "Running step")
                    self._set_step_state(pending[0], "RUNNING")
                    return pending[0]
                if not self.cluster.keep_job_flow_alive_when_no_steps:
                    self.terminate(_ALL_STEPS_COMPLETED)
                    return None
                if self.cluster.state != "WAITING":
                    self._set_cluster_state("WAITING", "Cluster ready after last step completed.")
                self._wakeup.wait()
            return None

    def _run_step(self, step: EmulatedStep) -> None:
        if self._observer is not None:
            self._observer.step_started(self.cluster, step)
        try:
            outcome = self._executor.run(self.cluster, step, self._cancel)
        except Exception as error:  # a bug here must fail the step, never leave it RUNNING for a sensor to poll
            logger.exception("cluster %s step %s: the step runner failed", self.cluster.id, step.id)
            outcome = StepOutcome("FAILED", {"Reason": "The local step runner failed", "Message": repr(error)})
        finally:
            if self._observer is not None:
                self._observer.step_ended(self.cluster, step)
        if outcome.state == "CANCELLED":
            self._set_step_state(step, "CANCELLED", message=self._termination_step_message())
            return
        self._set_step_state(step, outcome.state, failure=outcome.failure)
        if outcome.state != "FAILED" or step.action_on_failure == "CONTINUE":
            return
        if step.action_on_failure in _TERMINATING_ACTIONS:
            self.terminate(_STEP_FAILURE)
        else:
            self._cancel_pending(f"Cancelled because step {step.id} failed")

    def _shut_down(self) -> None:
        termination = self._termination or _USER_REQUEST
        self._cancel_pending(termination.step_message)
        self._set_cluster_state(termination.state, termination.message, code=termination.code)

    def _end_after_internal_error(self, error: Exception) -> None:
        """End the cluster as EMR ends one after an internal failure: TERMINATED_WITH_ERRORS, INTERNAL_ERROR.

        The cluster's state is set before the steps', and each step's on its own, so that a bug in the
        steps' bookkeeping still ends the cluster; a step left running is killed (``self._cancel``).
        """
        termination = _internal_error(error, doing="run the cluster")
        with self._wakeup:
            self._termination = termination
            self._cancel.set()
        self.cluster.set_state(termination.state, code=termination.code, message=termination.message)
        for step in list(self.cluster.steps):
            try:
                if step.state == "RUNNING":
                    step.set_state("FAILED", failure={"Reason": "The cluster failed", "Message": termination.message})
                elif step.state == "PENDING":
                    step.set_state("CANCELLED", message=termination.step_message)
            except Exception:
                logger.exception("cluster %s step %s: its state could not be set", self.cluster.id, step.id)
        logger.info("cluster %s: -> %s (%s)", self.cluster.id, termination.state, termination.message)

    def _termination_step_message(self) -> str:
        return self._termination.step_message if self._termination else "Cancelled"

    def _pending_steps(self) -> list[EmulatedStep]:
        return [step for step in list(self.cluster.steps) if step.state == "PENDING"]

    def _cancel_pending(self, message: str) -> None:
        for step in self._pending_steps():
            self._set_step_state(step, "CANCELLED", message=message)

    def _set_step_state(
        self, step: EmulatedStep, state: str, *, message: str | None = None, failure: dict[str, str] | None = None
    ) -> None:
        since = step.start_date_time if step.state == "RUNNING" else step.creation_date_time
        previous = step.state
        step.set_state(state, message=message, failure=failure)
        logger.info(
            "cluster %s step %s %r: %s -> %s after %.1f s%s",
            self.cluster.id,
            step.id,
            step.name,
            previous,
            state,
            (utcnow() - since).total_seconds(),
            # EMR's FailureDetails may hold no Message (local_aws.step_logs gives none without an error line).
            f" ({': '.join(filter(None, (failure.get('Reason'), failure.get('Message'))))})" if failure else "",
        )

    def _set_cluster_state(self, state: str, message: str, *, code: str | None = None) -> None:
        previous = self.cluster.state
        self.cluster.set_state(state, code=code, message=message)
        if previous != state:
            logger.info("cluster %s %r: %s -> %s (%s)", self.cluster.id, self.cluster.name, previous, state, message)
