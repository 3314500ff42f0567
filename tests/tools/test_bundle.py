"""`make bundle` (tools/bundle.py): what dist/airflow/ holds, byte for byte the same for the same sources.

tests/e2e/test_bundle.py deploys it into a plain Airflow and runs the DAG from there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fruits_airflow.artifacts import build_spark_artifacts
from tests.suite import DAGS_DIR, PLUGINS_DIR, REPO_ROOT, SPARK_JOBS_DIR
from tests.test_lock import lock_exports
from tools import bundle

CONTRACT = SPARK_JOBS_DIR / "fruits_contract.py"
# Run as Airflow runs the plugins: the unzipped plugins folder on sys.path, nothing of the repository.
ARTIFACTS_PROBE = """
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from fruits_airflow import artifacts
with tempfile.TemporaryDirectory() as out:
    built = artifacts.build_spark_artifacts(Path(out))
    print(json.dumps({"version": built.version, "spark_jobs": str(artifacts.SPARK_JOBS_DIR),
                      "bootstrap": str(artifacts.BOOTSTRAP_DIR), "contract": __import__("fruits_contract").__file__}))
"""


def tree(folder: Path) -> dict[str, bytes]:
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in files}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "airflow"
    bundle.build_bundle(out)
    return out


@pytest.fixture(scope="module")
def unzipped(built, tmp_path_factory) -> Path:
    """plugins.zip unpacked as MWAA unpacks it into its plugins folder."""
    plugins = tmp_path_factory.mktemp("plugins")
    with zipfile.ZipFile(built / "plugins.zip") as archive:
        archive.extractall(plugins)
    return plugins


def test_two_builds_are_byte_identical(built, tmp_path):
    bundle.build_bundle(tmp_path / "again")

    assert tree(tmp_path / "again") == tree(built)


def test_the_bundle_holds_the_dags_the_plugins_zip_and_the_airflow_requirements(built):
    assert sorted(entry.name for entry in built.iterdir()) == ["dags", "plugins.zip", "requirements.txt"]
    assert tree(built / "dags") == tree(DAGS_DIR)
    assert (built / "requirements.txt").read_bytes() == (REPO_ROOT / lock_exports()["airflow"]).read_bytes()


def test_the_zip_s_entries_are_dated_and_moded_alike_and_hold_no_caches(built):
    infos = zipfile.ZipFile(built / "plugins.zip").infolist()

    assert {(info.date_time, info.external_attr >> 16) for info in infos} == {((1980, 1, 1, 0, 0, 0), 0o755)}
    assert [info.filename for info in infos] == sorted(info.filename for info in infos)
    assert [info.filename for info in infos if "__pycache__" in info.filename or info.filename.endswith(".pyc")] == []


def test_caches_are_left_out_of_the_sources(tmp_path):
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"cache")
    (tmp_path / "pkg" / "mod.pyc").write_bytes(b"cache")
    (tmp_path / "pkg" / "mod.py").write_text("X = 1\n")

    assert list(bundle.source_files(tmp_path)) == ["pkg/mod.py"]


def test_the_zip_is_the_plugins_folder_at_its_root(built):
    names = set(zipfile.ZipFile(built / "plugins.zip").namelist())

    assert {".airflowignore", "run_report_plugin.py", "fruits_contract.py", "fruits_airflow/tasks.py"} <= names
    assert not any(name.startswith("plugins/") for name in names)


def test_the_contract_has_one_home_which_both_sides_of_the_bundle_carry(built):
    assert (PLUGINS_DIR / "fruits_contract.py").is_symlink()
    assert (PLUGINS_DIR / "fruits_contract.py").resolve() == CONTRACT
    archive = zipfile.ZipFile(built / "plugins.zip")
    for name in ("fruits_contract.py", f"{bundle.BUNDLED_PATH}/spark_jobs/fruits_contract.py"):
        assert archive.read(name) == CONTRACT.read_bytes(), name


def test_the_unzipped_plugins_stage_the_repository_s_jobs_and_bootstrap(unzipped, tmp_path):
    result = subprocess.run(
        [sys.executable, "-I", "-c", ARTIFACTS_PROBE, str(unzipped)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        timeout=120,
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])

    assert Path(found["spark_jobs"]) == unzipped / bundle.BUNDLED_PATH / "spark_jobs"
    assert Path(found["bootstrap"]) == unzipped / bundle.BUNDLED_PATH / "bootstrap"
    assert Path(found["contract"]) == unzipped / "fruits_contract.py"
    assert found["version"] == build_spark_artifacts(tmp_path / "repository").version


def test_a_rebuild_leaves_no_stale_file(built, tmp_path):
    out = tmp_path / "airflow"
    bundle.build_bundle(out)
    (out / "dags" / "removed_dag.py").write_text("")

    bundle.build_bundle(out)

    assert tree(out) == tree(built)


def test_an_out_folder_holding_other_files_is_refused_and_left_alone(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")

    assert bundle.main(["--out", str(tmp_path)]) == 2

    error = capsys.readouterr().err.strip()
    assert error.splitlines() == [error]
    assert "notes.txt" in error
    assert (tmp_path / "notes.txt").read_text() == "mine"
