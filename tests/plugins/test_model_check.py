"""Before a cluster starts: a cached model keeps TensorFlow off every node, and a run that would compile
ImageNet's model needs Keras's file in the bucket, or stops in one line."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from airflow.sdk.exceptions import AirflowFailException

from fruits_airflow import tasks
from fruits_airflow.model_check import ModelInputMissingError, plan_model, primary_pins
from fruits_contract import model_cache_entry, weights_identity
from tests.plugins.conftest import BUCKET

CACHE = f"s3://{BUCKET}/artifacts/models/"
KERAS_FILE = "artifacts/keras/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
RUN_CONTEXT = {"run_id": "manual__2026-01-01T00:00:00+00:00", "dag": type("Dag", (), {"dag_id": "fruits_pipeline"})}


def cache_entry(identity: str) -> str:
    """The entry the primary node's Keras and TensorFlow (the lock's) would write for ``identity``."""
    pins = primary_pins()
    return model_cache_entry(weights_identity=identity, image_size=224, converter=pins["tensorflow-cpu"])


def put_entry(s3, identity: str) -> None:
    for suffix in (".tflite", ".json"):
        s3.put_object(Bucket=BUCKET, Key=f"artifacts/models/{cache_entry(identity)}{suffix}", Body=b"x")


def test_a_cached_model_needs_no_tensorflow_nor_weights_file(s3):
    put_entry(s3, weights_identity("imagenet", keras_version=primary_pins()["keras"]))

    plan = plan_model(s3, CACHE, "imagenet")

    assert plan.cached
    assert plan.imagenet_weights_uri is None


def test_the_key_is_the_nodes_keras_and_tensorflow_not_airflow_s(s3):
    put_entry(s3, "imagenet-keras0.0.1")

    with pytest.raises(ModelInputMissingError):
        plan_model(s3, CACHE, "imagenet")


def test_an_entry_without_its_flatbuffer_is_not_cached(s3):
    key = f"artifacts/models/{cache_entry(weights_identity('none', keras_version=None))}.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")

    assert not plan_model(s3, CACHE, "none").cached


def test_imagenet_uncached_without_the_keras_file_fails_in_one_line(s3):
    with pytest.raises(ModelInputMissingError) as raised:
        plan_model(s3, CACHE, "imagenet")

    message = str(raised.value)
    assert "\n" not in message
    assert f"s3://{BUCKET}/{KERAS_FILE}" in message
    assert f"make publish-imagenet-weights BUCKET={BUCKET}" in message


def test_imagenet_uncached_compiles_from_the_bucket_s_keras_file(s3):
    s3.put_object(Bucket=BUCKET, Key=KERAS_FILE, Body=b"h5")

    plan = plan_model(s3, CACHE, "imagenet")

    assert not plan.cached
    assert plan.imagenet_weights_uri == f"s3://{BUCKET}/{KERAS_FILE}"


def test_a_weights_file_s_entry_is_named_by_its_content(s3):
    body = b"my weights"
    s3.put_object(Bucket=BUCKET, Key="artifacts/weights/mine.weights.h5", Body=body)
    put_entry(s3, weights_identity("x", keras_version=None, file_sha256=hashlib.sha256(body).hexdigest()))

    assert plan_model(s3, CACHE, f"s3://{BUCKET}/artifacts/weights/mine.weights.h5").cached


def planned(bucket, network, staged_artifacts, weights):
    return tasks.plan_run.function(
        {"bucket": bucket, **network},
        dataclasses.asdict(staged_artifacts),
        params={"variance": 0.9, "weights": weights, "reprocess_all": False},
        **RUN_CONTEXT,
    )


def test_plan_run_gives_the_primary_the_lean_pins_when_the_model_is_cached(s3, bucket, network, staged_artifacts):
    put_entry(s3, weights_identity("none", keras_version=None))

    (action,) = planned(bucket, network, staged_artifacts, "none")["job_flow_overrides"]["BootstrapActions"]

    args = action["ScriptBootstrapAction"]["Args"]
    lean = staged_artifacts.bootstrap_requirements_uri
    assert args[args.index("--requirements") + 1] == args[args.index("--primary-requirements") + 1] == lean


def test_plan_run_gives_the_primary_tensorflow_when_it_must_compile(s3, bucket, network, staged_artifacts):
    (action,) = planned(bucket, network, staged_artifacts, "none")["job_flow_overrides"]["BootstrapActions"]

    args = action["ScriptBootstrapAction"]["Args"]
    assert args[args.index("--primary-requirements") + 1] == staged_artifacts.bootstrap_primary_requirements_uri


def test_plan_run_passes_the_bucket_s_keras_file_to_extract_features(s3, bucket, network, staged_artifacts):
    s3.put_object(Bucket=BUCKET, Key=KERAS_FILE, Body=b"h5")

    extract_args = planned(bucket, network, staged_artifacts, "imagenet")["steps"][0]["HadoopJarStep"]["Args"]

    assert extract_args[extract_args.index("--imagenet-weights") + 1] == f"s3://{BUCKET}/{KERAS_FILE}"


def test_plan_run_stops_an_imagenet_run_the_nodes_cannot_compile(s3, bucket, network, staged_artifacts):
    with pytest.raises(AirflowFailException, match="make publish-imagenet-weights"):
        planned(bucket, network, staged_artifacts, "imagenet")
