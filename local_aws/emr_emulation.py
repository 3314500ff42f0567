"""The one place where local_aws hooks into moto's EMR backend, so that steps really run.

Moto records clusters and steps but never runs anything: ``Cluster.add_steps`` marks the first step
RUNNING forever, and ``Cluster.terminate`` jumps straight to TERMINATED. Here subclasses of moto's
models hand those moments to a :class:`StepRunnerHooks` (the step runner) instead:

- :class:`EmulatedEmrBackend` (``ElasticMapReduceBackend``) builds :class:`EmulatedCluster` objects in
  ``run_job_flow``, tells the runner about new steps, and refuses steps on a terminated cluster as EMR
  does.
- :class:`EmulatedCluster` (``Cluster``) queues steps as PENDING, stays STARTING until the runner takes
  it (the runner runs the bootstrap actions), names its primary node's instance, and turns
  ``terminate`` into a request the runner carries out. Its instance groups, and so its instances (moto
  shows an instance with its group's state and timeline), follow it as on EMR: PROVISIONING, then
  BOOTSTRAPPING, RUNNING once it is ready (their ``ReadyDateTime``), TERMINATED with the cluster (their
  ``EndDateTime``), where moto shows them RUNNING from the start and forever; an instance lost during
  a step ends earlier, on its own (local_aws.node_loss).
- :class:`EmulatedStep` (``Step``) adds ``FailureDetails`` to the status that DescribeStep and
  ListSteps return, which moto's serializer reads from the model.
- :class:`EmulatedEmrResponse` (``ElasticMapReduceResponse``) hands a new cluster to the runner once
  RunJobFlow has created its instance groups, and names the cluster a request is about, so
  that moto's IAM evaluator compares a policy's ``cluster/*`` resources with the cluster's ARN rather
  than with "*", and authorizes what RunJobFlow implies (:func:`run_job_flow_implies`).

:func:`emulated_emr` installs the backend class on moto's ``emr_backends`` for the life of one endpoint.
Moto's state is process-wide, so there is at most one emulated endpoint per process.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import ModuleType, SimpleNamespace
from typing import Any, ClassVar, Protocol

from moto.core.base_backend import BackendDict
from moto.core.exceptions import AccessDeniedError, JsonRESTError
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.emr import models as emr_models
from moto.emr import urls as emr_urls
from moto.emr.exceptions import ValidationException
from moto.emr.responses import ElasticMapReduceResponse
from moto.iam.models import iam_backends

from local_aws.emr_fleets import FleetsResponse, InstanceFleet
from local_aws.iam_enforcement import ImpliedAction, authorize, enforcing
from local_aws.node_loss import losable

TERMINATED_STATES = frozenset({"TERMINATED", "TERMINATED_WITH_ERRORS"})
CLUSTER_DOWN_STATES = TERMINATED_STATES | {"TERMINATING"}
TERMINAL_STEP_STATES = frozenset({"COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED"})
# The state of a cluster's instance groups and instances in each state of the cluster.
NODE_STATES = {
    "STARTING": "PROVISIONING",
    "BOOTSTRAPPING": "BOOTSTRAPPING",
    "WAITING": "RUNNING",
    "RUNNING": "RUNNING",
    "TERMINATING": "RUNNING",
    "TERMINATED": "TERMINATED",
    "TERMINATED_WITH_ERRORS": "TERMINATED",
}


def _as_sent(value: Any) -> Any:
    original = getattr(value, "original_dict", None)
    return original() if callable(original) else dict(value)


class StepRunnerHooks(Protocol):
    """What the emulated backend tells the step runner; each call must return quickly (it is a request)."""

    def cluster_created(self, cluster: EmulatedCluster) -> None: ...

    def steps_added(self, cluster: EmulatedCluster) -> None: ...

    def termination_requested(self, cluster: EmulatedCluster) -> None: ...


class EmulatedStep(emr_models.Step):
    """A step whose state the runner sets, with EMR's ``FailureDetails`` once it has failed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failure_details: dict[str, str] | None = None

    def start(self) -> None:
        """Moto calls this on the first step at RunJobFlow; the runner stamps the start when it really starts."""

    def set_state(self, state: str, *, message: str | None = None, failure: dict[str, str] | None = None) -> None:
        """Move to ``state`` and stamp the timeline as EMR does (start on RUNNING, end on a final state)."""
        self.state = state
        self.last_state_change_reason = message
        self.failure_details = failure
        if state == "RUNNING":
            self.start_date_time = utcnow()
        elif state in TERMINAL_STEP_STATES:
            self.end_date_time = utcnow()

    @property
    def status(self) -> dict[str, Any]:
        status = super().status
        if self.failure_details:
            status["FailureDetails"] = self.failure_details
        return status


