"""Retries where AWS says to retry (throttling, 5xx, connection errors), by botocore, for every AWS call of the DAG.

:data:`AWS_RETRIES` is the ``botocore_config`` of the DAG's operators and sensors (and of their
triggers) and the retry setting of the tasks' clients (fruits_airflow.tasks): botocore's standard
mode, exponential backoff with full jitter (up to 20 s) and a retry quota, on ThrottlingException,
SlowDown, 500/502/503/504 and connection errors. Ten attempts ride out a minute of throttling;
botocore's default (legacy mode) makes five, and a connection's own ``config_kwargs`` could make one.
"""

from __future__ import annotations

from typing import Any

from botocore.config import Config

AWS_RETRIES: dict[str, Any] = {"retries": {"mode": "standard", "total_max_attempts": 10}}


def retrying(**settings: Any) -> Config:
    """A botocore client configuration with :data:`AWS_RETRIES` and ``settings``."""
    return Config(**{**AWS_RETRIES, **settings})


class RetriesAsAwsAdvises:
    """Mixin for an operator or sensor of the Amazon provider: its clients retry with :data:`AWS_RETRIES`,
    unless the DAG passes a ``botocore_config`` of its own."""

    def __init__(self, *, botocore_config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(botocore_config=botocore_config or AWS_RETRIES, **kwargs)  # type: ignore[call-arg]
