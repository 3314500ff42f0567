"""The embedded AWS endpoint: moto's server on a local port, with EMR steps that really run.

Everything lives in this process: moto's HTTP server (S3, EMR, STS and the rest of moto) in a thread,
the emulated EMR backend, and the step runner that watches it. Steps reach S3 through this server's
API, as they reach S3 on EMR. S3's content is kept on disk in ``<state dir>/s3`` between runs:
restored when the endpoint starts, saved when it stops cleanly (local_aws.s3_state).

Every request is recorded (:attr:`EmbeddedAws.requests`), and each can be delayed by a fixed
latency, as S3's 20-40 ms per request would delay it, to measure what a job costs in requests and
whether its throughput survives latency.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Self

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from local_aws.bootstrap_actions import BootstrapActions
from local_aws.emr_emulation import EmulatedCluster, emulated_emr
from local_aws.emr_fleets import SpotMarket, spot_market
from local_aws.faults import FaultInjector, FaultPlan, Injected
from local_aws.iam_enforcement import ADMIN, iam_enforced, node_credentials
from local_aws.node import Node, NodeRuntime, NoInternet
from local_aws.request_log import RequestLog, recorded
from local_aws.s3_listing import live_common_prefixes
from local_aws.s3_regions import nodes_sign_for_their_bucket_s_region
from local_aws.s3_state import backend as s3_backend
from local_aws.s3_state import restore as restore_s3
from local_aws.s3_state import save as save_s3
from local_aws.step_execution import StepExecutor
from local_aws.step_runner import StepRunner

logger = logging.getLogger(__name__)

DEFAULT_REGION = "eu-west-1"
DEFAULT_HOST = "127.0.0.1"


class EmbeddedAws:
    """An AWS endpoint on a local port whose EMR clusters run their steps with the project's Spark.

    Example::

        with EmbeddedAws(port=0) as aws:
            emr = aws.client("emr")  # or any client with endpoint_url=aws.endpoint_url

    :param port: the TCP port; 0 picks a free one (read it back from :attr:`endpoint_url`).
    :param host: the address to bind; 0.0.0.0 to serve other containers.
    :param region: the region clients should use; EMR clusters live there.
    :param state_dir: where S3's content, step work folders and step logs live; None for a temporary
        folder removed on stop, so nothing is kept.
    :param latency_seconds: a delay added to every request, as a remote service's latency would add;
        :attr:`latency_seconds` may be changed while the endpoint runs.
    :param node_dir: the folder of the node that clusters bootstrap and run steps on (local_aws.node),
        shared by every cluster; by default ``<state dir>/node``.
    :param faults: the faults to inject (local_aws.faults); by default those of ``$LOCAL_AWS_FAULTS``, else
        none. :attr:`faults` may be replaced while the endpoint runs; :attr:`injected` lists those injected.
    :param spot_capacity: the spot instances the region has left per instance type, which instance fleets
        draw from (local_aws.emr_fleets); by default those of ``$LOCAL_AWS_SPOT_CAPACITY``, else any amount.
        :attr:`spot_capacity` may be changed while the endpoint runs.

    :attr:`requests` records every request the endpoint answered.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = DEFAULT_HOST,
        region: str = DEFAULT_REGION,
        state_dir: Path | None = None,
        latency_seconds: float = 0.0,
        node_dir: Path | None = None,
        faults: FaultPlan | None = None,
        spot_capacity: Mapping[str, int] | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"Port {port} is out of range; use 1-65535, or 0 for a free one.")
        if latency_seconds < 0:
            raise ValueError(f"Latency {latency_seconds} s is negative; use 0 for none.")
        if region not in boto3.session.Session().get_available_regions("emr"):
            raise ValueError(f"Unknown region {region!r}; use an AWS region name such as {DEFAULT_REGION}.")
        self.region = region
        self._host = host
        self._port = port
        self._requested_state_dir = state_dir
        self._stack = ExitStack()
        self._server: BaseWSGIServer | None = None
        self._state_dir: Path | None = None
        self.latency_seconds = latency_seconds
        self.requests = RequestLog()
        self._node_dir = node_dir
        self._no_internet: NoInternet | None = None
        self._node: Node | None = None
        self._faults = FaultInjector(FaultPlan.from_environment() if faults is None else faults)
        self._spot = SpotMarket.from_environment() if spot_capacity is None else SpotMarket(spot_capacity)

    @property
    def spot_capacity(self) -> dict[str, int] | None:
        """The spot instances left per instance type for the clusters' fleets; None for any amount."""
        return self._spot.capacity

    @spot_capacity.setter
    def spot_capacity(self, capacity: Mapping[str, int] | None) -> None:
        self._spot.capacity = capacity

    @property
    def faults(self) -> FaultPlan:
        """The faults the endpoint injects (local_aws.faults); setting it starts the new plan's draws afresh."""
        return self._faults.plan

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        self._faults.plan = plan

    @property
    def injected(self) -> list[Injected]:
        """Every fault injected so far, oldest first."""
        return list(self._faults.injected)

    @property
    def endpoint_url(self) -> str:
        """The URL clients use, e.g. ``http://127.0.0.1:5000``."""
        if self._server is None:
            raise RuntimeError("The endpoint is not started; use it as a context manager or call start().")
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return f"http://{host}:{self._server.server_address[1]}"

    @property
    def state_dir(self) -> Path:
        """The folder holding the saved S3 (``s3/``) and the steps' work folders (``clusters/``)."""
        if self._state_dir is None:
            raise RuntimeError("The endpoint is not started; use it as a context manager or call start().")
        return self._state_dir

    def client(self, service_name: str) -> BaseClient:
        """A boto3 client of this endpoint as the account's administrator (:data:`ADMIN`), in the endpoint's region."""
        return boto3.client(
            service_name,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=16),
            **ADMIN.keys,
        )

    def client_environment(self) -> dict[str, str]:
        """The standard variables that point any AWS SDK at this endpoint as the administrator
        (:data:`ADMIN`): what a shell exports for boto3, the AWS CLI, or S3A (through conf/spark)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ADMIN.access_key_id,
            "AWS_SECRET_ACCESS_KEY": ADMIN.secret_access_key,
            "AWS_REGION": self.region,
        }

    def start(self) -> None:
        """Serve, restore S3 from the state folder, and start running steps."""
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise

    def stop(self) -> None:
        """Kill running steps (their outputs and logs are still published), save S3, stop serving."""
        self._stack.close()
        self._server = None
        self._state_dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _start(self) -> None:
        state_dir = self._enter_state_dir()
        server = self._bind()
        self._stack.callback(server.server_close)
        self._server = server
        node = Node(self._node_dir or state_dir / "node")
        self._node = node
        self._no_internet = NoInternet()
        self._stack.callback(self._no_internet.close)
        runtime = NodeRuntime(
            self.client("s3"), state_dir / "clusters", self._step_environment, node, region=self.region
        )
        self._faults.work_root = runtime.work_root
        runner = StepRunner(StepExecutor(runtime), BootstrapActions(runtime), self._faults)
        self._stack.enter_context(emulated_emr(runner, region=self.region))
        self._stack.enter_context(spot_market(self._spot))
        self._stack.enter_context(iam_enforced())
        self._stack.enter_context(live_common_prefixes())
        # Moto's S3 is process-wide: this endpoint's S3 starts as saved and ends with it.
        s3_backend().reset()
        self._stack.callback(s3_backend().reset)
        restored = restore_s3(state_dir / "s3")
        self._serve(server)
        if self._requested_state_dir is not None:
            self._stack.callback(save_s3, state_dir / "s3")
        self._stack.callback(runner.shutdown)
        logger.info(
            "endpoint %s ready (region %s, %d S3 objects restored from %s)",
            self.endpoint_url,
            self.region,
            restored,
            state_dir,
        )

    def _step_environment(self, cluster: EmulatedCluster) -> dict[str, str]:
        """On a cluster a job's AWS calls (S3A, boto3) reach AWS as the instance profile's role; here they reach
        this endpoint as a session of that role, which RunJobFlow's JobFlowRole names. Nothing else is
        reachable (local_aws.node.NoInternet), as from a private subnet. No region is named, as on an EMR node
        (local_aws.node): the cluster's Configurations give Spark's processes theirs.

        :raises NodeRoleMissingError: when the endpoint has no such instance profile.
        """
        environ = {
            **os.environ,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            **node_credentials(cluster.role, self.region),
            **(self._no_internet.variables() if self._no_internet else {}),
        }
        return self._node.environment(environ) if self._node else environ

    def _enter_state_dir(self) -> Path:
        if self._requested_state_dir is None:
            temporary = Path(tempfile.mkdtemp(prefix="local-aws-"))
            self._stack.callback(shutil.rmtree, temporary, ignore_errors=True)
            self._state_dir = temporary
        else:
            self._requested_state_dir.mkdir(parents=True, exist_ok=True)
            self._state_dir = self._requested_state_dir.absolute()
        return self._state_dir

    def _bind(self) -> BaseWSGIServer:
        """Bind the socket here: werkzeug prints and calls sys.exit when the port is taken, we raise OSError."""
        try:
            listener = socket.create_server((self._host, self._port))
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise OSError(
                error.errno,
                f"Cannot listen on {self._host}:{self._port} ({reason}); pick another port, or 0 for a free one.",
            ) from error
        with listener:
            return make_server(
                self._host,
                self._port,
                recorded(
                    nodes_sign_for_their_bucket_s_region(
                        self._faults.wrap(DomainDispatcherApplication(create_backend_app), lambda: self._port_bound)
                    ),
                    self.requests,
                    lambda: self.latency_seconds,
                ),
                threaded=True,
                request_handler=_RequestHandler,
                fd=listener.fileno(),
            )

    @property
    def _port_bound(self) -> int:
        return self._server.server_address[1] if self._server is not None else self._port

    def _serve(self, server: BaseWSGIServer) -> None:
        thread = threading.Thread(target=server.serve_forever, name="local-aws-server", daemon=True)
        thread.start()

        def shut_down() -> None:
            server.shutdown()
            thread.join()

        self._stack.callback(shut_down)


class _RequestHandler(MotoRequestHandler):
    """Moto's handler, with one log line per request at DEBUG: sensors poll every few seconds."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s", self.requestline, code)
