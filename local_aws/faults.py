"""Faults on demand: what AWS does on a bad day, injected by the embedded endpoint, seeded so that a run replays.

A :class:`FaultPlan` says which faults the endpoint injects; :class:`FaultInjector` carries them out:

- **S3 5xx**: a share of S3 requests is answered ``503 SlowDown`` or ``500 InternalError``, each on its
  first attempt only, so that a client retrying as AWS advises succeeds on its next attempt.
- **EMR throttling**: a share of EMR API requests is answered ``400 ThrottlingException``, first attempt
  only.
- **Consecutive failed attempts**: the first N attempts of the S3 or EMR requests matching ``at``
  fail as above, so that only a client making more attempts succeeds (local_aws.failed_attempts).
- **A step killed**: the process group of the step named ``kill_step.step`` is SIGKILLed (as a lost
  node or an OOM killer would), ``after_seconds`` after the step starts or right after the step's
  ``after_requests``-th request matching ``at``: the step ends FAILED with the exit code.
- **The cluster terminated during a step**: TerminateJobFlows, as a person in the console would send
  it, at the same kinds of points: the step is CANCELLED, the cluster ends ``USER_REQUEST``.
- **A node lost during a step**: one core or task node of the cluster running ``lose_node.step`` (a spot
  one first) ends TERMINATED, as a reclaimed spot instance does, at the same kinds of points, and the
  step's PySpark workers are SIGKILLed; Spark retries their tasks and the step goes on (local_aws.node_loss).
- **A caller killed**: the process that sent the ``after_requests``-th request matching ``at`` is
  SIGKILLed right after the endpoint answered it (an Airflow task dying after RunJobFlow, an upload
  stopping halfway).

An attempt is known by the SDKs' ``amz-sdk-invocation-id`` header, the same on every retry of a call
(botocore and the AWS SDK for Java send it); without it, by its method, path and query. The draws
come from one ``random.Random(seed)``: the same requests in the same order get the same faults.

A request matcher ``at`` is an EMR operation (``RunJobFlow``) or an HTTP method and a path prefix
(``PUT /bucket/features/``; CopyObject is a PUT).
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import psutil

from local_aws.failed_attempts import AttemptCounter, FailedAttempts
from local_aws.node_loss import lose_node
from local_aws.request_log import drain_body, request_service

logger = logging.getLogger(__name__)

FAULTS_ENV = "LOCAL_AWS_FAULTS"
_REMEMBERED_ATTEMPTS = 100_000
_S3_ERRORS = (
    ("503 Service Unavailable", "SlowDown", "Please reduce your request rate."),
    ("500 Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
)

_FAILING_SERVICES = frozenset({"s3", "elasticmapreduce"})

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FaultPlanError(ValueError):
    """A fault plan that cannot be carried out; the message names the key and the fix."""


@dataclass(frozen=True)
class ProcessFault:
    """Where a process is killed (or a cluster terminated): after a number of seconds, or after a request.

    :param step: the step's name (``extract_features``); unused for a caller's kill.
    :param at: the request that triggers it (``PUT /bucket/features/``, ``RunJobFlow``); empty: ``after_seconds``.
    :param after_requests: the how-manieth request matching ``at`` triggers it (from 1).
    :param after_seconds: when ``at`` is empty, the seconds after the step starts.
    """

    step: str = ""
    at: str = ""
    after_requests: int = 1
    after_seconds: float = 0.0

    def matches(self, request: RequestKey) -> bool:
        return bool(self.at) and request.matches(self.at)


@dataclass(frozen=True)
class FaultPlan:
    """The faults the endpoint injects; the default injects none.

    :param seed: seeds the draws of which requests fail.
    :param s3_error_share: the share of S3 requests answered 503 SlowDown or 500 InternalError (first attempt).
    :param emr_throttle_share: the share of EMR requests answered ThrottlingException (first attempt).
    :param kill_step: the step whose process group is SIGKILLed, and when.
    :param terminate_during_step: the step during which the cluster is terminated, and when.
    :param lose_node: the step during which a core or task node (spot first) is lost, and when.
    :param kill_caller: the request after whose answer its sender's process is SIGKILLed (once).
    :param failed_attempts: the S3 or EMR requests whose first attempts all fail, and how many.
    """

    seed: int = 0
    s3_error_share: float = 0.0
    emr_throttle_share: float = 0.0
    kill_step: ProcessFault | None = None
    terminate_during_step: ProcessFault | None = None
    lose_node: ProcessFault | None = None
    kill_caller: ProcessFault | None = None
    failed_attempts: FailedAttempts | None = None

    def __post_init__(self) -> None:
        for name in ("s3_error_share", "emr_throttle_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise FaultPlanError(f"Fault plan key {name!r} is {share}; use a share between 0 and 1.")
        for name in ("kill_step", "terminate_during_step", "lose_node"):
            fault = getattr(self, name)
            if fault is not None and not fault.step:
                raise FaultPlanError(f"Fault plan key {name!r} names no step; add 'step': the step's name.")
        if self.kill_caller is not None and not self.kill_caller.at:
            raise FaultPlanError("Fault plan key 'kill_caller' has no 'at'; name an EMR operation or 'METHOD /path'.")
        if self.failed_attempts is not None and (problem := self.failed_attempts.problem()):
            raise FaultPlanError(problem)

    @property
    def any(self) -> bool:
        return self != FaultPlan(seed=self.seed)

    def to_json(self) -> str:
        return json.dumps({key: value for key, value in asdict(self).items() if value is not None})

    @classmethod
    def from_json(cls, text: str) -> FaultPlan:
        """A plan from JSON such as ``{"seed": 7, "s3_error_share": 0.1, "kill_step": {"step": "pca"}}``.

        :raises FaultPlanError: for bad JSON, an unknown key, or a bad value.
        """
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise FaultPlanError(f"Fault plan {text!r} is not JSON ({error.msg}); see local_aws/README.md.") from None
        if not isinstance(document, dict):
            raise FaultPlanError(f"Fault plan {text!r} is not a JSON object; see local_aws/README.md.")
        _refuse_unknown(document, cls, "fault plan")
        process_faults: dict[str, Any] = {}
        for name in ("kill_step", "terminate_during_step", "lose_node", "kill_caller"):
            if document.get(name) is not None:
                _refuse_unknown(document[name], ProcessFault, name)
                process_faults[name] = ProcessFault(**document[name])
        if document.get("failed_attempts") is not None:
            _refuse_unknown(document["failed_attempts"], FailedAttempts, "failed_attempts")
            process_faults["failed_attempts"] = FailedAttempts(**document["failed_attempts"])
        return cls(**{**document, **process_faults})

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> FaultPlan:
        """The plan in ``$LOCAL_AWS_FAULTS``, else none."""
        text = environ.get(FAULTS_ENV, "").strip()
        return cls.from_json(text) if text else cls()


def _refuse_unknown(document: Any, kind: type, what: str) -> None:
    known = {f.name for f in fields(kind)}
    if not isinstance(document, dict) or set(document) - known:
        unknown = sorted(set(document) - known) if isinstance(document, dict) else document
        raise FaultPlanError(f"Unknown {what} keys {unknown}; use {sorted(known)} (local_aws/README.md).")


@dataclass(frozen=True)
class RequestKey:
    """What the injector knows of a request."""

    service: str
    operation: str
    method: str
    path: str

    def matches(self, at: str) -> bool:
        method, _, prefix = at.partition(" ")
        if prefix:
            return self.method == method and self.path.startswith(prefix)
        return self.operation == at


@dataclass
class Injected:
    """One fault the endpoint injected, for a test or the chaos run's table."""

    kind: str
    detail: str
    at: float = field(default_factory=time.time)


