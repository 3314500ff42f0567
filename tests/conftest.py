"""What every test shares: a throwaway Airflow, the venv's spark-submit, and the kind of each test.

Each test is exactly one of ``unit``, ``spark`` or ``e2e``, decided here from where it lives and what it
uses, so that a new test is sorted without anyone marking it: tests under ``tests/e2e`` are end-to-end;
a test using the local SparkSession (``spark``) or the venv's ``spark-submit`` (``spark_submit_executable``)
is a Spark test; every other test is a unit test. A test that starts Spark another way (an EMR step of the
embedded endpoint) marks itself ``spark``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from fruits_spark.model_cache import MODEL_CACHE_ENV
from tests.suite import DAGS_DIR, IS_XDIST_WORKER, KINDS, PLUGINS_DIR

# The embedded AWS endpoint's fixtures, for tests/local_aws and the tools that provision it; and the
# order in which pytest-xdist's workers get the test files.
pytest_plugins = ("tests.embedded_aws", "tests.file_order")
SPARK_FIXTURES = frozenset({"spark", "spark_submit_executable"})
E2E_DIR = Path(__file__).parent / "e2e"

# Before anything imports Airflow (test modules and folder conftests do, at collection): a throwaway
# home, no examples, and this repository's DAGs and plugins.
AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
os.environ.update(
    {
        "AIRFLOW_HOME": AIRFLOW_HOME,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_DIR),
    }
)

# The tests' JVMs (every spark-submit, the in-process session, the endpoint's EMR steps) live seconds and
# see little data: HotSpot's optimizing C2 compiler spends more CPU on them than it saves. Stopping at C1
# runs the same code, the same way, for about 40% less CPU per JVM (an empty spark-submit job: 16 s of
# CPU, 10 s with C1, on the 2-core machine). `make demo` and `make bench` keep the JVM's defaults.
JIT_OPTION = "-XX:TieredStopAtLevel=1"
if JIT_OPTION not in os.environ.get("SPARK_SUBMIT_OPTS", ""):  # xdist's workers inherit the controller's
    os.environ["SPARK_SUBMIT_OPTS"] = " ".join(filter(None, (os.environ.get("SPARK_SUBMIT_OPTS"), JIT_OPTION)))


def session_folder(variable: str, prefix: str) -> Path:
    """A folder for the whole session, named by ``variable``: made by pytest's main process, and found
    there by pytest-xdist's workers (-n), which inherit its environment; the main process removes it."""
    if IS_XDIST_WORKER and variable in os.environ:
        return Path(os.environ[variable])
    folder = tempfile.mkdtemp(prefix=prefix)
    os.environ[variable] = folder
    return Path(folder)


# One compiled-model cache for the session, the default of every job run that names none (spark-submit
# inherits it, and the demo copies it into and back out of its bucket's artifacts/models/): each model
# is compiled once per session instead of once per run. The cache's own tests use empty folders. An
# entry is written whole, manifest last, so the workers' concurrent writers are safe.
MODEL_CACHE = session_folder(MODEL_CACHE_ENV, "fruits-model-cache-")

# One emulated primary node (local_aws.node) for the session's runs of the project's bootstrap script:
# the first run installs the primary node's packages (about a minute, TensorFlow compiled included), the
# others find them installed, as a second `make demo` does. Endpoints in several processes take turns on
# it (the node's lock). Only the project's script runs there; tests of other bootstrap actions, or of a
# core node, use nodes of their own.
PROJECT_NODE = session_folder("FRUITS_TESTS_PROJECT_NODE", "fruits-project-node-")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)
    if not IS_XDIST_WORKER:
        shutil.rmtree(MODEL_CACHE, ignore_errors=True)
        shutil.rmtree(PROJECT_NODE, ignore_errors=True)


def kind_of(item: pytest.Item) -> str:
    """``e2e`` by folder, ``spark`` by fixture, else ``unit``."""
    if item.path.is_relative_to(E2E_DIR):
        return "e2e"
    if SPARK_FIXTURES & set(getattr(item, "fixturenames", ())):
        return "spark"
    return "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(kind) for kind in KINDS):
            item.add_marker(kind_of(item))


@pytest.fixture(scope="session")
def spark_submit_executable() -> Path:
    """The venv's spark-submit, which runs the jobs as users and EMR run them."""
    return Path(sys.executable).parent / "spark-submit"


@pytest.fixture(scope="session")
def project_node_dir() -> Path:
    """The session's primary node for the project's bootstrap script (see PROJECT_NODE)."""
    return PROJECT_NODE
