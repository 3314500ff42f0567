"""Put Keras's ImageNet weights file of the headless MobileNetV2 where the nodes read it, in the bucket.

    python -m tools.imagenet_weights --bucket BUCKET     # make publish-imagenet-weights BUCKET=...

The nodes have no internet: a run with ``weights: imagenet`` whose model is not cached compiles it from
``s3://BUCKET/artifacts/keras/<Keras's file name>`` (fruits_airflow.model_check), which this copies from
this machine's Keras cache (``$KERAS_HOME/models``, else ``~/.keras/models``; Keras fills it on a first
``keras.applications.MobileNetV2(weights="imagenet")`` where the internet is reachable). The demo and the
local Airflow stack call ``upload_imagenet_weights`` too, when the machine has the file.
"""

from __future__ import annotations

import argparse
import logging
import sys

import boto3
from botocore.client import BaseClient

from fruits_airflow.model_check import IMAGENET_WEIGHTS_PREFIX, imagenet_weights_name
from fruits_airflow.s3_objects import head, same_content, upload_file
from fruits_contract import DEFAULT_IMAGE_SIZE

log = logging.getLogger(__name__)


def upload_imagenet_weights(s3: BaseClient, bucket: str, image_size: int = DEFAULT_IMAGE_SIZE) -> str | None:
    """Copy the local Keras file to the bucket unless it is there already; its URI, or None without one."""
    from fruits_spark.model import imagenet_weights_file

    local = imagenet_weights_file(image_size)
    if not local.is_file():
        return None
    key = f"{IMAGENET_WEIGHTS_PREFIX}{imagenet_weights_name(image_size)}"
    remote = head(s3, bucket, key)
    if remote is None or not same_content(local, local.stat().st_size, *remote):
        upload_file(s3, local, bucket, key)
        log.info("ImageNet weights %s uploaded to s3://%s/%s", local, bucket, key)
    return f"s3://{bucket}/{key}"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True, help="the pipeline's bucket (the stack's output)")
    parser.add_argument("--region", help="the bucket's region; default: the AWS configuration's")
    args = parser.parse_args()
    from fruits_spark.model import imagenet_weights_file

    uri = upload_imagenet_weights(boto3.client("s3", region_name=args.region), args.bucket)
    if uri is None:
        sys.exit(
            f"imagenet_weights: {imagenet_weights_file(DEFAULT_IMAGE_SIZE)} is missing: run "
            "`python -c 'import keras; keras.applications.MobileNetV2(include_top=False, weights=\"imagenet\")'` "
            "once on a machine with internet, then rerun."
        )
    print(uri)


if __name__ == "__main__":
    main()
