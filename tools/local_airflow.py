"""A private Airflow on this machine whose only AWS is the embedded endpoint (``make demo``, ``make airflow``).

Only two things differ from a deployment on AWS: the ``aws_default`` connection's ``endpoint_url`` (and
the endpoint's dummy keys for Airflow's host, with which it assumes the role, as on AWS) and the
``fruits_pipeline`` Variable. Both are set through ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*`` variables, as
docker-compose.yaml sets them, so no Airflow database holds them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from local_aws.iam_enforcement import AIRFLOW_HOST
from local_aws.process_groups import stop_groups
from tools.local_provision import AIRFLOW_ROLE_ARN

REPO_ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "fruits_pipeline"
BUCKET = "fruits-demo"
REGION = "eu-west-1"
AIRFLOW = Path(sys.executable).parent / "airflow"
STOP_GRACE_SECONDS = 20
# The demo's images are featurized at MobileNetV2's own input size.
IMAGE_SIZE = 224


def choose_weights() -> str:
    """ImageNet weights when Keras already has them (nothing can be downloaded here), else random."""
    from fruits_spark.model import imagenet_weights_file

    return "imagenet" if imagenet_weights_file(IMAGE_SIZE).is_file() else "none"


def local_connection(endpoint_url: str) -> dict[str, Any]:
    """aws_default on the embedded endpoint: as on AWS (docs/aws.md, step 3), it assumes the role holding the
    stack's Airflow policy alone; its keys are the dummy ones of the endpoint's principal for Airflow's host."""
    return {
        "conn_type": "aws",
        "login": AIRFLOW_HOST.access_key_id,
        "password": AIRFLOW_HOST.secret_access_key,
        "extra": {
            "endpoint_url": endpoint_url,
            "region_name": REGION,
            "role_arn": AIRFLOW_ROLE_ARN,
            # The provider asks STS for the role at AWS unless STS has an endpoint of its own.
            "service_config": {"sts": {"endpoint_url": endpoint_url}},
        },
    }


def airflow_environment(
    airflow_home: Path, endpoint_url: str, images: Path, extra_variable: dict | None = None
) -> dict[str, str]:
    """The environment of a local Airflow whose only AWS is the embedded endpoint at ``endpoint_url``."""
    connection = local_connection(endpoint_url)
    variable = {"bucket": BUCKET, "images_dir": str(images), "region": REGION, **(extra_variable or {})}
    # fruits_contract, which the DAG and the plugins share with the jobs, lives in spark_jobs/.
    python_path = os.pathsep.join([str(REPO_ROOT / "spark_jobs"), str(REPO_ROOT / "plugins"), str(REPO_ROOT)])
    return {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
        "AIRFLOW_VAR_FRUITS_PIPELINE": json.dumps(variable),
        "PYTHONPATH": python_path,
    }


def airflow(env: dict[str, str], *args: str, log_file: Path | None = None) -> subprocess.CompletedProcess:
    """Run one ``airflow`` CLI command of this venv; its output is captured, or written to ``log_file``.

    A long command (with ``log_file``, e.g. ``dags test``) runs in a group of its own, stopped whole on
    the way out, also on Ctrl-C: its task processes must not outlive it.
    """
    command = [str(AIRFLOW), *args]
    if log_file is None:
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    with log_file.open("w") as sink:
        process = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            return subprocess.CompletedProcess(command, process.wait())
        finally:
            stop_groups([process], STOP_GRACE_SECONDS)


# Run with the local Airflow's environment: the XComs of one key in a DAG run, as JSON, from Airflow's database.
_XCOMS_OF_RUN = """
import json, sys
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
dag_id, run_id, key = sys.argv[1:]
with create_session() as session:
    rows = session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id, key=key)).all()
    print(json.dumps([XComModel.deserialize_value(row) for row in rows]))
"""


def run_xcoms(env: dict[str, str], run_id: str, key: str) -> list[Any]:
    """The values the run's tasks pushed under ``key``, read with Airflow's own models (no CLI reads XComs)."""
    read = subprocess.run(
        [sys.executable, "-c", _XCOMS_OF_RUN, DAG_ID, run_id, key], env=env, capture_output=True, text=True, check=False
    )
    if read.returncode != 0:
        raise RuntimeError(f"reading the XComs {key!r} of run {run_id} failed: {read.stderr.strip()[-500:]}")
    return json.loads(read.stdout.strip().splitlines()[-1])


def migrate(env: dict[str, str]) -> None:
    """Create or upgrade the Airflow database; one clear error when that fails."""
    migrated = airflow(env, "db", "migrate")
    if migrated.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed: {migrated.stderr.strip()[-1000:]}")
