"""Read docker-compose.yaml the way Docker Compose does, without Docker: YAML, then variable interpolation.

There is no Docker engine on this project's machines, so the compose files are checked statically. Compose
interpolates ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` (and ``$$`` for a literal ``$``) in values
after reading the YAML and before validating against the Compose spec; :func:`interpolate` does the same,
except that an unset variable without a default is an error here (Compose only warns and uses ""), so a
typo in a variable name fails a test instead of mounting or setting an empty string.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.suite import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
AWS_OVERRIDE_FILE = REPO_ROOT / "docker-compose.aws.yaml"

# What a developer puts in .env, as the top of docker-compose.yaml shows; nothing else is set.
DEV_ENV = {"AIRFLOW_JWT_SECRET": "test-only-jwt-secret"}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?+])(?P<argument>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


class InterpolationError(ValueError):
    """A ``${...}`` that Compose would refuse, or a variable that is needed but not set."""


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """One string with its variables substituted, as Compose does."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["invalid"] is not None:
            raise InterpolationError(f"invalid interpolation in {text!r}")
        name = match["braced"] or match["bare"]
        operator, argument = match["operator"] or "", match["argument"] or ""
        value = env.get(name)
        unset = value is None or (operator.startswith(":") and value == "")
        if operator.endswith("-"):
            return argument if unset else value
        if operator.endswith("+"):
            return "" if unset else argument
        if unset:
            raise InterpolationError(f"{name} is not set: {argument or 'no default given'}")
        return value

    return _VARIABLE.sub(substitute, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """Every string value of a loaded compose file interpolated; keys are left alone, as Compose does."""
    if isinstance(node, str):
        return interpolate_text(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def command_args(command: str | list[str]) -> list[str]:
    """A service's command or healthcheck as argv: Compose splits a string command like a shell."""
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


@dataclass(frozen=True)
class ComposeFile:
    """One compose file after YAML anchors, merge keys and interpolation, as plain data."""

    path: Path
    data: dict[str, Any]

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return self.data["services"]

    def environment(self, service: str) -> dict[str, str]:
        environment = self.services[service].get("environment", {})
        if isinstance(environment, list):
            return dict(item.split("=", 1) for item in environment)
        return {key: str(value) for key, value in environment.items()}

    def airflow_services(self) -> list[str]:
        """The services that run Airflow: those given an executor."""
        return [name for name in self.services if "AIRFLOW__CORE__EXECUTOR" in self.environment(name)]

    def command(self, service: str) -> list[str]:
        return command_args(self.services[service]["command"])

    def healthcheck(self, service: str) -> list[str]:
        """The healthcheck's command as argv, without Compose's ``CMD``/``CMD-SHELL`` marker."""
        test = self.services[service]["healthcheck"]["test"]
        if isinstance(test, str):
            return command_args(test)
        kind, *args = test
        return command_args(args[0]) if kind == "CMD-SHELL" else args

    def mounts(self, service: str) -> dict[str, str]:
        """``{container path: source}`` of the service's short-syntax volumes (bind or named)."""
        mounts = {}
        for volume in self.services[service].get("volumes", []):
            source, target, *_mode = volume.split(":")
            mounts[target] = source
        return mounts

    def bind_mounts(self, service: str) -> dict[str, str]:
        """The mounts whose source is a host path rather than a named volume."""
        return {target: source for target, source in self.mounts(service).items() if source.startswith((".", "/", "~"))}

    def to_json(self) -> str:
        return json.dumps(self.data)


def load_compose(path: Path, env: Mapping[str, str]) -> ComposeFile:
    """Read a compose file with ``env`` as the only variables set."""
    return ComposeFile(path, interpolate(yaml.safe_load(path.read_text()), env))


@pytest.fixture(scope="session")
def read_compose() -> Callable[[Path, Mapping[str, str]], ComposeFile]:
    """:func:`load_compose`, for the tests that read a file with other variables set."""
    return load_compose


@pytest.fixture(scope="session")
def compose() -> ComposeFile:
    """docker-compose.yaml as a developer runs it, with the default of every optional variable."""
    return load_compose(COMPOSE_FILE, DEV_ENV)


@pytest.fixture(scope="session")
def aws_env() -> dict[str, str]:
    """What someone pointing the stack at AWS sets, besides the developer's .env."""
    return {
        **DEV_ENV,
        "FRUITS_BUCKET": "acme-fruits-eu",
        "FRUITS_AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/fruits-pipeline-airflow",
        "FRUITS_REGION": "eu-central-1",
        "FRUITS_SUBNET_ID": "subnet-0123456789abcdef0",
        "FRUITS_PRIMARY_SECURITY_GROUP": "sg-0aaaaaaaaaaaaaaa1",
        "FRUITS_CORE_SECURITY_GROUP": "sg-0bbbbbbbbbbbbbbb2",
        "AWS_PROFILE": "fruits",
        "HOME": "/home/dev",
    }


@pytest.fixture(scope="session")
def aws_override(aws_env: dict[str, str]) -> ComposeFile:
    """docker-compose.aws.yaml, interpolated with :func:`aws_env`."""
    return load_compose(AWS_OVERRIDE_FILE, aws_env)


@pytest.fixture(scope="session")
def airflow_cli() -> Callable[..., int]:
    """The exit code of the locked Airflow's CLI for some arguments, parsed in this process.

    ``airflow ARGS --help`` only builds Airflow's parser and parses ``ARGS``, which is what this does,
    without starting an interpreter and importing Airflow again for each command checked.
    """
    from airflow.cli import cli_parser

    def run(*args: str) -> int:
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                cli_parser.get_parser().parse_args(list(args))
        except SystemExit as exit_:
            return exit_.code if isinstance(exit_.code, int) else 1
        return 0

    return run


PROVISION_SERVICE = "local-aws-init"
# The network local provisioning creates in the endpoint: EC2's ids, new at each start of the endpoint.
ENDPOINT_NETWORK = {
    "subnet_id": "subnet-0e1e2e3e4e5e6e7e8",
    "emr_managed_master_security_group": "sg-0f1f2f3f4f5f6f7f8",
    "emr_managed_slave_security_group": "sg-0a9a8a7a6a5a4a3a2",
}


def _provision_script(compose: ComposeFile) -> tuple[list[str], list[str]]:
    shell, flag, script = compose.command(PROVISION_SERVICE)
    assert (shell, flag) == ("bash", "-c")
    provision = re.search(r'"\$\((python -m tools\.local_provision [^)]*)\)"', script)
    setting = re.search(r"&& (airflow variables set .*)$", script)
    assert provision, script
    assert setting, script
    return shlex.split(provision.group(1)), shlex.split(setting.group(1))


@pytest.fixture(scope="session")
def provision_script() -> Callable[[ComposeFile], tuple[list[str], list[str]]]:
    """local-aws-init's two commands, as argvs: the provisioning, then the setting of the Variable."""
    return _provision_script


@pytest.fixture(scope="session")
def endpoint_network() -> dict[str, str]:
    return dict(ENDPOINT_NETWORK)


@pytest.fixture
def local_variable(compose, monkeypatch, capsys) -> dict[str, Any]:
    """The Variable local-aws-init sets: what its provisioning command prints, given the endpoint's network."""
    from tools import local_provision

    def provision(s3, emr, ec2, iam, bucket, region):
        return {"bucket": bucket, "region": region, **ENDPOINT_NETWORK}

    monkeypatch.setattr(local_provision, "provision", provision)
    provision_args, _ = _provision_script(compose)
    assert local_provision.main(provision_args[3:]) == 0
    return json.loads(capsys.readouterr().out)
