"""Turn a cluster's ``spark-submit`` command line into one that runs with the project's local Spark.

Only what is meaningless off a cluster changes: the master becomes ``local[*,F]`` in client mode, F the
attempts a task is allowed (:func:`local_master`). The cluster's Spark configuration applies as EMR
applies it on its nodes: the ``spark-env`` classification's exports join the command's environment, and
the ``spark-defaults`` classification's properties come before the step's own ``--conf`` options, which
win. Node paths in them, and in the step's interpreter confs, are mapped to the local node
(local_aws.node: ``/mnt/...``), so PySpark runs with the Python that the cluster names, as on EMR: a
package missing from it, or a wrong path, fails the job here too. Spark's ``s3://`` (S3A here, EMRFS on
EMR) signs for the cluster's region, which EMR configures EMRFS with: the region is a Spark property
here, never a variable the job's own AWS calls could read.

As on EMR, that Python needs no pyspark of its own: ``SPARK_HOME`` is the project's Spark, whose
spark-submit puts ``python/lib/pyspark.zip`` and py4j on the driver's and the workers' ``PYTHONPATH``.
Every other option (``--py-files``, memory sizes) and the application's arguments pass unchanged.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPARK_SUBMIT_ENV = "LOCAL_AWS_SPARK_SUBMIT"
REPO_ROOT = Path(__file__).resolve().parents[1]
# Spark's default spark.task.maxFailures, which EMR's spark-defaults leave as it is.
TASK_MAX_FAILURES = 4
_MAX_FAILURES_CONF = "spark.task.maxFailures"
S3A_REGION = "spark.hadoop.fs.s3a.endpoint.region"

# spark-submit options that take no value (SparkSubmitOptionParser's switches).
_SWITCHES = frozenset({"--help", "-h", "--supervise", "--usage-error", "--verbose", "-v", "--version"})
_CLUSTER_OPTIONS = frozenset({"--master", "--deploy-mode"})
_CONF_OPTIONS = frozenset({"--conf", "-c"})
_INTERPRETER_CONFS = frozenset({"spark.pyspark.python", "spark.pyspark.driver.python"})
_INTERPRETER_VARIABLES = frozenset({"PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"})


def same_path(path: str) -> str:
    """A node path where no node is emulated: unchanged."""
    return path


@dataclass(frozen=True)
class ClusterSpark:
    """What a cluster's Configurations give its Spark, node paths mapped: spark-env's exports, spark-defaults."""

    environment: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_configurations(
        cls,
        configurations: Sequence[Mapping[str, Any]],
        node_path: Callable[[str], str] = same_path,
        region: str | None = None,
    ) -> ClusterSpark:
        """:param region: the cluster's, which Spark's ``s3://`` signs for (EMRFS's on EMR)."""
        environment: dict[str, str] = {}
        properties: dict[str, str] = {S3A_REGION: region} if region else {}
        for configuration in configurations:
            if configuration.get("Classification") == "spark-defaults":
                properties.update(_mapped(configuration.get("Properties", {}), node_path))
            elif configuration.get("Classification") == "spark-env":
                for nested in configuration.get("Configurations", []):
                    if nested.get("Classification") == "export":
                        environment.update(_mapped(nested.get("Properties", {}), node_path))
        return cls(environment, properties)


def _mapped(properties: Mapping[str, Any], node_path: Callable[[str], str]) -> dict[str, str]:
    return {name: node_path(str(value)) for name, value in properties.items()}


def spark_submit_executable() -> Path:
    """The project's spark-submit: ``$LOCAL_AWS_SPARK_SUBMIT``, else ``.venv/bin/spark-submit`` of this repo."""
    executable = Path(os.environ.get(SPARK_SUBMIT_ENV) or REPO_ROOT / ".venv" / "bin" / "spark-submit")
    if not os.access(executable, os.X_OK):
        raise FileNotFoundError(
            f"spark-submit not found at {executable}; run `make install` or set {SPARK_SUBMIT_ENV}."
        )
    return executable


