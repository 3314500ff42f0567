"""The local command that stands in for one EMR step, and the S3 prefixes it must see.

Only ``command-runner.jar`` steps run, as on EMR: ``Args[0]`` is the program and the rest its
arguments. Every ``s3://`` (``s3a://``, ``s3n://``) URI in the arguments becomes a path in the local S3
mirror. A URI is a whole argument, or follows ``=`` (``--conf k=s3://...``, ``--input=s3://...``), and
runs to the end of the argument or to the next comma (``--py-files a.zip,b.py``); spaces are part of
it, because Fruits-360 labels have them.

The step sees the environment of the endpoint without ``PYTHONPATH``: on a cluster a job has only what
``--py-files`` ships, and a local run should fail the same way when that is missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from local_aws.s3_mirror import S3Prefix, local_path
from local_aws.spark_submit import localize_spark_submit, spark_environment, spark_submit_executable

COMMAND_RUNNER_JAR = "command-runner.jar"
_S3_URI_IN_ARG = re.compile(r"(?:^|(?<=[=,]))s3[an]?://[^,]+")


class StepCommandError(Exception):
    """The step cannot run locally; the message says why and what to change."""


@dataclass(frozen=True)
class StepCommand:
    """What to execute for a step: the local argv, its environment, the S3 prefixes it reads or writes."""

    argv: list[str]
    env: dict[str, str]
    prefixes: list[S3Prefix]


def build_step_command(jar: str, args: list[str], *, mirror_root: Path, environ: Mapping[str, str]) -> StepCommand:
    """Map a step's ``HadoopJarStep`` to a local command.

    :param jar: the step's ``Jar``; only ``command-runner.jar`` is supported.
    :param args: the step's ``Args``.
    :param mirror_root: the folder of the local S3 mirror.
    :param environ: the environment the command inherits.
    """
    if jar != COMMAND_RUNNER_JAR:
        raise StepCommandError(
            f"Jar {jar!r} is not supported locally; only {COMMAND_RUNNER_JAR} steps run on this endpoint."
        )
    if not args:
        raise StepCommandError(f"{COMMAND_RUNNER_JAR} needs Args: the command to run and its arguments.")
    prefixes: list[S3Prefix] = []

    def to_local(match: re.Match[str]) -> str:
        prefixes.append(S3Prefix.from_uri(match[0]))
        return local_path(mirror_root, match[0])

    argv = [_S3_URI_IN_ARG.sub(to_local, arg) for arg in args]
    env = {name: value for name, value in environ.items() if name != "PYTHONPATH"}
    if argv[0] == "spark-submit":
        try:
            argv = localize_spark_submit(argv, spark_submit_executable())
        except (ValueError, FileNotFoundError) as error:
            raise StepCommandError(str(error)) from error
        env.update(spark_environment(environ))
    return StepCommand(argv=argv, env=env, prefixes=prefixes)
