"""The folders keep to their layers: no import runs back up, nothing imports in a circle, and Spark jobs
know nothing of Airflow while nothing ships the local AWS tooling.

Layers, from the top: tests, then tools, then the product (dags over plugins; spark_jobs; local_aws), and
under both sides of the product the contract (spark_jobs/fruits_contract.py), which imports the standard
library alone. A module may import its own layer and those its layer lists below; imports inside functions
and under ``TYPE_CHECKING`` count too: a circle that only type hints close is still a circle.
"""

from __future__ import annotations

import ast
import graphlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.suite import PLUGINS_DIR, REPO_ROOT, SPARK_JOBS_DIR

# Each layer, and the first-party layers below it that it may import.
LAYERS = {
    "tests": {"tools", "dags", "plugins", "spark_jobs", "local_aws", "contract"},
    "tools": {"plugins", "spark_jobs", "local_aws", "contract"},
    "dags": {"plugins", "contract"},
    "plugins": {"contract"},
    "spark_jobs": {"contract"},
    "local_aws": set(),
    "contract": set(),
}
CONTRACT = SPARK_JOBS_DIR / "fruits_contract.py"
# Where each layer's modules are imported from (dags/ and plugins/ are on Airflow's path, spark_jobs/ on
# Spark's); the others are packages at the repository's root.
IMPORT_ROOTS = {"dags": REPO_ROOT / "dags", "plugins": PLUGINS_DIR, "spark_jobs": SPARK_JOBS_DIR}
SKIPPED = {".venv", ".git", "demo-output", "dist", "sample-images", ".local-aws", ".bench", "test-artifacts"}


def python_files(folder: str) -> list[Path]:
    files = sorted((REPO_ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    return files


def tree_files() -> Iterator[Path]:
    """Every Python file of the repository, outside the venv and generated folders, links left out: a link
    (plugins/fruits_contract.py) is the file it points to, counted at its home."""
    for path in sorted(REPO_ROOT.rglob("*.py")):
        if not SKIPPED & set(path.relative_to(REPO_ROOT).parts) and not path.is_symlink():
            yield path


def layer_of(path: Path) -> str:
    return "contract" if path == CONTRACT else path.relative_to(REPO_ROOT).parts[0]


def module_name(path: Path) -> str:
    """The name the file is imported by, from its layer's import root."""
    parts = path.relative_to(IMPORT_ROOTS.get(path.relative_to(REPO_ROOT).parts[0], REPO_ROOT)).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> Iterator[str]:
    """Every module name an import of the file names (relative imports resolved), anywhere in it."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def imported_roots(path: Path) -> set[str]:
    """Top-level packages a module imports, anywhere in it (module level or inside functions)."""
    return {name.split(".")[0] for name in imported_names(path)}


def first_party_graph() -> dict[str, set[str]]:
    """Each module of the tree and the modules of the tree it imports."""
    files = {module_name(path): path for path in tree_files()}
    return {
        module: {name for name in imported_names(path) if name in files and name != module}
        for module, path in files.items()
    }


def layers_by_module() -> dict[str, str]:
    return {module_name(path): layer_of(path) for path in tree_files()}


@pytest.mark.parametrize("path", python_files("spark_jobs"), ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_spark_jobs_never_import_airflow(path):
    assert imported_roots(path) & {"airflow", "fruits_airflow", "local_aws"} == set()


@pytest.mark.parametrize(
    "path", python_files("dags") + python_files("plugins"), ids=lambda path: str(path.relative_to(REPO_ROOT))
)
def test_dags_and_plugins_never_import_spark_or_the_local_aws_tooling(path):
    assert imported_roots(path) & {"pyspark", "fruits_spark", "local_aws", "tensorflow", "PIL"} == set()


def test_the_contract_imports_the_standard_library_alone():
    assert imported_roots(CONTRACT) - {"__future__"} <= sys.stdlib_module_names


def test_every_python_file_is_in_a_layer():
    assert {layer_of(path) for path in tree_files()} <= LAYERS.keys()


def test_no_import_runs_back_up_the_layers():
    layers = layers_by_module()
    upward = {
        f"{module} ({layers[module]}) imports {imported} ({layers[imported]})"
        for module, imports in first_party_graph().items()
        for imported in imports
        if layers[imported] != layers[module] and layers[imported] not in LAYERS[layers[module]]
    }

    assert upward == set()


def test_no_modules_import_each_other_in_a_circle():
    try:
        graphlib.TopologicalSorter(first_party_graph()).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import circle: {' -> '.join(error.args[1])}")
