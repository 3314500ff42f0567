"""What AWS answered, read one way everywhere; without Airflow, as the tools (the demo, chaos) import it too.

``aws_errors`` turns denials into one line for a task; its module imports Airflow, which the tools must
not (importing it sets up an Airflow home), so the code of an error has this home of its own.
"""

from __future__ import annotations

from botocore.exceptions import ClientError


def code_of(error: ClientError) -> str | None:
    """The error code AWS answered (``NoSuchBucket``, ``AccessDenied``, ``404`` for a HEAD), None when it gave none."""
    return error.response.get("Error", {}).get("Code")