class EmulatedCluster(emr_models.Cluster):
    """A cluster whose states the runner drives; see the module docstring for what changes."""

    ready_datetime: datetime | None
    end_datetime: datetime | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state_change_code: str | None = None
        self.master_instance_id: str | None = None
        self._primary_started = threading.Event()
        # local_aws.emr_fleets fills these in for a cluster of instance fleets.
        self.instance_collection_type = "INSTANCE_GROUP"
        self.instance_fleets: list[InstanceFleet] = []
        self.fleet_timeout: str | None = None
        super().__init__(*args, **kwargs)

    @property
    def hooks(self) -> StepRunnerHooks:
        return EmulatedEmrBackend.runner_hooks()

    def add_steps(self, steps: list[dict[str, Any]]) -> list[emr_models.Step]:
        added = [EmulatedStep(state="PENDING", **step) for step in steps]
        self.steps.extend(added)
        return added

    def run_bootstrap_actions(self) -> None:
        """The runner runs them, and moves the cluster from STARTING through BOOTSTRAPPING to WAITING."""

    def add_instance(self, instance: emr_models.Instance) -> None:
        """Each instance can end before the cluster, as a lost node does (local_aws.node_loss)."""
        instance = losable(instance)
        super().add_instance(instance)
        if instance.instance_group.role == "MASTER" and self.master_instance_id is None:
            self.master_instance_id = instance.ec2_instance_id
            self._primary_started.set()

    def primary_instance_id(self, timeout: float = 5.0) -> str:
        """The primary node's EC2 instance id, as ListInstances shows it.

        Moto starts the instances right after the cluster, within RunJobFlow; a request without
        instance groups gets none, and then a stable stand-in derived from the cluster id.
        """
        if self._primary_started.wait(timeout) and self.master_instance_id:
            return self.master_instance_id
        return "i-" + hashlib.sha256(self.id.encode()).hexdigest()[:17]

    @property
    def requested_configurations(self) -> list[dict[str, Any]]:
        """The Configurations of RunJobFlow with their keys as sent (moto keeps its own casing of them)."""
        return [_as_sent(configuration) for configuration in self.configurations]

    def terminate(self) -> None:
        """Ask the runner to shut the cluster down; it goes TERMINATING now and TERMINATED once steps stop."""
        if self.state not in CLUSTER_DOWN_STATES:
            self.hooks.termination_requested(self)

    def set_state(self, state: str, *, code: str | None = None, message: str | None = None) -> None:
        """Move to ``state`` with EMR's reason code and stamp ready and end times."""
        self.state = state
        self.state_change_code = code
        self.last_state_change_reason = message
        if state == "WAITING" and self.ready_datetime is None:
            self.ready_datetime = utcnow()
        if state in TERMINATED_STATES and self.end_datetime is None:
            self.end_datetime = utcnow()
        for group in [*self.instance_groups, *self.instance_fleets]:
            group.state = NODE_STATES[state]
            if group.state == "RUNNING" and group.ready_date_time is None:
                group.ready_date_time = self.ready_datetime
            if state in TERMINATED_STATES and group.end_date_time is None:
                group.end_date_time = self.end_datetime

    @property
    def status(self) -> dict[str, Any]:
        status = super().status
        if self.state_change_code:
            status["StateChangeReason"]["Code"] = self.state_change_code
        return status


