"""`make airflow`: docker-compose.yaml's stack without Docker, for developing the DAG in the Airflow UI.

    python -m tools.airflow_stack [--images DIR] [--port 8080] [--state-dir .local-aws]

Starts the embedded AWS endpoint (its S3 and the bucket kept in ``--state-dir``, shared with ``make demo``)
and the four Airflow 3 services the compose file runs: api-server, scheduler, dag-processor and triggerer
(the deferrable sensors need it), with the LocalExecutor. Prints the URL and the login, then runs until
Ctrl-C (or SIGTERM), when it stops every process it started, Spark steps included.

Each service runs in a session of its own, so that a Ctrl-C at the terminal reaches only this process,
which then stops the services in order: Airflow first, so that no task is left talking to an endpoint
that is gone, then the endpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from fruits_spark.model_cache import default_cache_dir
from local_aws import EmbeddedAws
from local_aws.process_groups import stop_groups
from tools.imagenet_weights import upload_imagenet_weights
from tools.local_airflow import (
    AIRFLOW,
    BUCKET,
    REGION,
    REPO_ROOT,
    STOP_GRACE_SECONDS,
    airflow_environment,
    choose_weights,
    migrate,
)
from tools.local_provision import provision
from tools.model_cache_sync import download_models, upload_models

log = logging.getLogger("airflow_stack")

SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
USERNAME = "admin"
HOST = "127.0.0.1"
# Health reports name the services that way: the api-server reports on the other three.
HEALTH_KEYS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


class StackError(RuntimeError):
    """The stack could not start: the message says which service and where its log is."""


@dataclass(frozen=True)
class RunningStack:
    """Where a started stack listens and how to log in."""

    url: str
    endpoint_url: str
    username: str
    password: str
    logs_dir: Path
    processes: dict[str, subprocess.Popen]


def require_free_port(port: int) -> None:
    """Fail before starting anything when another program listens on the api-server's port."""
    with socket.socket() as probe:
        if probe.connect_ex((HOST, port)) == 0:
            raise StackError(f"{HOST}:{port} is already in use; stop what listens there or pass --port")


def stack_environment(
    airflow_home: Path, endpoint_url: str, images: Path, url: str, stack_variable: dict[str, str]
) -> dict[str, str]:
    """The local Airflow's environment, plus what several services need to agree on (``url``: the api-server's).

    :param stack_variable: the Variable keys that local provisioning returns (the network's ids).
    """
    # Scheduled runs name no weights: they take the Variable's, which must be loadable here.
    variable = {**stack_variable, "weights": choose_weights()}
    return {
        **airflow_environment(airflow_home, endpoint_url, images, variable),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # The LocalExecutor forks this many workers up front (32 by default): a few are plenty here.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        # Every service must sign and check task tokens with the same secret; a new one each start.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
    }


def health(url: str) -> dict[str, str]:
    """Each component's status from the api-server's health endpoint; {} while it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:
            report = json.load(response)
    except (OSError, ValueError):
        return {}
    return {key: (report.get(key) or {}).get("status", "unknown") for key in HEALTH_KEYS}


def wait_until_healthy(url: str, processes: dict[str, subprocess.Popen], logs_dir: Path, timeout: float) -> None:
    """Wait until the api-server reports every component healthy; fail fast when a service exits."""
    deadline = time.monotonic() + timeout
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise StackError(f"airflow {name} exited with {process.returncode}; see {logs_dir / name}.log")
        statuses = health(url)
        if statuses and all(status == "healthy" for status in statuses.values()):
            return
        time.sleep(1)
    waiting = ", ".join(f"{key} {status}" for key, status in statuses.items()) or "the api-server not answering"
    raise StackError(f"Airflow was not healthy after {timeout:.0f} s ({waiting}); logs in {logs_dir}")


def read_password(airflow_home: Path, timeout: float = 30) -> str:
    """The admin password the api-server's simple auth manager generated into AIRFLOW_HOME."""
    passwords_file = airflow_home / "simple_auth_manager_passwords.json.generated"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(passwords_file.read_text())[USERNAME]
        except (OSError, ValueError, KeyError):
            time.sleep(0.5)
    raise StackError(f"the api-server wrote no password for '{USERNAME}' to {passwords_file}")


