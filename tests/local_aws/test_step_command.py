"""How a cluster's step command line becomes a local one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fruits_airflow.cluster import NODE_PYTHON, spark_configurations
from local_aws.spark_submit import SPARK_SUBMIT_ENV
from local_aws.step_command import StepCommandError, build_step_command


@pytest.fixture
def spark_submit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    executable = tmp_path / "spark-submit"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    monkeypatch.setenv(SPARK_SUBMIT_ENV, str(executable))
    return executable


def build(args: list[str], environ: dict[str, str] | None = None):
    return build_step_command("command-runner.jar", args, environ=environ or {})


def test_spark_submit_runs_the_project_spark_in_local_client_mode(spark_submit):
    command = build(["spark-submit", "--deploy-mode", "cluster", "--master=yarn", "--verbose", "s3://b/job.py"])

    assert command.argv == [
        str(spark_submit),
        "--master",
        "local[*,4]",
        "--deploy-mode",
        "client",
        "--verbose",
        "s3://b/job.py",
    ]


def test_a_failed_task_is_retried_as_often_as_spark_task_max_failures_allows(spark_submit):
    step_conf = build(["spark-submit", "--conf", "spark.task.maxFailures=2", "s3://b/job.py"])
    cluster_conf = build_step_command(
        "command-runner.jar",
        ["spark-submit", "s3://b/job.py"],
        environ={},
        configurations=[{"Classification": "spark-defaults", "Properties": {"spark.task.maxFailures": "8"}}],
    )

    assert step_conf.argv[1:3] == ["--master", "local[*,2]"]
    assert cluster_conf.argv[1:3] == ["--master", "local[*,8]"]


def test_a_max_failures_that_is_no_count_is_refused_in_one_line(spark_submit):
    with pytest.raises(StepCommandError, match=r"spark.task.maxFailures=0 is not a count of 1 or more"):
        build(["spark-submit", "--conf", "spark.task.maxFailures=0", "s3://b/job.py"])


def test_spark_submit_keeps_application_arguments_that_look_like_its_options(spark_submit):
    command = build(["spark-submit", "s3://b/job.py", "--master", "not-spark's", "--deploy-mode", "x"])

    assert command.argv[-5:] == ["s3://b/job.py", "--master", "not-spark's", "--deploy-mode", "x"]


def node_path(path: str) -> str:
    return path.replace("/mnt/", "/state/node/mnt/", 1) if path.startswith("/mnt/") else path


MAPPED_NODE_PYTHON = "/state/node/mnt/fruits-pipeline/venv/bin/python"


CLUSTER_CONFIGURATIONS = spark_configurations("eu-west-1")


def build_on_cluster(args: list[str], configurations=CLUSTER_CONFIGURATIONS, environ=None):
    return build_step_command(
        "command-runner.jar", args, environ=environ or {}, configurations=configurations, node_path=node_path
    )


def test_the_dag_s_cluster_runs_pyspark_with_the_venv_on_the_node(spark_submit):
    command = build_on_cluster(["spark-submit", "s3://b/job.py"], environ={"PYSPARK_PYTHON": sys.executable})

    assert command.env["PYSPARK_PYTHON"] == command.env["PYSPARK_DRIVER_PYTHON"] == MAPPED_NODE_PYTHON
    assert command.argv[5:9] == [
        "--conf",
        f"spark.pyspark.python={MAPPED_NODE_PYTHON}",
        "--conf",
        f"spark.pyspark.driver.python={MAPPED_NODE_PYTHON}",
    ]


def test_a_driver_the_cluster_does_not_name_follows_the_cluster_s_python_not_the_endpoint_s(spark_submit):
    command = build_on_cluster(
        ["spark-submit", "s3://b/job.py"],
        configurations=[
            {
                "Classification": "spark-env",
                "Configurations": [{"Classification": "export", "Properties": {"PYSPARK_PYTHON": NODE_PYTHON}}],
            }
        ],
        environ={"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable},
    )

    assert command.env["PYSPARK_PYTHON"] == MAPPED_NODE_PYTHON
    assert "PYSPARK_DRIVER_PYTHON" not in command.env


def test_the_cluster_s_spark_defaults_come_before_the_step_s_own_confs(spark_submit):
    defaults = [{"Classification": "spark-defaults", "Properties": {"spark.executor.cores": "1"}}]

    command = build_on_cluster(["spark-submit", "--conf", "spark.executor.cores=2", "s3://b/job.py"], defaults)

    assert command.argv[5:] == ["--conf", "spark.executor.cores=1", "--conf", "spark.executor.cores=2", "s3://b/job.py"]


def test_a_step_s_interpreter_confs_are_mapped_to_the_node_and_others_kept(spark_submit):
    command = build_on_cluster(
        [
            "spark-submit",
            "--conf",
            "spark.pyspark.driver.python=/mnt/other/bin/python",
            "--conf",
            "spark.pyspark.python=/usr/bin/python3",
            "--conf",
            "spark.eventLog.dir=/mnt/logs",
            "s3://b/job.py",
        ]
    )

    assert command.argv[13:19] == [
        "--conf",
        "spark.pyspark.driver.python=/state/node/mnt/other/bin/python",
        "--conf",
        "spark.pyspark.python=/usr/bin/python3",
        "--conf",
        "spark.eventLog.dir=/mnt/logs",
    ]


def test_spark_home_is_the_project_spark_whatever_python_the_cluster_names(spark_submit):
    command = build_on_cluster(["spark-submit", "s3://b/job.py"])

    assert command.env["SPARK_HOME"] == str(spark_submit.parent.parent)


def test_s3_uris_reach_the_step_unchanged_including_comma_lists_and_option_values(spark_submit):
    args = [
        "--py-files",
        "s3://b/code/deps.zip,s3a://b/code/util.py",
        "--conf",
        "spark.eventLog.dir=s3n://logs/spark",
        "s3://b/code/job.py",
        "--images=s3://b/images/Apple Red 1/",
        "s3://b/features/",
    ]

    command = build(["spark-submit", *args])

    assert command.argv[5:] == args


def test_steps_do_not_inherit_pythonpath_and_spark_without_configurations_gets_this_interpreter(spark_submit):
    command = build(["spark-submit", "s3://b/job.py"], environ={"PYTHONPATH": "/repo/spark_jobs", "HOME": "/root"})

    assert "PYTHONPATH" not in command.env
    assert command.env["HOME"] == "/root"
    assert command.env["PYSPARK_PYTHON"] == sys.executable


def test_other_commands_run_as_given():
    command = build(["bash", "-c", "true", "s3://b/x"])

    assert command.argv == ["bash", "-c", "true", "s3://b/x"]


def test_missing_spark_submit_names_the_variable_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv(SPARK_SUBMIT_ENV, str(tmp_path / "nowhere" / "spark-submit"))

    with pytest.raises(StepCommandError, match=SPARK_SUBMIT_ENV):
        build(["spark-submit", "s3://b/job.py"])


def test_only_command_runner_jar_is_supported():
    with pytest.raises(StepCommandError, match=r"command-runner\.jar"):
        build_step_command("s3://jars/wordcount.jar", ["in"], environ={})
