"""The bundle as deployed: `make bundle`'s dist/airflow/ in a fresh Airflow home, against the embedded endpoint.

The home's dags folder is the bundle's dags/ and its plugins folder is plugins.zip unzipped, as MWAA unzips
it; the processes run with a clean environment (no PYTHONPATH, nothing of the repository but the venv's
Airflow) from a folder outside the repository. The DAG runs with ``airflow dags test`` up to the staged
artifacts and the cluster request, then its teardown: the steps, the sensors and the output check are marked
successful instead of run (the demo's test runs them), so the run costs no Spark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from botocore.client import BaseClient

from fruits_airflow import wheelhouse
from fruits_airflow.artifacts import BOOTSTRAP_DIR, build_spark_artifacts
from local_aws import EmbeddedAws
from tests.suite import REPO_ROOT
from tools import bundle
from tools.local_airflow import BUCKET, DAG_ID, REGION, airflow, local_connection, migrate
from tools.local_provision import provision
from tools.sample_images import generate

# Everything after the cluster request but the cluster's teardown: no step runs, so no Spark.
NOT_RUN = "^(add_steps|watch_steps|wait_for_output|check_output|report_failure)$"
DAGS_TEST = ("dags", "test", DAG_ID, "--conf", json.dumps({"weights": "none"}), "--mark-success-pattern", NOT_RUN)
PARSE_PROBE = """
import json, sys
from pathlib import Path
from airflow.dag_processing.dagbag import DagBag
from airflow import plugins_manager

bag = DagBag()
contract = sys.modules.get("fruits_contract")
plugins_manager.ensure_plugins_loaded()
print(json.dumps({
    "contract_loaded_once": contract is not None and sys.modules.get("fruits_contract") is contract,
    "errors": bag.import_errors,
    "dags": sorted(bag.dags),
    "plugins": sorted(plugin["name"] for plugin in plugins_manager.get_plugin_info(["name"])),
    "plugin_errors": plugins_manager.get_import_errors(),
    "sys_path": sys.path,
    "project_modules": sorted(
        module.__file__ for name, module in list(sys.modules.items())
        if name.split(".")[0] in {"fruits_airflow", "fruits_contract"} and getattr(module, "__file__", None)
    ),
}))
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh Airflow home holding the bundle: its dags/ and its plugins.zip unzipped into plugins/."""
    built = tmp_path_factory.mktemp("dist") / "airflow"
    bundle.build_bundle(built)
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "dags").mkdir()
    for dag_file in (built / "dags").iterdir():
        (home / "dags" / dag_file.name).write_bytes(dag_file.read_bytes())
    with zipfile.ZipFile(built / "plugins.zip") as archive:
        archive.extractall(home / "plugins")
    return home


def plain_environment(home: Path, **variables: str) -> dict[str, str]:
    """A deployment's environment: Airflow's home and folders, and nothing else of this project or shell."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **variables,
    }


@pytest.fixture(scope="module")
def parsed(home: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE],
        capture_output=True,
        text=True,
        check=True,
        cwd=home,
        env=plain_environment(home),
        timeout=180,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def run(home: Path, aws: EmbeddedAws, s3: BaseClient, emr: BaseClient) -> subprocess.CompletedProcess:
    """``airflow dags test`` in the bundle's home, on the endpoint: through the cluster request and its teardown."""
    variable = provision(s3, emr, aws.client("ec2"), aws.client("iam"), BUCKET, REGION)
    # The operator's one-time step (docs/aws.md, Deploy step 2b): the deployed Airflow has no local wheelhouse.
    wheelhouse.ensure_published(s3, BUCKET, wheelhouse.Wheelhouse.of(BOOTSTRAP_DIR))
    images = generate(home.parent / "landing", 2, n_labels=2)[0].parents[1]
    env = plain_environment(
        home,
        AIRFLOW_CONN_AWS_DEFAULT=json.dumps(local_connection(aws.endpoint_url)),
        AIRFLOW_VAR_FRUITS_PIPELINE=json.dumps({**variable, "images_dir": str(images), "region": REGION}),
    )
    migrate(env)
    log_file = home / "airflow-dags-test.log"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)
        done = airflow(env, *DAGS_TEST, log_file=log_file)
    assert done.returncode == 0, log_file.read_text()[-3000:]
    return done


def test_the_bundle_parses_with_no_import_error(parsed):
    assert parsed["errors"] == {}
    assert parsed["dags"] == [DAG_ID]
    assert parsed["plugin_errors"] == {}
    assert "fruits_run_report" in parsed["plugins"]
    assert parsed["contract_loaded_once"] is True


def test_the_bundle_imports_nothing_from_the_repository(parsed, home):
    venv = Path(sys.prefix)
    from_repository = [
        entry
        for entry in parsed["sys_path"]
        if entry and Path(entry).is_relative_to(REPO_ROOT) and not Path(entry).is_relative_to(venv)
    ]
    assert from_repository == []
    assert parsed["project_modules"]
    assert [path for path in parsed["project_modules"] if not Path(path).is_relative_to(home)] == []


def test_stage_artifacts_uploads_the_repository_s_jobs_and_bootstrap_from_the_bundle(run, s3, tmp_path):
    built = build_spark_artifacts(tmp_path)
    prefix = f"artifacts/{built.version}/"

    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    assert sorted(obj["Key"] for obj in listed) == sorted(f"{prefix}{name}" for name in built.files())
    for name, path in built.files().items():
        assert s3.get_object(Bucket=BUCKET, Key=f"{prefix}{name}")["Body"].read() == path.read_bytes(), name


def test_the_cluster_is_requested_with_the_staged_bootstrap_and_torn_down(run, emr, tmp_path):
    version = build_spark_artifacts(tmp_path).version

    (cluster,) = emr.list_clusters()["Clusters"]
    actions = emr.list_bootstrap_actions(ClusterId=cluster["Id"])["BootstrapActions"]
    assert cluster["Name"].startswith(f"{DAG_ID} ")
    assert [action["ScriptPath"] for action in actions] == [
        f"s3://{BUCKET}/artifacts/{version}/bootstrap/install_python_deps.sh"
    ]
    assert emr.describe_cluster(ClusterId=cluster["Id"])["Cluster"]["Status"]["State"] in {"TERMINATING", "TERMINATED"}
