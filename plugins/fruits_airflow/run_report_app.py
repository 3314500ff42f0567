"""The FastAPI app behind the run's report tab: one page per run, for users who may read the DAG's runs.

Airflow mounts a plugin's FastAPI app on its API server without any of its own authentication, so each
route declares Airflow's: ``get_user`` takes the logged-in user from the UI's JWT cookie (or a Bearer
token) and answers 401 without one, and ``requires_access_dag`` asks the auth manager whether that user
may read this DAG's runs, 403 otherwise.
"""

from __future__ import annotations

import logging

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from fruits_airflow.config import ConfigError, load_config
from fruits_airflow.run_report import read_run_report
from fruits_airflow.run_report_page import CONTENT_SECURITY_POLICY, page, render_page

log = logging.getLogger(__name__)

DAG_ID = "fruits_pipeline"
URL_PREFIX = "/fruits-run-report"
# Nothing here may be kept by the browser or a proxy: the page holds what only DAG readers may see.
HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CONTENT_SECURITY_POLICY}

app = FastAPI(title="fruits_pipeline run report", docs_url=None, redoc_url=None, openapi_url=None)


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=HEADERS)


@app.get(
    "/dags/{dag_id}/runs/{run_id}",
    response_class=HTMLResponse,
    dependencies=[Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN))],
)
def run_report(dag_id: str, run_id: str) -> HTMLResponse:
    """The report of one run (S3 read through ``aws_default`` on each request)."""
    if dag_id != DAG_ID:
        return _html(page("No report", f"<p>The run report covers {DAG_ID} runs only.</p>"))
    try:
        config = load_config()
        from fruits_airflow.tasks import s3_client  # the hooks' imports stay out of the plugin's loading

        report = read_run_report(s3_client(config.region), config.bucket, run_id)
    except ConfigError as error:
        return _html(page("No report", f"<p>{_escaped(error)}</p>"), status_code=503)
    except (ClientError, BotoCoreError) as error:
        log.warning("The run report of %s could not be read from S3: %s", run_id, error)
        return _html(page("No report", f"<p>S3 could not be read through aws_default: {_escaped(error)}</p>"), 502)
    return _html(render_page(report, dag_id, run_id))


def _escaped(error: Exception) -> str:
    from html import escape

    return escape(str(error))
