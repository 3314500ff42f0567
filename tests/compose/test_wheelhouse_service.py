"""docker-compose.yaml's local-aws-wheelhouse: the nodes install only from the bucket's wheelhouse, and the
Airflow containers have no local build for stage_artifacts to upload, so this one-shot service publishes it
into the endpoint's bucket before the scheduler starts. Its very command line runs here against an embedded
endpoint that local-aws-init's own command provisioned, with a stand-in build in the folder it is given
(building the real one asks PyPI: `make install` does, once per lock); then stage_artifacts, as the role that
the stack's connection assumes and with no local build, as in the containers, finds what it needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import PurePosixPath

import pytest
from airflow.exceptions import AirflowFailException

from fruits_airflow import tasks
from fruits_airflow.artifacts import BOOTSTRAP_DIR
from fruits_airflow.wheelhouse import LAYERS, WHEELHOUSE_DIR_ENV, Wheelhouse
from tests.suite import REPO_ROOT
from tools import local_provision

WHEELHOUSE_SERVICE = "local-aws-wheelhouse"
PROVISION_SERVICE = "local-aws-init"
TASK_SERVICE = "airflow-scheduler"


def option_value(args: list[str], option: str) -> str:
    assert option in args, f"{option} missing from {args}"
    return args[args.index(option) + 1]


def replaced(args: list[str], option: str, value: str) -> list[str]:
    """``args`` with the value after ``option`` replaced: a container's path or host by this machine's."""
    index = args.index(option) + 1
    return [*args[:index], value, *args[index + 1 :]]


def connection_endpoint(compose) -> str:
    return json.loads(compose.environment(TASK_SERVICE)["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]["endpoint_url"]


def test_the_scheduler_waits_for_the_wheelhouse_to_be_published(compose):
    """stage_artifacts runs in the scheduler's container (LocalExecutor) and refuses a bucket without it."""
    depends_on = compose.services[TASK_SERVICE]["depends_on"]
    assert depends_on[WHEELHOUSE_SERVICE]["condition"] == "service_completed_successfully"
    assert compose.services[WHEELHOUSE_SERVICE]["depends_on"][PROVISION_SERVICE]["condition"] == (
        "service_completed_successfully"
    )


def test_the_wheelhouse_goes_to_the_variables_bucket_through_the_connections_endpoint(compose, local_variable):
    command = compose.command(WHEELHOUSE_SERVICE)

    assert command[:3] == ["python", "-m", "tools.wheelhouse"]
    assert "publish" in command
    assert option_value(command, "--bucket") == local_variable["bucket"]
    assert option_value(command, "--region") == local_variable["region"]
    assert option_value(command, "--endpoint-url") == connection_endpoint(compose)


def test_the_wheelhouse_is_built_into_a_declared_volume_or_a_host_folder(compose, read_compose):
    build_dir = option_value(compose.command(WHEELHOUSE_SERVICE), "--dir")
    assert compose.mounts(WHEELHOUSE_SERVICE)[build_dir] in compose.data["volumes"]

    with_host_folder = read_compose(compose.path, {"AIRFLOW_JWT_SECRET": "x", "FRUITS_WHEELHOUSE_DIR": "/home/dev/w"})
    assert with_host_folder.bind_mounts(WHEELHOUSE_SERVICE)[build_dir] == "/home/dev/w"


def test_the_wheelhouse_service_mounts_what_the_wheelhouse_key_reads(compose):
    """The key hashes bootstrap/'s requirements, found next to plugins/ as in the repository."""
    mounts = compose.bind_mounts(WHEELHOUSE_SERVICE)
    root = PurePosixPath(next(target for target, source in mounts.items() if source == "./plugins")).parent
    for folder in ("tools", "plugins", "spark_jobs", BOOTSTRAP_DIR.name):
        assert mounts.get(str(root / folder)) == f"./{folder}"


def test_the_wheelhouse_service_s_command_publishes_what_stage_artifacts_needs(
    compose, provision_script, aws, tmp_path, monkeypatch, capsys
):
    container_endpoint = connection_endpoint(compose)
    provision_args = replaced(provision_script(compose)[0], "--endpoint-url", aws.endpoint_url)
    assert local_provision.main(provision_args[3:]) == 0
    variable = json.loads(capsys.readouterr().out)
    connection = compose.environment(TASK_SERVICE)["AIRFLOW_CONN_AWS_DEFAULT"]
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", connection.replace(container_endpoint, aws.endpoint_url))
    # The Airflow containers have no local build: stage_artifacts must find the wheelhouse in the bucket.
    monkeypatch.setenv(WHEELHOUSE_DIR_ENV, str(tmp_path / "no-build-here"))
    with pytest.raises(AirflowFailException, match="make publish-wheelhouse"):
        tasks.stage_artifacts.function(variable)
    build = Wheelhouse.of(BOOTSTRAP_DIR, tmp_path / "wheelhouse")
    build.local_dir.mkdir(parents=True)
    for layer in LAYERS:
        (build.local_dir / layer).write_bytes(layer.encode() * 1000)

    command = compose.command(WHEELHOUSE_SERVICE)
    command = replaced(replaced(command, "--dir", str(tmp_path / "wheelhouse")), "--endpoint-url", aws.endpoint_url)
    python_path = os.pathsep.join(str(REPO_ROOT / folder) for folder in ("spark_jobs", "plugins", "."))
    environment = {**os.environ, **compose.environment(WHEELHOUSE_SERVICE), "PYTHONPATH": python_path}
    published = subprocess.run(
        [sys.executable, *command[1:]], capture_output=True, text=True, cwd=REPO_ROOT, env=environment, timeout=120
    )

    assert published.returncode == 0, published.stderr
    staged = tasks.stage_artifacts.function(variable)
    assert staged["wheelhouse_uris"]["x86_64"] == published.stdout.strip() == build.uri(variable["bucket"])
    s3 = aws.client("s3")
    for layer in LAYERS:
        body = s3.get_object(Bucket=variable["bucket"], Key=f"{build.prefix}{layer}")["Body"].read()
        assert body == (build.local_dir / layer).read_bytes()
