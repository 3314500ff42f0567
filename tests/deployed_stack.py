"""The stack deployed on an embedded endpoint, with Airflow's connection and Variable pointing at it.

For the tests that run the DAG's own task callables and operators in this process, as the role that
``aws_default`` assumes under the stack's policies (tests/cloudformation/test_enforced_airflow_policy.py,
tests/dags/test_faults_survived.py, tests/dags/test_teardown_scheduling.py). A module takes these fixtures
by importing them, so that they replace the root conftest's ``aws`` for that module alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.client import BaseClient

from local_aws import EmbeddedAws
from tools.local_airflow import BUCKET, REGION, local_connection
from tools.local_provision import provision


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The landing folder; each run adds an image of its own, so that each uploads one, to the one that stays
    (a PCA needs two images: fewer are refused before the cluster)."""
    folder = tmp_path_factory.mktemp("landing")
    (folder / "Kiwi").mkdir()
    (folder / "Kiwi" / "0_100.jpg").write_bytes(b"kiwi")
    return folder


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory, project_node_dir: Path) -> Iterator[EmbeddedAws]:
    """The endpoint, its clusters bootstrapping on the session's node: the project's script installs the
    primary node's packages once per session (tests/conftest.py), not once per module that runs it."""
    with EmbeddedAws(port=0, state_dir=tmp_path_factory.mktemp("local-aws"), node_dir=project_node_dir) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def provisioned(aws: EmbeddedAws, landing: Path) -> Iterator[dict[str, str]]:
    """The stack in the endpoint, and Airflow's connection and Variable."""
    variable = provision(aws.client("s3"), aws.client("emr"), aws.client("ec2"), aws.client("iam"), BUCKET, REGION)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(local_connection(aws.endpoint_url)))
        patch.setenv(
            "AIRFLOW_VAR_FRUITS_PIPELINE",
            # No removal limit: a run's upload may remove the only image in S3 (run_pipeline).
            json.dumps({**variable, "images_dir": str(landing), "weights": "none", "max_removal_share": 1}),
        )
        yield variable


@pytest.fixture(scope="module")
def admin_emr(aws: EmbeddedAws) -> BaseClient:
    """EMR as the endpoint's administrator, who sees every cluster whatever the Airflow policy allows."""
    return aws.client("emr")