class FaultInjector:
    """Injects a :class:`FaultPlan`'s faults; ``plan`` may be replaced while the endpoint runs.

    :param plan: the faults to inject.
    :param work_root: where steps run (``<work root>/<cluster id>/steps/<step id>/``), to find a step's process;
        the endpoint sets it when it starts.
    """

    def __init__(self, plan: FaultPlan, work_root: Path | None = None) -> None:
        self._lock = threading.Lock()
        self.work_root = work_root
        self.injected: list[Injected] = []
        self.plan = plan

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    @plan.setter
    def plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self._plan = plan
            self._random = random.Random(plan.seed)
            self._attempts: OrderedDict[str, None] = OrderedDict()
            self._failed_attempts = AttemptCounter()
            self._matches: dict[str, int] = {}
            self._running_steps: dict[str, tuple[Any, Any]] = {}

    # --- requests ---------------------------------------------------------------------------

    def wrap(self, app: WsgiApp, server_port: Callable[[], int]) -> WsgiApp:
        """``app`` answering with the plan's request faults, and killing the callers it names."""

        def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            request = _request_key(environ)
            error = self._request_error(request, environ)
            if error is not None:
                drain_body(environ)
                status, headers, body = error
                start_response(status, headers)
                return [body]
            answer = app(environ, start_response)
            self._after_request(request, environ, server_port)
            return answer

        return wsgi

    def _request_error(self, request: RequestKey, environ: dict[str, Any]) -> tuple[str, list, bytes] | None:
        plan = self.plan
        share = {"s3": plan.s3_error_share, "elasticmapreduce": plan.emr_throttle_share}.get(request.service, 0.0)
        repeated = plan.failed_attempts
        if repeated is not None and not (request.service in _FAILING_SERVICES and request.matches(repeated.at)):
            repeated = None
        if share <= 0 and repeated is None:
            return None
        query = environ.get("QUERY_STRING", "")
        attempt = environ.get("HTTP_AMZ_SDK_INVOCATION_ID") or f"{request.method} {request.path}?{query}"
        with self._lock:
            if repeated is not None:
                if not self._failed_attempts.fails(repeated, attempt, self._random):
                    return None
            elif not self._first_attempt_fails(attempt, share):
                return None
            s3_error = self._random.choice(_S3_ERRORS)
        if request.service == "s3":
            status, code, message = s3_error
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<Resource>{request.path}</Resource><RequestId>local-aws-fault</RequestId></Error>"
            ).encode()
            self._record("s3 error", f"{code} on {request.method} {request.path}")
            return status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))], body
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        self._record("emr throttling", request.operation)
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body)))]
        return "400 Bad Request", headers, body

    def _first_attempt_fails(self, attempt: str, share: float) -> bool:
        """Whether this first attempt is drawn to fail (a retry of it never is); called under the lock."""
        if attempt in self._attempts:
            return False
        self._attempts[attempt] = None
        if len(self._attempts) > _REMEMBERED_ATTEMPTS:
            self._attempts.popitem(last=False)
        return self._random.random() < share

    def _after_request(self, request: RequestKey, environ: dict[str, Any], server_port: Callable[[], int]) -> None:
        plan = self.plan
        if plan.kill_caller is not None and self._triggered("kill_caller", plan.kill_caller, request):
            pid = _caller_pid(environ, server_port())
            if pid is not None:
                self._record("caller killed", f"pid {pid} after {request.operation or request.method} {request.path}")
                os.kill(pid, signal.SIGKILL)
        for name in ("kill_step", "terminate_during_step", "lose_node"):
            fault = getattr(plan, name)
            if fault is None or name not in self._running_steps:
                continue
            if self._triggered(name, fault, request):
                self._strike(name)

    def _triggered(self, name: str, fault: ProcessFault, request: RequestKey) -> bool:
        """Whether ``request`` is the one ``fault`` waits for; each fault strikes once per plan."""
        if not fault.matches(request):
            return False
        with self._lock:
            count = self._matches.get(name, 0) + 1
            self._matches[name] = count
            return count == fault.after_requests

    # --- steps ------------------------------------------------------------------------------

    def step_started(self, cluster: Any, step: Any) -> None:
        """Arm the plan's step faults for ``step`` (the step runner calls this as the step starts)."""
        plan = self.plan
        for name in ("kill_step", "terminate_during_step", "lose_node"):
            fault = getattr(plan, name)
            if fault is None or fault.step != step.name:
                continue
            with self._lock:
                if name in self._matches:  # once per plan
                    continue
                self._matches[name] = 0
                self._running_steps[name] = (cluster, step)
            if not fault.at:
                timer = threading.Timer(fault.after_seconds, self._strike, args=(name,))
                timer.daemon = True
                timer.start()

    def step_ended(self, cluster: Any, step: Any) -> None:
        with self._lock:
            for name, (_, running) in list(self._running_steps.items()):
                if running is step:
                    del self._running_steps[name]

    def _strike(self, name: str) -> None:
        with self._lock:
            armed = self._running_steps.pop(name, None)
        if armed is None:
            return
        cluster, step = armed
        if name == "terminate_during_step":
            self._record("cluster terminated", f"{cluster.id} during step {step.name}")
            cluster.terminate()
            return
        assert self.work_root is not None, "the endpoint sets the work root before any step runs"
        folder = (self.work_root / cluster.id / "steps" / step.id).resolve()
        if name == "lose_node":
            lost = lose_node(cluster, folder)
            if lost is None:  # not counted as injected: a chaos run then says "fault not injected"
                logger.warning("fault not injected: %s has no core or task node left to lose", cluster.id)
            else:
                self._record("node lost", f"during step {step.name}: {lost}")
            return
        killed = _kill_groups_in(folder)
        self._record("step killed", f"{step.name} of {cluster.id}: {killed} process group(s) SIGKILLed")

    def _record(self, kind: str, detail: str) -> None:
        logger.warning("fault injected: %s: %s", kind, detail)
        with self._lock:
            self.injected.append(Injected(kind, detail))