@contextmanager
def airflow_stack(images: Path, state_dir: Path, port: int, startup_timeout: float = 240) -> Iterator[RunningStack]:
    """Run the endpoint and the four Airflow services; everything is stopped on the way out."""
    airflow_home = state_dir / "airflow-stack"
    logs_dir = airflow_home / "service-logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://{HOST}:{port}"
    require_free_port(port)
    with ExitStack() as cleanup:
        aws = cleanup.enter_context(EmbeddedAws(port=0, region=REGION, state_dir=state_dir / "aws"))
        stack_variable = provision(
            aws.client("s3"), aws.client("emr"), aws.client("ec2"), aws.client("iam"), BUCKET, REGION
        )
        models = Path(default_cache_dir())
        upload_models(aws.client("s3"), BUCKET, models)
        upload_imagenet_weights(aws.client("s3"), BUCKET)
        cleanup.callback(lambda: download_models(aws.client("s3"), BUCKET, models))
        env = stack_environment(airflow_home, aws.endpoint_url, images, url, stack_variable)
        log.info("migrating the Airflow database in %s", airflow_home)
        migrate(env)
        processes: dict[str, subprocess.Popen] = {}
        cleanup.callback(lambda: stop_groups(processes.values(), STOP_GRACE_SECONDS))
        for name in SERVICES:
            arguments = [name, "--host", HOST, "--port", str(port)] if name == "api-server" else [name]
            with (logs_dir / f"{name}.log").open("w") as sink:
                processes[name] = subprocess.Popen(
                    [str(AIRFLOW), *arguments],
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=REPO_ROOT,
                )
            log.info("started airflow %s (pid %d), log %s/%s.log", name, processes[name].pid, logs_dir, name)
        wait_until_healthy(url, processes, logs_dir, startup_timeout)
        yield RunningStack(url, aws.endpoint_url, USERNAME, read_password(airflow_home), logs_dir, processes)


def wait_for_stop_or_failure(processes: dict[str, subprocess.Popen]) -> str | None:
    """Block until SIGINT/SIGTERM (None) or until a service exits (its name)."""
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    while not stopping.wait(1):
        for name, process in processes.items():
            if process.poll() is not None:
                return name
    return None


def banner(stack: RunningStack, images: Path) -> str:
    return "\n".join(
        [
            f"Airflow is up: {stack.url}",
            f"  log in as {stack.username} / {stack.password}",
            "  DAG fruits_pipeline: unpause it, then Trigger (conf: weights, variance, reprocess_all)",
            f"  landing folder: {images}",
            f"  AWS endpoint:   {stack.endpoint_url} (bucket {BUCKET}, {REGION})",
            f"  service logs:   {stack.logs_dir}/",
            "Ctrl-C stops everything.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.airflow_stack", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=REPO_ROOT / "sample-images", help="landing folder")
    parser.add_argument("--port", type=int, default=8080, help="the api-server's port on 127.0.0.1 (default 8080)")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".local-aws", help="kept between starts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.images.is_dir():
        parser.error(f"--images {args.images} is not a folder; pass a folder of <label>/<image> files")
    # Ctrl-C during start-up also unwinds through airflow_stack's cleanup.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with airflow_stack(args.images.resolve(), args.state_dir.resolve(), args.port) as stack:
            print(banner(stack, args.images.resolve()), flush=True)
            failed = wait_for_stop_or_failure(stack.processes)
            if failed:
                log_file = stack.logs_dir / f"{failed}.log"
                print(f"airflow_stack: error: airflow {failed} exited; see {log_file}", file=sys.stderr)
                return 1
            print("airflow_stack: stopping every process it started", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("airflow_stack: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    except (StackError, RuntimeError, OSError) as error:
        print(f"airflow_stack: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
