"""What the end-to-end tests share: the environment `make` gives the project's commands."""

from __future__ import annotations

import os
import sys

import pytest

from tests.suite import PLUGINS_DIR, REPO_ROOT, SPARK_JOBS_DIR


@pytest.fixture(scope="session")
def project_env() -> dict[str, str]:
    """What the Makefile exports: the project's import paths and the venv's Python for PySpark."""
    paths = [SPARK_JOBS_DIR, PLUGINS_DIR, REPO_ROOT]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths)), "PYSPARK_PYTHON": sys.executable}
