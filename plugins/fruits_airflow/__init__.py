"""Airflow-side logic of the fruits_pipeline DAG: configuration, cluster spec, steps, upload, output check."""
