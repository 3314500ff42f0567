"""What the Airflow side can know before a cluster starts, refused in one line naming the thing and the fix.

A cluster costs a start (about 14 minutes and $0.20) before its first step can say that the input was
wrong; each check here costs an API call or none. The landing folder's own checks live with the upload
(fruits_airflow.upload), the Variable's with the config (fruits_airflow.config).
"""

from __future__ import annotations

from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from fruits_airflow.aws_codes import code_of
from fruits_airflow.config import STACK_TEMPLATE, VARIABLE_KEY
from fruits_airflow.paths import ARTIFACTS_PREFIX, IMAGES_PREFIX
from fruits_airflow.s3_objects import is_not_found
from fruits_contract import PCA_MIN_IMAGES

S3_SCHEME = "s3://"


class RefusedError(ValueError):
    """The run cannot succeed as asked; the message names what is wrong and how to fix it."""


def bucket_region(client: BaseClient, bucket: str) -> str:
    """The region a bucket lives in (GetBucketLocation says None for us-east-1).

    :raises RefusedError: when there is no such bucket.
    """
    try:
        location = client.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except ClientError as error:
        if code_of(error) != "NoSuchBucket":
            raise
        raise RefusedError(
            f"Airflow Variable '{VARIABLE_KEY}': key 'bucket' names s3://{bucket}, which does not exist: set it to "
            f"the output Bucket of the project's stack ({STACK_TEMPLATE}), or create the stack first."
        ) from None
    return location or "us-east-1"


def check_variance(variance: Any) -> float:
    """The run's ``variance``, a share in (0, 1]: the trigger form checks it, a conf given elsewhere may not."""
    if isinstance(variance, bool) or not isinstance(variance, int | float) or not 0 < variance <= 1:
        raise RefusedError(
            f"Run parameter 'variance' is {variance!r}, outside (0, 1]: pass the share of the variance the PCA "
            "keeps, e.g. 0.95."
        )
    return float(variance)


def check_weights_file(client: BaseClient, bucket: str, weights: str) -> None:
    """Refuse an ``s3://`` weights file the nodes cannot read: outside ``s3://BUCKET/artifacts/``, missing or empty.

    ``imagenet`` and ``none`` need no file. The nodes' role reads only the bucket's ``artifacts/`` (the
    stack's policy), so a file elsewhere would fail the first step after the cluster's start.
    """
    if not weights.startswith(S3_SCHEME):
        return
    where = f"{S3_SCHEME}{bucket}/{ARTIFACTS_PREFIX}"
    weights_bucket, _, key = weights.removeprefix(S3_SCHEME).partition("/")
    if weights_bucket != bucket or not key.startswith(ARTIFACTS_PREFIX) or key.endswith("/"):
        raise RefusedError(
            f"Weights file {weights} is outside {where}, the only prefix the cluster's nodes may read: copy it "
            f"there (e.g. {where}weights/mobilenet_v2.weights.h5) and pass that URI."
        )
    try:
        size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    except ClientError as error:
        if not is_not_found(error):
            raise
        raise RefusedError(
            f"Weights file {weights} does not exist: upload it there, or pass 'imagenet' or 'none'."
        ) from None
    if size == 0:
        raise RefusedError(f"Weights file {weights} is empty (0 bytes): upload the weights file there again.")


def require_enough_images(n_images: int, bucket: str, images_dir: str | None) -> None:
    """Refuse a run whose bucket holds fewer images than a PCA is fitted on, after the upload."""
    if n_images >= PCA_MIN_IMAGES:
        return
    source = f"the landing folder {images_dir}" if images_dir else f"s3://{bucket}/{IMAGES_PREFIX}<label>/"
    raise RefusedError(
        f"s3://{bucket}/{IMAGES_PREFIX} holds {n_images} image(s); the PCA needs at least {PCA_MIN_IMAGES}: "
        f"add images to {source}."
    )
