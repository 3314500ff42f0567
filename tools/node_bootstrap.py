"""Run the EMR bootstrap action for real on one emulated node, primary or core, and measure it.

    python -m tools.node_bootstrap --role core [--node DIR]      # then --role primary, --role lean-primary
    python -m tools.node_bootstrap --compare                     # every role, from the bucket and from PyPI

Lean nodes (docs/aws.md: What one run costs): the primary node installs TensorFlow to compile the model when
the cache misses it (``primary``); with the model cached it gets the core nodes' packages
(``lean-primary``); core and task nodes never get TensorFlow. This stages ``bootstrap/`` and the lock's
wheelhouse (fruits_airflow.wheelhouse, built by ``make install``) in an embedded endpoint's S3 as
``stage_artifacts`` does, then runs ``bootstrap/install_python_deps.sh`` on a local_aws node of that
role (a fresh folder unless ``--node`` names one), with a node role that may read the artifacts and
nothing else, and no internet (local_aws.node.NoInternet): everything comes from the bucket.

``--compare`` runs each role on a fresh node from the bucket, then, for comparison, as the bootstrap
did before the wheelhouse: pip installs uv and uv the role's pins from PyPI, each with an empty cache
(a new EMR node's). It prints one JSON line per run: the role, the source, the exit code, the seconds,
the venv's size and its packages, and the machine's load average over the last minute when it ended
(other work inflates the seconds).
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from fruits_airflow.artifacts import BOOTSTRAP_DIR, BOOTSTRAP_SCRIPT, build_spark_artifacts, upload_artifacts
from fruits_airflow.wheelhouse import X86_64, Wheelhouse, ensure_published
from local_aws import EmbeddedAws
from local_aws.iam_enforcement import node_credentials
from local_aws.node import PIPELINE_HOME, Node, NoInternet

# lean-primary: the primary node of a run whose model is cached (the DAG passes it the core nodes' pins).
ROLES = ("primary", "lean-primary", "core")
BUCKET_SOURCE, INDEX_SOURCE = "bucket", "pypi"
BUCKET = "fruits-node-bootstrap"
NODE_PROFILE = "fruits-pipeline-node-bootstrap"


@dataclass(frozen=True)
class NodeBootstrap:
    """One run of the bootstrap action on a node.

    :param role: ``primary``, ``lean-primary`` or ``core``.
    :param source: ``bucket`` (the wheelhouse, no internet) or ``pypi`` (the public index, cold caches).
    :param exit_code: the script's.
    :param seconds: its wall time.
    :param venv_bytes: the size of the node's virtualenv (a file hard-linked twice counted once).
    :param packages: how many distributions the virtualenv holds.
    :param venv: where the virtualenv is on this machine.
    :param load_average: the machine's load average over the last minute, when the script ended.
    :param stderr: the script's log.
    :param wrong_region_requests: the S3 requests signed for a region other than the bucket's, which the
        endpoint refused as S3 does (local_aws.s3_regions); from a private subnet they would get no answer.
    """

    role: str
    source: str
    exit_code: int
    seconds: float
    venv_bytes: int
    packages: int
    venv: str
    load_average: float
    stderr: str
    wrong_region_requests: int = 0


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


def bootstrap_node(node: Node, role: str, work_dir: Path, wheelhouse: Wheelhouse | None = None) -> NodeBootstrap:
    """Stage ``bootstrap/`` and the wheelhouse in a fresh embedded endpoint and run the script on ``node``.

    :param wheelhouse: the lock's local build; None stages none (the script must then fail in one line).
    """
    with EmbeddedAws(port=0) as aws:
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region})
        staged = upload_artifacts(s3, BUCKET, build_spark_artifacts(work_dir))
        if wheelhouse is not None:
            ensure_published(s3, BUCKET, wheelhouse)
        no_internet = NoInternet()
        # As bare about the region as an EMR node's (node.bootstrap_environment): the script's --region says it.
        environ = {
            **os.environ,
            "AWS_ENDPOINT_URL": aws.endpoint_url,
            **node_credentials(_node_role(aws), aws.region),
            **no_internet.variables(),
        }
        primary_requirements = (
            staged.bootstrap_requirements_uri if role == "lean-primary" else staged.bootstrap_primary_requirements_uri
        )
        argv = [
            "bash",
            str(BOOTSTRAP_DIR / BOOTSTRAP_SCRIPT),
            *("--region", aws.region),
            *("--wheelhouse", f"{X86_64}={staged.wheelhouse_uris[X86_64]}"),
            *("--installer-requirements", staged.bootstrap_installer_requirements_uri),
            *("--requirements", staged.bootstrap_requirements_uri),
            *("--primary-requirements", primary_requirements),
        ]
        # The node's lock, as the endpoint's clusters take it: another process may be bootstrapping it.
        with node.bootstrapping(threading.Event()):
            started = time.monotonic()
            result = subprocess.run(
                argv, env=node.bootstrap_environment(environ), cwd=work_dir, capture_output=True, text=True
            )
            seconds = time.monotonic() - started
        no_internet.close()
        load_average = os.getloadavg()[0]
        misdirected = [r for r in aws.requests if r.service == "s3" and r.region not in ("", aws.region)]
    return replace(
        _measured(node, role, BUCKET_SOURCE, result, seconds, load_average), wrong_region_requests=len(misdirected)
    )


def _measured(
    node: Node, role: str, source: str, result: subprocess.CompletedProcess[str], seconds: float, load: float
) -> NodeBootstrap:
    venv = Path(node.node_path(str(PIPELINE_HOME / "venv")))
    size, packages = venv_size(venv) if venv.is_dir() else (0, 0)
    return NodeBootstrap(
        role, source, result.returncode, round(seconds, 1), size, packages, str(venv), round(load, 1), result.stderr
    )


def bootstrap_from_index(node: Node, role: str) -> NodeBootstrap:
    """What the bootstrap did before the wheelhouse, on a new node: pip installs uv, then uv the role's pins,
    both from PyPI, with empty caches on the node's disk."""
    requirements = BOOTSTRAP_DIR / ("requirements-primary.txt" if role == "primary" else "requirements.txt")
    home = Path(node.node_path(str(PIPELINE_HOME)))
    installer, venv, cache = home / "installer", home / "venv", home / "uv-cache"
    uv_pin = (BOOTSTRAP_DIR / "requirements-installer.txt").read_text().split("uv==")[1].split()[0]
    environ = {**os.environ, "UV_CACHE_DIR": str(cache), "UV_PYTHON_DOWNLOADS": "never", "PIP_NO_CACHE_DIR": "1"}
    uv, python = str(installer / "bin" / "uv"), str(venv / "bin" / "python")
    commands = [
        ["python3.11", "-m", "venv", "--clear", str(installer)],
        [str(installer / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", f"uv=={uv_pin}"],
        [uv, "venv", "--quiet", "--clear", "--python", "python3.11", str(venv)],
        [uv, "pip", "sync", "--quiet", "--compile-bytecode", "--python", python, str(requirements)],
    ]
    started = time.monotonic()
    for command in commands:
        result = subprocess.run(command, env=environ, capture_output=True, text=True)
        if result.returncode != 0:
            break
    seconds = time.monotonic() - started
    return _measured(node, role, INDEX_SOURCE, result, seconds, os.getloadavg()[0])


def compare(folder: Path) -> list[NodeBootstrap]:
    """Every role from the bucket, then the core and primary roles from PyPI, each on a fresh node."""
    wheelhouse = Wheelhouse.of(BOOTSTRAP_DIR)
    runs = []
    for role in ROLES:
        work_dir = folder / f"{role}-work"
        work_dir.mkdir()
        runs.append(bootstrap_node(Node(folder / f"{role}-bucket", primary=role != "core"), role, work_dir, wheelhouse))
    for role in ("core", "primary"):
        runs.append(bootstrap_from_index(Node(folder / f"{role}-pypi", primary=role != "core"), role))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--role", choices=ROLES, help="the node's role (EMR's isMaster; lean-primary: model cached)")
    chosen.add_argument("--compare", action="store_true", help="every role, from the bucket and from PyPI")
    parser.add_argument("--node", type=Path, help="the node's folder, kept; default: a fresh temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="node-bootstrap-") as temporary:
        if args.compare:
            runs = compare(Path(temporary))
        else:
            node = Node(args.node or Path(temporary) / "node", primary=args.role != "core")
            work_dir = Path(temporary) / "work"
            work_dir.mkdir()
            runs = [bootstrap_node(node, args.role, work_dir, Wheelhouse.of(BOOTSTRAP_DIR))]
    for measured in runs:
        print(measured.stderr, end="", file=sys.stderr)
        print(json.dumps({key: value for key, value in asdict(measured).items() if key not in ("stderr", "venv")}))
    sys.exit(max(measured.exit_code for measured in runs))


if __name__ == "__main__":
    main()
