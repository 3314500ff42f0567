"""Importing the plugin package stays cheap: no Spark, TensorFlow, PIL nor pyarrow at module level."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys

import fruits_airflow
from tests.suite import PLUGINS_DIR, SPARK_JOBS_DIR

MODULES = sorted(f"fruits_airflow.{module.name}" for module in pkgutil.iter_modules(fruits_airflow.__path__))

PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_every_plugin_module_imports_without_heavy_libraries():
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *MODULES],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS_DIR), str(SPARK_JOBS_DIR)])},
        timeout=120,
    )
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))

    assert "fruits_airflow" in loaded
    assert len(MODULES) >= 10
    assert loaded & {"pyspark", "tensorflow", "PIL", "pyarrow", "fruits_spark"} == set()
