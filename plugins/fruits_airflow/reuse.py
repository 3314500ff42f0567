"""Nothing new, nothing to do: decide, before any cluster, whether the last checked run's outputs still hold.

A run that computed its outputs leaves ``runs/_latest/<weights id>.json``, a copy of its summary,
holding the digest of the images it covered (``fruits_contract.images_digest``, from the manifest
``extract_features`` wrote). A later run lists ``images/`` once (the listing already granted to the
upload), computes the same digest and, when it matches and the run asks for the same variance and
weights, reuses those outputs: no cluster. ``reprocess_all`` and any other variance always run.
The Airflow side reads no parquet for this: the pointer and the listing are enough.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from fruits_airflow.paths import IMAGES_PREFIX, RunPaths
from fruits_airflow.s3_objects import is_not_found
from fruits_contract import Summary, images_digest, is_image_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReuseDecision:
    """Whether a run can reuse another run's outputs, and why (or why not), as passed by XCom.

    :param images_digest: the digest of the images in S3 now.
    :param n_images: how many image objects ``images/`` holds now.
    :param reason: one sentence for the log.
    :param reused_run_id: the run whose outputs hold, or None when a cluster is needed.
    :param reused_run_key: that run's key (its ``runs/<run key>/`` prefix).
    :param n_covered: how many images the network's last checked run covered (in its PCA or rejected),
        0 without one; the plan sizes the cluster from what is left to featurize.
    """

    images_digest: str
    n_images: int
    reason: str
    reused_run_id: str | None = None
    reused_run_key: str | None = None
    n_covered: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def images_in_s3(s3_client: BaseClient, bucket: str) -> tuple[str, int]:
    """The digest of the images under ``images/`` and their number, from one paginated listing."""
    images = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=IMAGES_PREFIX):
        for obj in page.get("Contents", []):
            if is_image_name(obj["Key"]):
                modified_ms = int(obj["LastModified"].timestamp() * 1000)
                images.append((obj["Key"].removeprefix(IMAGES_PREFIX), obj["Size"], modified_ms))
    return images_digest(images), len(images)


def read_json(s3_client: BaseClient, bucket: str, key: str) -> dict[str, Any] | None:
    """A JSON object of the bucket, or None when there is no such key."""
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if is_not_found(error):
            return None
        raise
    return json.loads(body)


def find_reusable_run(
    s3_client: BaseClient, paths: RunPaths, *, variance: float, weights: str, reprocess_all: bool
) -> ReuseDecision:
    """Compare the images in S3 and the run's choices with the last checked run of the same network."""
    digest, n_images = images_in_s3(s3_client, paths.bucket)

    latest = None if reprocess_all else read_json(s3_client, paths.bucket, paths.latest_key)
    n_covered = (latest.get(Summary.N_IMAGES) or 0) + (latest.get(Summary.REJECTED) or 0) if latest else 0

    def needs_cluster(reason: str) -> ReuseDecision:
        return ReuseDecision(digest, n_images, f"A cluster is needed: {reason}.", n_covered=n_covered)

    if reprocess_all:
        return needs_cluster("reprocess_all asks to featurize every image again")
    if latest is None:
        return needs_cluster(f"no checked run with weights '{weights}' yet ({paths.uri(paths.latest_key)})")
    last_run = latest.get(Summary.RUN_ID)
    if latest.get(Summary.WEIGHTS) != weights:
        return needs_cluster(f"run {last_run} used weights '{latest.get(Summary.WEIGHTS)}', this one '{weights}'")
    if latest.get(Summary.THRESHOLD) != variance:
        return needs_cluster(f"run {last_run} kept variance {latest.get(Summary.THRESHOLD)}, this one asks {variance}")
    if latest.get(Summary.IMAGES_DIGEST) != digest:
        return needs_cluster(f"the {n_images} image(s) in images/ differ from those run {last_run} covered")
    return ReuseDecision(
        digest,
        n_images,
        f"Nothing changed since run {last_run} (the same {n_images} image(s), variance {variance}, weights "
        f"'{weights}'): reusing its outputs, no cluster.",
        reused_run_id=last_run,
        reused_run_key=latest[Summary.RUN_KEY],
        n_covered=n_covered,
    )
