"""Before a cluster starts: does the model cache hold the run's compiled model, and if not, can it compile?

The cache entry's name (fruits_contract.model_cache_entry) depends on the weights' identity and the
versions of Keras and TensorFlow that the primary node would compile with: those the lock pins for it
(bootstrap/requirements-primary.txt), not the Airflow side's. When the entry's manifest and flatbuffer are
in the bucket, the extract_features job loads them and never imports TensorFlow, so the primary node gets
the lean nodes' packages like every other node (``ModelPlan.cached``). When they are not and the run asks
for ImageNet's weights, the nodes, which have no internet, read Keras's weights file from the bucket's
``artifacts/keras/`` (``make publish-imagenet-weights`` puts it there): a missing file stops the run here,
in one line, instead of in Keras's download on the cluster.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from fruits_airflow.artifacts import BOOTSTRAP_DIR, BOOTSTRAP_PRIMARY_REQUIREMENTS
from fruits_airflow.paths import ARTIFACTS_PREFIX
from fruits_airflow.s3_objects import head, read_object
from fruits_contract import (
    DEFAULT_IMAGE_SIZE,
    IMAGENET_WEIGHTS,
    MODEL_CACHE_MANIFEST_SUFFIX,
    RANDOM_WEIGHTS,
    model_cache_entry,
    weights_identity,
)

log = logging.getLogger(__name__)

IMAGENET_WEIGHTS_PREFIX = f"{ARTIFACTS_PREFIX}keras/"
# The largest weights file the Airflow side hashes to name a cache entry (MobileNetV2's are ~9 MB).
_MAX_WEIGHTS_BYTES = 256 * 1024 * 1024
_CONVERTERS = ("tensorflow-cpu", "tensorflow")


class ModelInputMissingError(Exception):
    """A cache miss that the nodes cannot compile; the message names the file and the fix."""


def imagenet_weights_name(image_size: int = DEFAULT_IMAGE_SIZE) -> str:
    """Keras's file name of the headless MobileNetV2's ImageNet weights (fruits_spark.model reads the same)."""
    size = image_size if image_size in (96, 128, 160, 192, 224) else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"


def primary_pins(bootstrap_dir: Path = BOOTSTRAP_DIR) -> dict[str, str]:
    text = (bootstrap_dir / BOOTSTRAP_PRIMARY_REQUIREMENTS).read_text()
    return {match[1].lower(): match[2] for match in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", text, re.M)}


@dataclass(frozen=True)
class ModelPlan:
    """What the run's cluster needs for its model.

    :param cached: whether the cache holds the compiled model: then no node needs TensorFlow.
    :param entry_uri: the cache entry looked up, without suffix.
    :param imagenet_weights_uri: where the nodes read ImageNet's weights file when they compile it; None
        when the run needs none.
    """

    cached: bool
    entry_uri: str
    imagenet_weights_uri: str | None


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _identity(s3_client: BaseClient, weights: str, keras_version: str | None) -> str | None:
    if weights in (IMAGENET_WEIGHTS, RANDOM_WEIGHTS):
        return weights_identity(weights, keras_version=keras_version)
    bucket, key = _split(weights)
    try:
        body = read_object(s3_client, bucket, key, max_bytes=_MAX_WEIGHTS_BYTES)
    except ClientError as error:  # e.g. outside what Airflow may read: the nodes may, or the job says why not
        log.warning("Cannot read %s to name its cache entry (%s): the primary node gets TensorFlow", weights, error)
        return None
    if body is None:  # the job itself says what is wrong with the file
        return None
    return weights_identity(weights, keras_version=None, file_sha256=hashlib.sha256(body).hexdigest())


def plan_model(
    s3_client: BaseClient, model_cache_uri: str, weights: str, image_size: int = DEFAULT_IMAGE_SIZE
) -> ModelPlan:
    """Look the run's model up in the cache; require ImageNet's weights file in the bucket on a miss.

    :raises ModelInputMissingError: when the model is not cached, the run asks for ImageNet's weights, and
        the bucket does not hold them.
    """
    pins = primary_pins()
    converter = next((pins[name] for name in _CONVERTERS if name in pins), "unknown")
    identity = _identity(s3_client, weights, pins.get("keras"))
    bucket, prefix = _split(model_cache_uri.rstrip("/") + "/")
    name = model_cache_entry(weights_identity=identity or "unknown", image_size=image_size, converter=converter)
    entry_uri = f"s3://{bucket}/{prefix}{name}"
    cached = identity is not None and all(
        head(s3_client, bucket, f"{prefix}{name}{suffix}") is not None
        for suffix in (MODEL_CACHE_MANIFEST_SUFFIX, ".tflite")
    )
    if cached:
        log.info("Model cache holds %s: no node needs TensorFlow", entry_uri)
        return ModelPlan(True, entry_uri, None)
    log.info("Model cache lacks %s: the primary node compiles it with TensorFlow", entry_uri)
    if weights != IMAGENET_WEIGHTS:
        return ModelPlan(False, entry_uri, None)
    weights_key = f"{IMAGENET_WEIGHTS_PREFIX}{imagenet_weights_name(image_size)}"
    if head(s3_client, bucket, weights_key) is None:
        raise ModelInputMissingError(
            f"weights imagenet: the model is not cached at {entry_uri} and the nodes, which have no internet, "
            f"need Keras's ImageNet weights file at s3://{bucket}/{weights_key}: put it there with "
            f"`make publish-imagenet-weights BUCKET={bucket}`, or run with weights none."
        )
    return ModelPlan(False, entry_uri, f"s3://{bucket}/{weights_key}")
