"""The emulated node: its /mnt, and stand-ins for sudo, dnf and yum that pass only what would pass on a node."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fruits_airflow.cluster import NODE_VENV
from local_aws.node import INSTANCE_JSON_VARIABLE, PIPELINE_HOME_VARIABLE, Node


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path / "node")


@pytest.fixture
def run(node: Node, tmp_path: Path):
    """Run a command as a bootstrap action would, with two Pythons on PATH: one with ensurepip, one without."""
    pythons = tmp_path / "pythons"
    pythons.mkdir()
    for name, ensurepip in (("python3.98", 0), ("python3.99", 1)):
        (pythons / name).write_text(f"#!/bin/sh\nexit {ensurepip}\n")
        (pythons / name).chmod(0o755)
    env = node.bootstrap_environment({**os.environ, "PATH": f"{pythons}:{os.environ['PATH']}"})

    def run_command(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

    return run_command


def test_the_node_s_mnt_is_a_folder_of_the_node_and_other_paths_stay(node):
    assert node.node_path("/mnt/fruits-pipeline/venv/bin/python") == f"{node.root}/mnt/fruits-pipeline/venv/bin/python"
    assert node.node_path("/usr/bin/python3") == "/usr/bin/python3"
    assert node.node_path("/mnt1/x") == "/mnt1/x"


def test_the_project_s_venv_is_built_where_the_cluster_s_configuration_names_it(node):
    home = node.bootstrap_environment({})[PIPELINE_HOME_VARIABLE]

    assert node.node_path(NODE_VENV) == f"{home}/venv"


def test_the_node_says_it_is_the_primary_where_emr_says_it_and_bootstrap_actions_read_it(node):
    path = node.bootstrap_environment({})[INSTANCE_JSON_VARIABLE]

    assert path == node.node_path("/mnt/var/lib/info/instance.json")
    assert json.loads(Path(path).read_text())["isMaster"] is True


def test_a_core_node_says_it_is_not_the_primary(tmp_path):
    core = Node(tmp_path / "core", primary=False)

    description = json.loads(Path(core.bootstrap_environment({})[INSTANCE_JSON_VARIABLE]).read_text())

    assert description["isMaster"] is False
    assert description["isRunningDataNode"] is True


def test_dnf_installs_only_what_the_machine_already_has(run):
    assert run("dnf", "install", "-y", "-q", "sh", "python3.98-pip").returncode == 0

    missing = run("yum", "install", "-y", "python3.99-pip", "sh")

    assert missing.returncode == 1
    assert "python3.99-pip: not on this machine" in missing.stderr


def test_dnf_refuses_anything_but_install(run):
    result = run("dnf", "remove", "-y", "sh")

    assert result.returncode == 1
    assert "`dnf remove` cannot run on this machine" in result.stderr


def test_sudo_runs_the_command_as_it_is_and_its_exit_code_is_the_command_s(run):
    assert run("sudo", "sh", "-c", "echo $0 ran; exit 7", "sh").returncode == 7
    assert run("sudo", "-E", "true").returncode == 0


def test_sudo_refuses_to_become_another_user(run):
    result = run("sudo", "-u", "hadoop", "true")

    assert result.returncode == 1
    assert "option -u is not supported" in result.stderr


def test_aws_runs_only_s3_cp(run):
    result = run("aws", "emr", "list-clusters")

    assert result.returncode == 2
    assert "only `aws s3 cp` of one object" in result.stderr
