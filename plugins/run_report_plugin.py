"""Airflow plugin: a "Report" tab on every run's page of fruits_pipeline (Airflow 3.1+ plugin interface).

The tab is an external view whose destination is ``dag_run``: the UI shows it in an iframe, with the run's
DAG and run ids in its ``href``, served by the FastAPI app of ``fruits_airflow.run_report_app``. This is the
only module Airflow loads from the plugins folder (``.airflowignore`` keeps the package out).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from fruits_airflow.run_report_app import URL_PREFIX, app


class RunReportPlugin(AirflowPlugin):
    # AirflowPlugin declares these as list attributes, so mypy refuses a ClassVar annotation here.
    name = "fruits_run_report"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "fruits_pipeline run report"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "Report",
            "href": f"{URL_PREFIX.lstrip('/')}/dags/{{DAG_ID}}/runs/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "fruits_run_report",
        }
    ]
