"""tools.wheelhouse's command line: a publication that cannot reach its endpoint or bucket is one line, exit 1.

The build is a stand-in of small layers under the lock's key: building the real one asks PyPI (make install).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fruits_airflow.artifacts import BOOTSTRAP_DIR
from fruits_airflow.wheelhouse import LAYERS, Wheelhouse
from tools import wheelhouse


@pytest.fixture
def build_root(tmp_path: Path) -> Path:
    build = Wheelhouse.of(BOOTSTRAP_DIR, tmp_path / "builds")
    build.local_dir.mkdir(parents=True)
    for layer in LAYERS:
        (build.local_dir / layer).write_bytes(layer.encode())
    return tmp_path / "builds"


@pytest.fixture
def endpoint_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")


def publish(build_root: Path, endpoint_url: str, bucket: str) -> int:
    args = ["--dir", str(build_root), "publish", "--bucket", bucket, "--region", "eu-west-1"]
    return wheelhouse.main([*args, "--endpoint-url", endpoint_url])


def test_an_endpoint_that_does_not_answer_is_one_line(build_root, endpoint_keys, capsys):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"

        assert publish(build_root, url, "fruits-demo") == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"wheelhouse: error: nothing answers at {url}; start it first or fix --endpoint-url"


def test_a_bucket_that_does_not_exist_is_one_line_naming_it(aws, build_root, endpoint_keys, capsys):
    assert publish(build_root, aws.endpoint_url, "fruits-nowhere") == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"wheelhouse: error: publishing to s3://fruits-nowhere at {aws.endpoint_url}: ")


def test_the_aarch64_build_asks_for_the_lean_nodes_pins_on_aarch64_tags_only(monkeypatch, tmp_path):
    """What pip is asked for (the real download reaches PyPI: 28 wheels, checked on 2026-12-05)."""
    asked: list[list[str]] = []
    monkeypatch.setattr(wheelhouse.subprocess, "run", lambda command, check: asked.append(command))

    wheelhouse.download(BOOTSTRAP_DIR, tmp_path, "aarch64")

    (command,) = asked
    tags = [command[index + 1] for index, word in enumerate(command) if word == "--platform"]
    assert tags[0] == "manylinux_2_34_aarch64"
    assert tags[-1] == "manylinux2014_aarch64"
    assert all(tag.endswith("_aarch64") for tag in tags)
    assert command[command.index("--requirement") + 1] == str(BOOTSTRAP_DIR / "requirements.txt")
