"""Turn a cluster's ``spark-submit`` command line into one that runs with the project's local pyspark.

Only what is meaningless off a cluster changes: the master becomes ``local[*]`` in client mode, and the
interpreter confs that point at the cluster's Python (installed there by a bootstrap action) give way to
the interpreter running this endpoint. Every other option (``--conf``, ``--py-files``, memory sizes) and
the application's own arguments are passed on untouched.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

SPARK_SUBMIT_ENV = "LOCAL_AWS_SPARK_SUBMIT"
REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_MASTER = "local[*]"

# spark-submit options that take no value (SparkSubmitOptionParser's switches).
_SWITCHES = frozenset({"--help", "-h", "--supervise", "--usage-error", "--verbose", "-v", "--version"})
_CLUSTER_OPTIONS = frozenset({"--master", "--deploy-mode"})
_CONF_OPTIONS = frozenset({"--conf", "-c"})
_CLUSTER_INTERPRETER_CONFS = frozenset({"spark.pyspark.python", "spark.pyspark.driver.python"})


def spark_submit_executable() -> Path:
    """The project's spark-submit: ``$LOCAL_AWS_SPARK_SUBMIT``, else ``.venv/bin/spark-submit`` of this repo."""
    executable = Path(os.environ.get(SPARK_SUBMIT_ENV) or REPO_ROOT / ".venv" / "bin" / "spark-submit")
    if not os.access(executable, os.X_OK):
        raise FileNotFoundError(
            f"spark-submit not found at {executable}; run `make install` or set {SPARK_SUBMIT_ENV}."
        )
    return executable


def localize_spark_submit(args: list[str], executable: Path) -> list[str]:
    """Rewrite ``["spark-submit", *options, app, *app_args]`` to run locally with ``executable``."""
    options, application = _split_options(args[1:])
    kept: list[str] = []
    for name, value in options:
        if name in _CLUSTER_OPTIONS:
            continue
        if name in _CONF_OPTIONS and value is not None and value.partition("=")[0] in _CLUSTER_INTERPRETER_CONFS:
            continue
        kept.extend([name] if value is None else [name, value])
    return [str(executable), "--master", LOCAL_MASTER, "--deploy-mode", "client", *kept, *application]


def spark_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """PySpark's interpreter variables, defaulting to this interpreter (it has pyspark and the job's libraries)."""
    return {
        "PYSPARK_PYTHON": environ.get("PYSPARK_PYTHON", sys.executable),
        "PYSPARK_DRIVER_PYTHON": environ.get("PYSPARK_DRIVER_PYTHON", sys.executable),
    }


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
