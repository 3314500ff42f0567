"""The folders keep to their jobs: Spark jobs know nothing of Airflow, and nothing ships the local AWS tooling."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.suite import REPO_ROOT


def imported_roots(path: Path) -> set[str]:
    """Top-level packages a module imports, anywhere in it (module level or inside functions)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def python_files(folder: str) -> list[Path]:
    files = sorted((REPO_ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    return files


@pytest.mark.parametrize("path", python_files("spark_jobs"), ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_spark_jobs_never_import_airflow(path):
    assert imported_roots(path) & {"airflow", "fruits_airflow", "local_aws"} == set()


@pytest.mark.parametrize(
    "path", python_files("dags") + python_files("plugins"), ids=lambda path: str(path.relative_to(REPO_ROOT))
)
def test_dags_and_plugins_never_import_spark_or_the_local_aws_tooling(path):
    assert imported_roots(path) & {"pyspark", "fruits_spark", "local_aws", "tensorflow", "PIL"} == set()
