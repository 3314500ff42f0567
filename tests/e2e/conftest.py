"""What the end-to-end tests share: the environment `make` gives the project's commands."""

from __future__ import annotations

import os
import sys

import pytest

from tools.local_airflow import REPO_ROOT


@pytest.fixture(scope="session")
def project_env() -> dict[str, str]:
    """What the Makefile exports: the project's import paths and the venv's Python for PySpark."""
    paths = [REPO_ROOT / "spark_jobs", REPO_ROOT / "plugins", REPO_ROOT]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths)), "PYSPARK_PYTHON": sys.executable}
