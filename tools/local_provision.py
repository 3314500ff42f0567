"""What a local Airflow needs in the embedded AWS endpoint before its first run.

On AWS, the project's CloudFormation stack creates these; the demo and ``make airflow`` create them in the
embedded endpoint with this module, so the DAG finds the same resources in both places.
"""

from __future__ import annotations

from botocore.client import BaseClient


def provision(s3: BaseClient, bucket: str, region: str) -> None:
    """Create the pipeline's bucket in ``region`` unless it exists already."""
    if bucket not in {existing["Name"] for existing in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
