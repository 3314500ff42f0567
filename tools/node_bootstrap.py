"""Run the EMR bootstrap action for real on one emulated node, primary or core, and measure it.

    python -m tools.node_bootstrap --role core [--node DIR]      # then --role primary

Lean nodes (docs/aws.md: What one run costs): the primary node installs TensorFlow to compile the model when
the cache misses it; core and task nodes do not. This stages ``bootstrap/`` in an embedded endpoint's S3
as ``upload_artifacts`` does, then runs ``bootstrap/install_python_deps.sh`` with both requirements URIs on
a local_aws node of that role (a fresh folder unless ``--node`` names one), with a node role that may read
the staged artifacts and nothing else. uv installs from this machine's cache, as the endpoint's node
does. It prints one JSON line: the role, the exit code, the seconds, the venv's size and its packages, and
the machine's load average over the last minute when it ended (other work inflates the seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fruits_airflow.artifacts import BOOTSTRAP_DIR, BOOTSTRAP_SCRIPT, build_spark_artifacts, upload_artifacts
from local_aws import EmbeddedAws
from local_aws.iam_enforcement import node_credentials
from local_aws.node import PIPELINE_HOME, Node

ROLES = ("primary", "core")
BUCKET = "fruits-node-bootstrap"
NODE_PROFILE = "fruits-pipeline-node-bootstrap"


@dataclass(frozen=True)
class NodeBootstrap:
    """One run of the bootstrap action on a node.

    :param role: ``primary`` or ``core``.
    :param exit_code: the script's.
    :param seconds: its wall time.
    :param venv_bytes: the size of the node's virtualenv (a file hard-linked twice counted once).
    :param packages: how many distributions the virtualenv holds.
    :param venv: where the virtualenv is on this machine.
    :param load_average: the machine's load average over the last minute, when the script ended.
    :param stderr: the script's log.
    """

    role: str
    exit_code: int
    seconds: float
    venv_bytes: int
    packages: int
    venv: str
    load_average: float
    stderr: str


def _node_role(aws: EmbeddedAws) -> str:
    """An instance profile whose role may read the staged artifacts, as the stack's node role may."""
    iam = aws.client("iam")
    trust = {
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    }
    read = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/artifacts/*"}],
    }
    iam.create_role(RoleName=NODE_PROFILE, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName=NODE_PROFILE, PolicyName="artifacts", PolicyDocument=json.dumps(read))
    iam.create_instance_profile(InstanceProfileName=NODE_PROFILE)
    iam.add_role_to_instance_profile(InstanceProfileName=NODE_PROFILE, RoleName=NODE_PROFILE)
    return NODE_PROFILE


def venv_size(venv: Path) -> tuple[int, int]:
    """The bytes of the files under ``venv`` (each inode once, as ``du`` counts) and its distributions."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _, files in os.walk(venv):
        for name in files:
            stat = (Path(folder) / name).lstat()
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total, len(list(venv.glob("lib/python*/site-packages/*.dist-info")))


def bootstrap_node(node: Node, role: str, work_dir: Path) -> NodeBootstrap:
    """Stage ``bootstrap/`` in a fresh embedded endpoint and run the script on ``node`` for ``role``."""
    with EmbeddedAws(port=0) as aws:
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region})
        staged = upload_artifacts(s3, BUCKET, build_spark_artifacts(work_dir))
        environ = {
            **os.environ,
            "AWS_ENDPOINT_URL": aws.endpoint_url,
            "AWS_REGION": aws.region,
            "AWS_DEFAULT_REGION": aws.region,
            **node_credentials(_node_role(aws), aws.region),
        }
        # The node's lock, as the endpoint's clusters take it: another process may be bootstrapping it.
        with node.bootstrapping(threading.Event()):
            started = time.monotonic()
            result = subprocess.run(
                [
                    "bash",
                    str(BOOTSTRAP_DIR / BOOTSTRAP_SCRIPT),
                    staged.bootstrap_requirements_uri,
                    staged.bootstrap_primary_requirements_uri,
                ],
                env=node.bootstrap_environment(environ),
                cwd=work_dir,
                capture_output=True,
                text=True,
            )
            seconds = time.monotonic() - started
        load_average = os.getloadavg()[0]
    venv = Path(node.node_path(str(PIPELINE_HOME / "venv")))
    size, packages = venv_size(venv) if venv.is_dir() else (0, 0)
    return NodeBootstrap(
        role, result.returncode, round(seconds, 1), size, packages, str(venv), round(load_average, 1), result.stderr
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=ROLES, required=True, help="the node's role (EMR's isMaster)")
    parser.add_argument("--node", type=Path, help="the node's folder, kept; default: a fresh temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="node-bootstrap-") as temporary:
        node = Node(args.node or Path(temporary) / "node", primary=args.role == "primary")
        work_dir = Path(temporary) / "work"
        work_dir.mkdir()
        measured = bootstrap_node(node, args.role, work_dir)
    print(measured.stderr, end="", file=sys.stderr)
    print(json.dumps({key: value for key, value in asdict(measured).items() if key != "stderr"}))
    sys.exit(measured.exit_code)


if __name__ == "__main__":
    main()