@functools.cache
def spark_home(executable: Path) -> Path:
    """The Spark that ``executable`` runs, the steps' ``SPARK_HOME`` as on EMR's nodes.

    The cluster's Python may have no pyspark to find it with: a pip-installed Spark is found with this
    endpoint's Python, which has it; a Spark distribution's is ``bin/..``.
    """
    finder = executable.parent / "find_spark_home.py"
    if finder.exists():
        found = subprocess.run([sys.executable, str(finder)], capture_output=True, text=True, check=True)
        return Path(found.stdout.strip())
    return executable.resolve().parent.parent


def local_master(max_failures: int = TASK_MAX_FAILURES) -> str:
    """``local[*,F]``: every core, and a failed task retried until it has failed F times, as on a cluster.

    On YARN (EMR) a task whose executor or Python worker dies is retried, up to ``spark.task.maxFailures``
    attempts (4 by default); plain ``local[*]`` ignores that setting and fails the job at a task's first
    failure. A node lost during a step (local_aws.node_loss) kills its tasks' Python workers: with
    ``local[*]`` the step would fail where a cluster retries the tasks on the nodes left.
    """
    return f"local[*,{max_failures}]"


def _max_failures(properties: list[str]) -> int:
    """The last ``spark.task.maxFailures=N`` among ``name=value`` properties (the step's win), else Spark's 4."""
    chosen = TASK_MAX_FAILURES
    for conf in properties:
        name, _, value = conf.partition("=")
        if name.strip() == _MAX_FAILURES_CONF:
            chosen = int(value) if value.strip().isdigit() else 0
            if chosen < 1:
                raise ValueError(f"{_MAX_FAILURES_CONF}={value} is not a count of 1 or more; give one, e.g. 4.")
    return chosen


def localize_spark_submit(
    args: list[str],
    executable: Path,
    spark: ClusterSpark | None = None,
    node_path: Callable[[str], str] = same_path,
) -> list[str]:
    """Rewrite ``["spark-submit", *options, app, *app_args]`` to run locally with ``executable``."""
    options, application = _split_options(args[1:])
    defaults = [f"{name}={value}" for name, value in (spark or ClusterSpark()).properties.items()]
    kept: list[str] = [token for conf in defaults for token in ("--conf", conf)]
    for name, value in options:
        if name in _CLUSTER_OPTIONS:
            continue
        if name in _CONF_OPTIONS and value is not None and value.partition("=")[0] in _INTERPRETER_CONFS:
            conf, _, path = value.partition("=")
            value = f"{conf}={node_path(path)}"
        kept.extend([name] if value is None else [name, value])
    confs = [*defaults, *(value for name, value in options if name in _CONF_OPTIONS and value is not None)]
    master = local_master(_max_failures(confs))
    return [str(executable), "--master", master, "--deploy-mode", "client", *kept, *application]


def spark_environment(
    environ: Mapping[str, str], executable: Path, spark: ClusterSpark | None = None
) -> dict[str, str]:
    """``environ`` for a spark-submit step: with ``SPARK_HOME``, the cluster's exports, and PySpark's interpreters.

    A cluster whose spark-env exports name a Python gets exactly those (a driver without its own follows
    PYSPARK_PYTHON, as in Spark); one that names none gets this endpoint's Python (it has pyspark and the
    jobs' libraries), where EMR would use its nodes' own ``python3``.
    """
    exports = (spark or ClusterSpark()).environment
    env = {name: value for name, value in environ.items() if name not in _INTERPRETER_VARIABLES}
    if not _INTERPRETER_VARIABLES & exports.keys():
        env.update({name: environ.get(name, sys.executable) for name in _INTERPRETER_VARIABLES})
    return {**env, **exports, "SPARK_HOME": str(spark_home(executable))}


def _split_options(args: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Split spark-submit's own options from the application (its first non-option argument) onwards."""
    options: list[tuple[str, str | None]] = []
    index = 0
    while index < len(args) and args[index].startswith("-"):
        token = args[index]
        if token in _SWITCHES:
            options.append((token, None))
            index += 1
        elif token.startswith("--") and "=" in token:
            name, _, value = token.partition("=")
            options.append((name, value))
            index += 1
        elif index + 1 < len(args):
            options.append((token, args[index + 1]))
            index += 2
        else:
            raise ValueError(f"spark-submit option {token} has no value; give it one or remove it.")
    return options, args[index:]
