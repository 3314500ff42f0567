"""Lean nodes, for real: the bootstrap action on an emulated core node installs no TensorFlow and gives the
executors everything they import; on the primary node it adds TensorFlow for the driver's compile. Every
node has no internet and an empty disk of its own: what it installs comes from the bucket alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fruits_airflow.artifacts import BOOTSTRAP_DIR
from fruits_airflow.wheelhouse import Wheelhouse
from local_aws.node import PIPELINE_HOME, Node
from tests.suite import SPARK_JOBS_DIR
from tools.node_bootstrap import NodeBootstrap, bootstrap_node

# What spark-submit puts on an executor's PYTHONPATH: Spark's own Python, and the jobs' --py-files.
SPARK_PYTHON = sorted(
    (Path(sys.executable).parents[1] / "lib").glob("python3.11/site-packages/pyspark/python/lib/*.zip")
)
EXECUTOR_CODE = (
    "import sys, ai_edge_litert.interpreter, boto3, fruits_spark.extract_features, fruits_spark.inference; "
    "print(sorted(name for name in sys.modules if name.split('.')[0] in ('tensorflow', 'keras')))"
)


def run_bootstrap(node: Node, role: str, work_dir: Path, *, published: bool = True) -> NodeBootstrap:
    """The script on ``node``, the lock's wheelhouse (make install's build) staged in the bucket unless not
    ``published``."""
    work_dir.mkdir()
    return bootstrap_node(node, role, work_dir, Wheelhouse.of(BOOTSTRAP_DIR) if published else None)


def distributions(venv: str) -> set[str]:
    found = Path(venv).glob("lib/python3.11/site-packages/*.dist-info")
    return {path.name.split("-")[0].lower().replace("_", "-") for path in found}


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> NodeBootstrap:
    folder = tmp_path_factory.mktemp("core")
    return run_bootstrap(Node(folder / "node", primary=False), "core", folder / "work")


def test_a_core_node_s_bootstrap_succeeds_as_a_core_node(core):
    assert core.exit_code == 0, core.stderr
    assert "on the core/task node" in core.stderr


def test_a_fresh_node_with_no_internet_installs_from_the_bucket_s_wheelhouse_alone(core):
    """The node's disk was empty, every proxy and index pointed at a closed port: nothing came from outside."""
    assert "from s3://fruits-node-bootstrap/artifacts/wheelhouse/" in core.stderr
    home = Path(core.venv).parent
    assert (home / "uv-cache").is_dir()
    assert "nodes.tar" in core.stderr
    assert "compiler.tar" not in core.stderr


def test_a_node_with_no_region_in_its_environment_signs_every_request_for_the_bucket_s_region(core):
    """The node's environment names no region, as on EMR: the script's --region is what every aws s3 call signs
    for. Given none, they would be signed for us-east-1, meant for S3's global endpoint, which a private subnet's
    regional gateway endpoint does not serve (the endpoint refuses them as S3 does, and counts them)."""
    assert core.exit_code == 0, core.stderr
    assert core.wrong_region_requests == 0


def test_a_node_whose_bucket_has_no_wheelhouse_fails_in_one_line_saying_how_to_publish_it(tmp_path):
    result = run_bootstrap(Node(tmp_path / "node", primary=False), "core", tmp_path / "work", published=False)

    assert result.exit_code == 3
    (line,) = [line for line in result.stderr.splitlines() if "wheelhouse" in line]
    assert "nodes.tar cannot be downloaded" in line
    assert "make publish-wheelhouse BUCKET=" in line
    assert "Traceback" not in result.stderr
    assert not (Path(Node(tmp_path / "node").node_path(str(PIPELINE_HOME))) / "venv").exists()


def test_a_core_node_gets_no_tensorflow(core):
    assert not {"tensorflow-cpu", "tensorflow", "keras"} & distributions(core.venv)


def test_a_core_node_s_venv_imports_the_executors_code_without_tensorflow(core):
    assert len(SPARK_PYTHON) == 2, SPARK_PYTHON
    pythonpath = os.pathsep.join([str(SPARK_JOBS_DIR), *map(str, SPARK_PYTHON)])

    result = subprocess.run(
        [f"{core.venv}/bin/python", "-c", EXECUTOR_CODE],
        env={**os.environ, "PYTHONPATH": pythonpath},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_primary_node_gets_tensorflow_for_the_driver_s_compile(project_node_dir, tmp_path):
    """On the session's primary node: the script installs there once per session, first for whichever
    test gets there first (another module's cluster, or this), and finds its packages there after."""
    primary = run_bootstrap(Node(project_node_dir, primary=True), "primary", tmp_path / "work")

    assert primary.exit_code == 0, primary.stderr
    assert "the primary node's" in primary.stderr
    assert {"tensorflow-cpu", "keras", "ai-edge-litert"} <= distributions(primary.venv)


def test_a_core_node_s_packages_come_compiled(core):
    """The executors run as another user than the bootstrap and could not write .pyc files themselves."""
    site_packages = Path(core.venv) / "lib/python3.11/site-packages"

    for package in ("pandas", "numpy", "pyarrow", "PIL"):
        sources = list((site_packages / package).rglob("*.py"))
        # Every module, not only those the bootstrap's own import check loads (and may have compiled).
        uncompiled = [py for py in sources if not list((py.parent / "__pycache__").glob(f"{py.stem}.cpython-311*.pyc"))]
        assert sources, package
        assert not uncompiled, f"{package}: {len(uncompiled)} of {len(sources)} modules uncompiled"
