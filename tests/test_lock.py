"""One lock, several environments: pyproject.toml's groups resolve into uv.lock, and every requirements
file the project installs from is that lock's export, as `make lock` writes it, never edited by hand, with
the hashes of each pin's files, which the installers check."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.suite import REPO_ROOT

UV = Path(sys.executable).parent / "uv"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
# What the executors import with a cached model (spark_jobs/), as distribution names; the driver's report
# adds matplotlib. The primary node adds TensorFlow, to compile the model when the cache misses it.
EXECUTOR_PACKAGES = {"numpy", "pandas", "pyarrow", "pillow", "ai-edge-litert", "boto3", "matplotlib"}
COMPILER_PACKAGES = {"tensorflow-cpu"}
FIRST_PARTY = {"fruits_airflow", "fruits_spark", "fruits_contract", "fruits_pipeline", "local_aws", "tools", "tests"}


def lock_exports() -> dict[str, str]:
    """The requirements file of each group, from the Makefile's LOCK_EXPORTS, which `make lock` writes."""
    makefile = (REPO_ROOT / "Makefile").read_text().replace("\\\n", " ")
    (exports,) = re.findall(r"^LOCK_EXPORTS := (.+)$", makefile, flags=re.MULTILINE)
    return dict(export.split(":") for export in exports.split())


def pins(text: str) -> dict[str, str]:
    return {match[1].lower(): match[2] for match in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.MULTILINE)}


def without_header(text: str) -> str:
    """The requirements, without uv's header (it names the output file)."""
    lines = text.splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "\n".join(lines)


def export(group: str) -> str:
    result = subprocess.run(
        [str(UV), "export", "--quiet", "--frozen", "--no-emit-project", "--only-group", group],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    return result.stdout


def locked(group: str) -> dict[str, str]:
    return pins((REPO_ROOT / lock_exports()[group]).read_text())


def test_the_lock_is_that_of_pyproject_s_groups():
    result = subprocess.run(
        [str(UV), "lock", "--check", "--offline"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )

    assert result.returncode == 0, result.stderr


def test_every_group_has_its_requirements_file():
    assert set(lock_exports()) == set(PYPROJECT["dependency-groups"])


@pytest.mark.parametrize(("group", "path"), sorted(lock_exports().items()))
def test_the_requirements_file_is_the_lock_s_export(group, path):
    assert without_header((REPO_ROOT / path).read_text()) == without_header(export(group))


@pytest.mark.parametrize(("group", "path"), sorted(lock_exports().items()))
def test_every_pin_carries_the_hashes_of_its_files(group, path):
    text = (REPO_ROOT / path).read_text()
    pinned = re.findall(r"^[A-Za-z0-9_.\-]+==\S+.*$", text, flags=re.MULTILINE)

    assert pinned, path
    unhashed = [line for line in pinned if not line.endswith("\\")]
    assert unhashed == [], f"{path}: pins without --hash lines"
    assert text.count("--hash=sha256:") >= len(pinned)


def test_the_installer_group_is_uv_alone():
    assert locked("installer").keys() == {"uv"}


def test_make_install_syncs_the_development_group():
    makefile = (REPO_ROOT / "Makefile").read_text()

    assert lock_exports()["dev"] == "requirements.txt"
    assert re.search(r"uv pip sync .* requirements\.txt$", makefile, flags=re.MULTILINE)


def test_every_environment_is_pinned_as_the_development_one():
    dev = locked("dev")

    for group in lock_exports():
        assert {name: pin for name, pin in locked(group).items() if dev.get(name) != pin} == {}, group


def test_the_nodes_have_what_the_executors_import_and_no_tensorflow():
    nodes = locked("nodes")

    assert nodes.keys() >= EXECUTOR_PACKAGES
    assert not (COMPILER_PACKAGES | {"keras", "pyspark", "apache-airflow", "moto"}) & nodes.keys()


def test_the_primary_has_the_nodes_packages_and_tensorflow():
    nodes, primary = locked("nodes"), locked("primary")

    assert nodes.items() <= primary.items()
    assert primary.keys() >= COMPILER_PACKAGES


def test_the_airflow_side_has_neither_spark_nor_the_jobs_libraries():
    airflow = locked("airflow")

    assert {"apache-airflow", "apache-airflow-providers-amazon", "aiobotocore"} <= airflow.keys()
    assert not {"pyspark", "tensorflow-cpu", "keras", "ai-edge-litert", "moto", "pytest"} & airflow.keys()


def test_the_local_endpoint_has_the_airflow_side_moto_and_spark_but_no_job_library():
    airflow, endpoint = locked("airflow"), locked("local-aws")

    assert airflow.items() <= endpoint.items()
    assert {"moto", "pyspark"} <= endpoint.keys()
    assert not {"tensorflow-cpu", "ai-edge-litert", "pytest"} & endpoint.keys()


def third_party_imports(*paths: Path) -> set[str]:
    """The top-level modules that the Python files at or under ``paths`` import, at the top or in functions."""
    names: set[str] = set()
    for root in paths:
        for path in [root] if root.is_file() else root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - FIRST_PARTY


def distributions_of(modules: set[str]) -> set[str]:
    """The distributions (normalized names) that provide ``modules`` in this venv."""
    provided = importlib.metadata.packages_distributions()
    missing = sorted(module for module in modules if module not in provided)
    assert missing == [], f"no distribution provides {missing}"
    return {re.sub(r"[-_.]+", "-", name).lower() for module in modules for name in provided[module]}


# What each environment runs: the Airflow image its DAG and plugins; the endpoint's image local_aws/ and
# local-aws-init's provisioning; every node the jobs, whose Spark EMR provides and whose compile (TensorFlow,
# Keras) only the primary runs.
RUNS = {
    "airflow": (["dags", "plugins"], set()),
    "local-aws": (["dags", "plugins", "local_aws", "tools/local_provision.py", "tools/stack_template.py"], set()),
    "primary": (["spark_jobs"], {"pyspark", "py4j"}),
    "nodes": (["spark_jobs"], {"pyspark", "py4j", "tensorflow", "keras"}),
}


@pytest.mark.parametrize("group", sorted(RUNS))
def test_what_an_environment_runs_imports_only_what_its_group_pins(group):
    paths, provided_elsewhere = RUNS[group]
    needed = distributions_of(third_party_imports(*(REPO_ROOT / path for path in paths)) - provided_elsewhere)

    assert needed - locked(group).keys() == set()
