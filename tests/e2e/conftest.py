"""What the end-to-end tests share: the environment `make` gives the project's commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.suite import PLUGINS_DIR, REPO_ROOT, SPARK_JOBS_DIR


@pytest.fixture(scope="session")
def project_env() -> dict[str, str]:
    """What the Makefile exports: the project's import paths and the venv's Python for PySpark."""
    paths = [SPARK_JOBS_DIR, PLUGINS_DIR, REPO_ROOT]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths)), "PYSPARK_PYTHON": sys.executable}


@pytest.fixture(scope="session")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One emulated node for the session's demos: the bootstrap builds its venv once, as for repeated `make demo`."""
    return tmp_path_factory.mktemp("node")
