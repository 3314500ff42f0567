"""The DagBag of the repository's DAGs, parsed once (the root conftest points Airflow at them)."""

from __future__ import annotations

import pytest

from tests.suite import DAGS_DIR


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


@pytest.fixture(scope="session")
def dag(dagbag):
    return dagbag.dags["fruits_pipeline"]
