"""Integrity of the DAGs: they import, and fruits_pipeline is wired, retried and timed as the issue says."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import namedtuple
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.models.dagrun import DagRun
from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator, EmrCreateJobFlowOperator
from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk import TriggerRule, XComArg
from airflow.sdk.exceptions import ParamValidationError
from airflow.utils.state import State, TaskInstanceState

from tests.suite import DAGS_DIR, PLUGINS_DIR, REPO_ROOT

DAG_FILES = sorted(DAGS_DIR.glob("*.py"))

EXPECTED_UPSTREAM = {
    "check_config": set(),
    "upload_new_images": {"check_config"},
    "stage_artifacts": {"check_config"},
    "check_security_configuration": {"check_config"},
    "find_reusable_run": {"check_config", "upload_new_images", "stage_artifacts", "check_security_configuration"},
    "plan_run": {"check_config", "stage_artifacts", "find_reusable_run", "upload_new_images"},
    "create_cluster_or_reuse": {"find_reusable_run", "plan_run"},
    "reuse_outputs": {"find_reusable_run", "create_cluster_or_reuse"},
    "create_cluster": {"create_cluster_or_reuse", "plan_run", "check_config"},  # check_config: where a refusal goes
    "add_steps": {"create_cluster", "plan_run"},
    "watch_steps": {"add_steps", "create_cluster", "plan_run"},
    "wait_for_output": {"watch_steps", "plan_run"},
    "check_output": {
        "wait_for_output",
        "reuse_outputs",
        "check_config",
        "plan_run",
        "upload_new_images",
        "find_reusable_run",
    },
    "terminate_cluster": {"watch_steps", "create_cluster", "create_cluster_or_reuse", "plan_run"},
    "report_failure": {"terminate_cluster", "check_config", "plan_run", "create_cluster", "add_steps"},
}
RETRIED_WITH_BACKOFF = [
    "check_config",
    "upload_new_images",
    "stage_artifacts",
    "find_reusable_run",
    "watch_steps",
    "wait_for_output",
    "report_failure",
]


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_dag_file_imports_without_errors(dagbag, dag_file):
    assert not {path: error for path, error in dagbag.import_errors.items() if Path(path).name == dag_file.name}
    assert [dag for dag in dagbag.dags.values() if Path(dag.fileloc) == dag_file]


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_dag_files_import_airflow_only_through_the_sdk_and_providers(dag_file):
    modules = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(dag_file.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    airflow_modules = [module for module in modules if module and module.split(".")[0] == "airflow"]
    assert airflow_modules
    assert [m for m in airflow_modules if not m.startswith(("airflow.sdk", "airflow.providers."))] == []


def test_every_dag_is_tagged_and_documented(dagbag):
    for dag in dagbag.dags.values():
        assert dag.tags, dag.dag_id
        assert dag.doc_md, dag.dag_id
        assert dag.doc_md.lstrip().startswith(f"# {dag.dag_id}"), dag.dag_id


def test_the_pipeline_never_catches_up_nor_overlaps(dag):
    assert dag.catchup is False
    assert dag.max_active_runs == 1


def test_tasks_are_wired_in_the_pipelines_order(dag):
    assert {task.task_id: set(task.upstream_task_ids) for task in dag.tasks} == EXPECTED_UPSTREAM


def test_the_output_check_declares_the_features_and_the_pca_as_asset_aliases(dag):
    from airflow.sdk import AssetAlias

    outlets = dag.get_task("check_output").outlets
    assert outlets == [AssetAlias("fruits_features"), AssetAlias("fruits_pca")]
    assert all(not task.outlets for task in dag.tasks if task.task_id != "check_output")


def test_nothing_is_uploaded_or_created_before_the_config_is_checked(dag):
    everything_else = set(EXPECTED_UPSTREAM) - {"check_config"}

    assert set(dag.get_task("check_config").get_flat_relative_ids(upstream=False)) == everything_else


def test_terminate_cluster_is_the_teardown_of_create_cluster(dag):
    create_cluster, terminate_cluster = dag.get_task("create_cluster"), dag.get_task("terminate_cluster")

    assert create_cluster.is_setup
    assert dag.get_task("create_cluster_or_reuse").is_setup  # so that a failed create_cluster is torn down too
    assert not create_cluster.is_teardown
    assert terminate_cluster.is_teardown
    assert terminate_cluster.trigger_rule == TriggerRule.ALL_DONE_SETUP_SUCCESS
    assert terminate_cluster.job_flow_id.operator is create_cluster
    assert terminate_cluster.on_failure_fail_dagrun is True


def test_the_teardown_waits_for_every_task_using_the_cluster(dag):
    upstream_of_teardown = set(dag.get_task("terminate_cluster").get_flat_relative_ids(upstream=True))

    assert {"create_cluster", "add_steps", "watch_steps"} <= upstream_of_teardown


TI = namedtuple("TI", "task_id state")


def run_state_decided_by(dag, states: dict[str, str]) -> tuple[set[str], bool]:
    """The tasks Airflow decides the run's state by, and whether it then fails the run (DagRun's own rule)."""
    tis = [TI(task.task_id, TaskInstanceState(states.get(task.task_id, "success"))) for task in dag.tasks]
    leaves = DagRun._tis_for_dagrun_state(None, dag=dag, tis=tis)
    return {ti.task_id for ti in leaves}, any(ti.state in State.failed_states for ti in leaves)


def test_the_run_is_judged_by_its_output_check_and_its_teardown(dag):
    assert run_state_decided_by(dag, {})[0] == {"check_output", "terminate_cluster"}


def test_the_output_check_bills_the_cluster_create_cluster_started(dag):
    from fruits_airflow import tasks
    from fruits_airflow.operators import EmrCreateJobFlowOperator

    assert isinstance(dag.get_task(tasks.CREATE_CLUSTER_TASK_ID), EmrCreateJobFlowOperator)
    assert tasks.CREATE_CLUSTER_TASK_ID in dag.get_task("check_output").get_flat_relative_ids(upstream=True)


def test_the_branch_chooses_between_a_cluster_and_the_reused_outputs(dag):
    # and the teardown, which the reuse branch skips with create_cluster (tests/dags/test_teardown_scheduling.py)
    assert dag.get_task("create_cluster_or_reuse").downstream_task_ids == {
        "create_cluster",
        "reuse_outputs",
        "terminate_cluster",
    }
    assert dag.get_task("check_output").trigger_rule == TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS


def test_a_run_that_reuses_outputs_succeeds_without_a_cluster(dag):
    skipped = ["create_cluster", "add_steps", "watch_steps", "wait_for_output", "terminate_cluster", "report_failure"]

    leaves, failed = run_state_decided_by(dag, dict.fromkeys(skipped, "skipped"))

    assert failed is False
    assert "check_output" in leaves


def test_a_failed_output_check_of_reused_outputs_fails_the_run(dag):
    skipped = ["create_cluster", "add_steps", "watch_steps", "wait_for_output", "terminate_cluster", "report_failure"]

    assert run_state_decided_by(dag, {**dict.fromkeys(skipped, "skipped"), "check_output": "failed"})[1] is True


def test_the_failure_report_runs_after_the_termination_whenever_a_cluster_was_created(dag):
    report_failure = dag.get_task("report_failure")

    assert report_failure.is_teardown
    assert report_failure.trigger_rule == TriggerRule.ALL_DONE_SETUP_SUCCESS
    assert report_failure.upstream_task_ids >= {"create_cluster", "terminate_cluster"}
    assert "report_failure" not in dag.get_task("terminate_cluster").get_flat_relative_ids(upstream=True)


def test_a_failed_failure_report_never_fails_a_run(dag):
    assert dag.get_task("report_failure").on_failure_fail_dagrun is False
    assert run_state_decided_by(dag, {"report_failure": "failed"})[1] is False


def test_a_cluster_failure_fails_the_run_although_the_teardown_and_the_report_succeed(dag):
    states = {
        "watch_steps": "failed",
        "wait_for_output": "upstream_failed",
        "check_output": "upstream_failed",
        "terminate_cluster": "success",
        "report_failure": "success",
    }

    assert run_state_decided_by(dag, states)[1] is True


def test_a_failed_step_fails_the_run_although_the_teardown_succeeds(dag):
    states = {"watch_steps": "failed", "wait_for_output": "upstream_failed", "check_output": "upstream_failed"}

    assert run_state_decided_by(dag, states)[1] is True


def test_a_failed_termination_fails_the_run(dag):
    assert run_state_decided_by(dag, {"terminate_cluster": "failed"})[1] is True


def test_every_task_has_an_execution_timeout(dag):
    assert {task.task_id: task.execution_timeout for task in dag.tasks if not task.execution_timeout} == {}


def test_creating_the_cluster_and_adding_steps_are_retried_by_operators_that_find_an_earlier_try(dag):
    create_cluster, add_steps = dag.get_task("create_cluster"), dag.get_task("add_steps")

    assert isinstance(create_cluster, EmrCreateJobFlowOperator)
    assert isinstance(add_steps, EmrAddStepsOperator)
    assert create_cluster.retries > 0
    assert add_steps.retries > 0


@pytest.mark.parametrize("task_id", RETRIED_WITH_BACKOFF)
def test_sensors_and_uploads_retry_with_exponential_backoff(dag, task_id):
    task = dag.get_task(task_id)

    assert task.retries >= 2
    assert task.retry_exponential_backoff >= 2
    assert task.max_retry_delay is not None


def test_the_sensors_are_deferrable(dag):
    watch_steps, wait_for_output = dag.get_task("watch_steps"), dag.get_task("wait_for_output")

    assert isinstance(watch_steps, EmrStepSensor)
    assert isinstance(wait_for_output, S3KeySensor)
    assert watch_steps.deferrable
    assert wait_for_output.deferrable


@pytest.mark.parametrize(
    "task_id", ["create_cluster", "add_steps", "watch_steps", "wait_for_output", "terminate_cluster"]
)
def test_every_aws_operator_uses_aws_default_in_the_runs_region(dag, task_id):
    operator = dag.get_task(task_id)

    assert operator.aws_conn_id == "aws_default"
    assert isinstance(operator.region_name, XComArg)
    assert (operator.region_name.operator.task_id, operator.region_name.key) == ("plan_run", "region")


def test_watching_the_steps_lasts_long_enough_to_featurize_everything(dag):
    watch_steps = dag.get_task("watch_steps")
    waited = timedelta(seconds=watch_steps.max_attempts * watch_steps.poke_interval)

    assert waited >= timedelta(hours=2)
    assert watch_steps.execution_timeout > waited


def test_the_trigger_form_has_the_documented_defaults(dag):
    assert {key: dag.params[key] for key in dag.params} == {
        "variance": 0.95,
        "weights": None,
        "reprocess_all": False,
    }


@pytest.mark.parametrize(
    ("key", "value"), [("variance", 0), ("variance", 1.5), ("weights", "resnet"), ("reprocess_all", "yes")]
)
def test_the_trigger_form_refuses_bad_values(dag, key, value):
    with pytest.raises(ParamValidationError):
        dag.params.get_param(key).resolve(value)


@pytest.mark.parametrize(
    ("key", "value"),
    [("variance", 1), ("variance", 0.5), ("weights", "none"), ("weights", "s3://b/w.h5"), ("weights", None)],
)
def test_the_trigger_form_accepts_good_values(dag, key, value):
    assert dag.params.get_param(key).resolve(value) == value


PARSE_PROBE = """
import json, sys, time
import airflow.sdk

