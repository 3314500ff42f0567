"""The local command that stands in for one EMR step.

Only ``command-runner.jar`` steps run, as on EMR: ``Args[0]`` is the program and the rest its
arguments, passed on unchanged: ``s3://`` URIs stay URIs, and the step reaches this endpoint's S3
through its API (Hadoop's S3A connector in the venv's Spark, boto3 in the job's own code), with the
endpoint's URL and the node's credentials in the standard ``AWS_*`` variables, and no region but the
cluster's own (local_aws.node).

The step sees the environment of the endpoint without ``PYTHONPATH``: on a cluster a job has only what
``--py-files`` ships, and a local run should fail the same way when that is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from local_aws.spark_submit import (
    ClusterSpark,
    localize_spark_submit,
    same_path,
    spark_environment,
    spark_submit_executable,
)

COMMAND_RUNNER_JAR = "command-runner.jar"


class StepCommandError(Exception):
    """The step cannot run locally; the message says why and what to change."""


@dataclass(frozen=True)
class StepCommand:
    """What to execute for a step: the local argv and its environment."""

    argv: list[str]
    env: dict[str, str]


def build_step_command(
    jar: str,
    args: list[str],
    *,
    environ: Mapping[str, str],
    configurations: Sequence[Mapping[str, Any]] = (),
    node_path: Callable[[str], str] = same_path,
    region: str | None = None,
) -> StepCommand:
    """Map a step's ``HadoopJarStep`` to a local command.

    :param jar: the step's ``Jar``; only ``command-runner.jar`` is supported.
    :param args: the step's ``Args``.
    :param environ: the environment the command inherits.
    :param configurations: the cluster's Configurations, as RunJobFlow sent them (local_aws.spark_submit).
    :param node_path: where a node's path is on this machine (local_aws.node).
    :param region: the cluster's region, which Spark's ``s3://`` signs for (local_aws.spark_submit).
    """
    if jar != COMMAND_RUNNER_JAR:
        raise StepCommandError(
            f"Jar {jar!r} is not supported locally; only {COMMAND_RUNNER_JAR} steps run on this endpoint."
        )
    if not args:
        raise StepCommandError(f"{COMMAND_RUNNER_JAR} needs Args: the command to run and its arguments.")
    argv = list(args)
    env = {name: value for name, value in environ.items() if name != "PYTHONPATH"}
    if argv[0] == "spark-submit":
        spark = ClusterSpark.from_configurations(configurations, node_path, region)
        try:
            executable = spark_submit_executable()
            argv = localize_spark_submit(argv, executable, spark, node_path)
        except (ValueError, FileNotFoundError) as error:
            raise StepCommandError(str(error)) from None
        env = spark_environment(env, executable, spark)
    return StepCommand(argv=argv, env=env)
