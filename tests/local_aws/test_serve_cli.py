"""``python -m local_aws serve``: the command the project's tooling starts and stops."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3

from local_aws.iam_enforcement import ADMIN
from tests.suite import REPO_ROOT


@contextmanager
def serving(state_dir: Path) -> Iterator[str]:
    """Run the CLI, yield the URL from its first stdout line, then stop it with SIGTERM; it must exit 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "local_aws", "serve", "--port", "0", "--state-dir", str(state_dir)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield process.stdout.readline().strip()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def s3_client(endpoint_url: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="eu-west-1",
        **ADMIN.keys,
    )


def test_serve_keeps_s3_content_across_restarts(tmp_path):
    with serving(tmp_path) as endpoint_url:
        s3 = s3_client(endpoint_url)
        s3.create_bucket(Bucket="fruits", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_object(Bucket="fruits", Key="images/Apple Red 1/r 0.jpg", Body=b"jpeg bytes")

    with serving(tmp_path) as endpoint_url:
        restored = s3_client(endpoint_url).get_object(Bucket="fruits", Key="images/Apple Red 1/r 0.jpg")

    assert restored["Body"].read() == b"jpeg bytes"


def test_serve_on_a_taken_port_exits_with_one_clear_line(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "local_aws", "serve", "--port", str(port), "--state-dir", str(tmp_path)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in result.stderr


def test_serve_with_a_bad_fault_plan_exits_with_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "local_aws", "serve", "--state-dir", str(tmp_path), "--faults", '{"s3_error_share": 3}'],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "local_aws: Fault plan key 's3_error_share' is 3; use a share between 0 and 1."
    ]