def no_variables(*args, **kwargs):
    raise AssertionError("a Variable was read while parsing")

airflow.sdk.Variable.get = no_variables
from airflow.dag_processing.dagbag import DagBag

started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - started

from airflow import plugins_manager

contract = sys.modules.get("fruits_contract")
plugins_manager.ensure_plugins_loaded()
print(json.dumps({
    "contract_loaded_once": contract is not None and sys.modules.get("fruits_contract") is contract,
    "seconds": seconds,
    "errors": bag.import_errors,
    "dags": sorted(bag.dags),
    "modules": sorted({name.split(".")[0] for name in sys.modules}),
    "plugin_modules": sorted(
        name for name, module in list(sys.modules.items())
        if "fruits_airflow" in (getattr(module, "__file__", None) or "")
    ),
    "sys_path": sys.path,
    "plugins": sorted(plugin["name"] for plugin in plugins_manager.get_plugin_info(["name"])),
    "plugin_errors": plugins_manager.get_import_errors(),
}))
"""


@pytest.fixture(scope="module")
def parse_probe(tmp_path_factory):
    """Parse the DAGs in a fresh interpreter, as the DAG processor does: as a plain Airflow whose dags and
    plugins folders are the repository's (the root conftest), nothing on PYTHONPATH, outside the repository."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(DAGS_DIR)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path_factory.mktemp("parse"),
        env=env,
        timeout=120,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_plugins_folder_loads_the_report_plugin_and_nothing_fails(parse_probe):
    assert parse_probe["plugin_errors"] == {}
    assert "fruits_run_report" in parse_probe["plugins"]