def _request_key(environ: dict[str, Any]) -> RequestKey:
    return RequestKey(
        service=request_service(environ),
        operation=environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2],
        method=environ.get("REQUEST_METHOD", ""),
        path=environ.get("PATH_INFO", ""),
    )


def _caller_pid(environ: dict[str, Any], server_port: int) -> int | None:
    """The local process on the other end of this request's connection."""
    address, port = environ.get("REMOTE_ADDR"), int(environ.get("REMOTE_PORT") or 0)
    for connection in psutil.net_connections(kind="tcp"):
        if (
            connection.pid
            and connection.pid != os.getpid()
            and connection.laddr
            and connection.raddr
            and (connection.laddr.ip, connection.laddr.port) == (address, port)
            and connection.raddr.port == server_port
        ):
            return connection.pid
    logger.warning("fault not injected: no local process sent the request from %s:%s", address, port)
    return None


def _kill_groups_in(folder: Path) -> int:
    """SIGKILL the process groups of the processes working in ``folder`` (a step's work folder)."""
    groups = set()
    for process in psutil.process_iter(["cwd"]):
        try:
            if process.info["cwd"] and Path(process.info["cwd"]).resolve() == folder:
                groups.add(os.getpgid(process.pid))
        except (psutil.Error, ProcessLookupError):
            continue
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            continue
    return len(groups)