def cluster_arn(region: str, account_id: str, cluster_id: str) -> str:
    return f"arn:aws:elasticmapreduce:{region}:{account_id}:cluster/{cluster_id}"


def run_job_flow_implies(params: dict[str, Any], region: str, account_id: str) -> list[ImpliedAction]:
    """What AWS authorizes within RunJobFlow besides the action itself (EMR's management guide).

    The request tags' condition of RunJobFlow itself, AddTags for ``Tags``, PutAutoTerminationPolicy for
    an ``AutoTerminationPolicy``, and iam:PassRole for the service role and the instance profile's role.
    The new cluster's id is not known yet: its resource is ``cluster/*``.
    """
    tags = {f"aws:RequestTag/{tag['Key']}": tag.get("Value", "") for tag in params.get("Tags") or []}
    new_cluster = cluster_arn(region, account_id, "*")
    implied = [ImpliedAction("elasticmapreduce:RunJobFlow", "*", tags)]
    if tags:
        implied.append(ImpliedAction("elasticmapreduce:AddTags", new_cluster, tags))
    if params.get("AutoTerminationPolicy"):
        implied.append(ImpliedAction("elasticmapreduce:PutAutoTerminationPolicy", new_cluster))
    if params.get("ServiceRole"):
        implied.append(ImpliedAction("iam:PassRole", _role_arn(params["ServiceRole"], account_id)))
    if params.get("JobFlowRole"):
        implied.append(ImpliedAction("iam:PassRole", _instance_profile_role_arn(params["JobFlowRole"], account_id)))
    return implied


def _role_arn(role: str, account_id: str) -> str:
    return role if role.startswith("arn:") else f"arn:aws:iam::{account_id}:role/{role}"


def _instance_profile_role_arn(profile: str, account_id: str) -> str:
    """The ARN of the role in an instance profile; a missing profile passes a role of its name, as EMR names them."""
    profiles = {p.name: p for p in iam_backends[account_id]["aws"].get_instance_profiles()}
    roles = profiles[profile].roles if profile in profiles else []
    return roles[0].arn if roles else _role_arn(profile, account_id)


class EmulatedEmrResponse(FleetsResponse):
    """Moto's EMR API, with requests authorized against the cluster they name and what RunJobFlow implies."""

    def run_job_flow(self) -> ActionResult:
        """Moto's RunJobFlow; the runner takes the cluster once its instance groups exist, as EMR's do."""
        result = super().run_job_flow()
        cluster = self.backend.describe_cluster(result.result["JobFlowId"])
        # A fleet whose spot capacity timed out with TERMINATE_CLUSTER has ended it already.
        if cluster.state not in CLUSTER_DOWN_STATES:
            EmulatedEmrBackend.runner_hooks().cluster_created(cluster)
        return result

    def _cluster_ids(self) -> list[str]:
        ids = self._get_param("JobFlowIds") or [
            self._get_param(name) for name in ("ClusterId", "JobFlowId", "ResourceId") if self._get_param(name)
        ]
        return [cluster_id for cluster_id in ids if cluster_id.startswith("j-")]

    def _authenticate_and_authorize_normal_action(self, resource: str = "*") -> None:
        checked = enforcing()
        cluster_arns = [cluster_arn(self.region, self.current_account, cluster) for cluster in self._cluster_ids()]
        for arn in cluster_arns or [resource]:
            with _denied_as_emr_denies(arn):
                super()._authenticate_and_authorize_normal_action(arn)
        if checked and self._get_action() == "RunJobFlow":
            for implied in run_job_flow_implies(self._get_params(), self.region, self.current_account):
                with _denied_as_emr_denies(implied.resource):
                    authorize(self, [implied])