def test_the_plugin_loader_leaves_the_contract_the_dag_imported(parse_probe):
    # A loose plugin file replaces the module of its name in sys.modules: a second contract, other classes.
    assert parse_probe["contract_loaded_once"] is True


def test_parsing_needs_no_project_folder_on_the_path_but_airflow_s_own(parse_probe):
    venv = Path(sys.prefix)
    project_entries = {
        Path(entry) for entry in parse_probe["sys_path"] if entry and Path(entry).is_relative_to(REPO_ROOT)
    }
    assert {entry for entry in project_entries if not entry.is_relative_to(venv)} <= {DAGS_DIR, PLUGINS_DIR}


def test_parsing_reads_no_variable_and_finds_the_dag(parse_probe):
    assert parse_probe["errors"] == {}
    assert parse_probe["dags"] == ["fruits_pipeline"]


def test_parsing_finishes_within_airflow_s_import_timeout(parse_probe):
    # Past core.dagbag_import_timeout the dag-processor drops the file. How fast parsing is, is a
    # benchmark's question, not a test's: a wall-clock bound here only measures the machine's load.
    from airflow.configuration import conf

    assert parse_probe["seconds"] < conf.getfloat("core", "dagbag_import_timeout")


def test_parsing_imports_no_spark_tensorflow_pil_nor_pyarrow(parse_probe):
    assert {"pyspark", "tensorflow", "PIL", "pyarrow", "fruits_spark"} & set(parse_probe["modules"]) == set()


def test_the_plugin_package_is_imported_as_a_package_never_as_loose_plugin_files(parse_probe):
    # Airflow imports every .py of the plugins folder as a top-level module unless .airflowignore says not to.
    assert parse_probe["plugin_modules"]
    assert [name for name in parse_probe["plugin_modules"] if not name.startswith("fruits_airflow")] == []