@contextmanager
def _denied_as_emr_denies(resource: str) -> Iterator[None]:
    """Moto denies in IAM's XML; EMR's JSON API answers AccessDeniedException, naming the action and resource."""
    try:
        yield
    except AccessDeniedError as denied:
        action = denied.message.rpartition(" ")[2]
        on_resource = f" on resource: {resource}" if resource.startswith("arn:") else ""
        raise JsonRESTError(
            "AccessDeniedException",
            f"{denied.message}{on_resource} because no identity-based policy allows the {action} action",
        ) from None


class EmulatedEmrBackend(emr_models.ElasticMapReduceBackend):
    """Moto's EMR backend with clusters that run their steps through the installed runner."""

    _hooks: ClassVar[StepRunnerHooks | None] = None

    @property
    def _url_module(self) -> ModuleType | SimpleNamespace:
        """Moto looks for a backend's routes next to its class; these are moto's EMR routes, to the emulated API."""
        return SimpleNamespace(
            url_bases=emr_urls.url_bases,
            url_paths={path: EmulatedEmrResponse.dispatch for path in emr_urls.url_paths},
        )

    @classmethod
    def runner_hooks(cls) -> StepRunnerHooks:
        if cls._hooks is None:
            raise RuntimeError("No step runner is installed; start the endpoint with local_aws.EmbeddedAws.")
        return cls._hooks

    def run_job_flow(self, **kwargs: Any) -> emr_models.Cluster:
        # Same as moto's run_job_flow, with the emulated cluster class.
        (
            kwargs["instance_attrs"]["emr_managed_master_security_group"],
            kwargs["instance_attrs"]["emr_managed_slave_security_group"],
            kwargs["instance_attrs"]["service_access_security_group"],
        ) = self._manage_security_groups(**kwargs["instance_attrs"])
        return EmulatedCluster(self, **kwargs)

    def add_instance_groups(
        self, cluster_id: str, instance_groups: list[dict[str, Any]]
    ) -> list[emr_models.InstanceGroup]:
        """Moto's groups, provisioning until their cluster is ready (moto makes them RUNNING and ready at once)."""
        groups = super().add_instance_groups(cluster_id, instance_groups)
        cluster = self.clusters[cluster_id]
        # Moto's Cluster adds the groups of MasterInstanceType and SlaveInstanceType before it has a state.
        state, ready = getattr(cluster, "state", None), getattr(cluster, "ready_datetime", None)
        for group in groups:
            group.state = NODE_STATES.get(state or "STARTING", "PROVISIONING")
            group.ready_date_time = ready
        return groups

    def add_job_flow_steps(self, job_flow_id: str, steps: list[dict[str, Any]]) -> list[emr_models.Step]:
        cluster = self.describe_cluster(job_flow_id)
        if cluster.state in CLUSTER_DOWN_STATES:
            raise ValidationException("A job flow that is shutting down, terminated, or finished may not be modified.")
        added = super().add_job_flow_steps(job_flow_id, steps)
        self.runner_hooks().steps_added(cluster)
        return added


@contextmanager
def emulated_emr(hooks: StepRunnerHooks, *, region: str) -> Iterator[None]:
    """Route moto's EMR API to emulated clusters driven by ``hooks``, starting from an empty moto.

    EMR requests to an IP endpoint carry no region in the URL, where moto looks for it, so the
    endpoint's region becomes the EMR default: cluster ARNs then name the region the clients use.
    """
    backends = emr_models.emr_backends
    if EmulatedEmrBackend._hooks is not None:
        raise RuntimeError("An emulated EMR endpoint already runs in this process; stop it first.")
    original_backend, original_region = backends.backend, ElasticMapReduceResponse.default_region
    BackendDict.reset()
    backends.backend = EmulatedEmrBackend
    EmulatedEmrBackend._hooks = hooks
    ElasticMapReduceResponse.default_region = region
    try:
        yield
    finally:
        BackendDict.reset()
        backends.backend = original_backend
        EmulatedEmrBackend._hooks = None
        ElasticMapReduceResponse.default_region = original_region
