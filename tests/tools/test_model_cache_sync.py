"""The local model cache and the endpoint bucket's artifacts/models/: each gets the entries it lacks, whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.client import BaseClient

from fruits_airflow.paths import MODELS_PREFIX
from tools.model_cache_sync import download_models, upload_models

ENTRY = {
    "mobilenet_v2-96px-none-seed42-tf2.21.0-v1.tflite": b"flatbuffer",
    "mobilenet_v2-96px-none-seed42-tf2.21.0-v1.json": b"{}",
}


@pytest.fixture
def bucket(s3: BaseClient, request: pytest.FixtureRequest) -> str:
    name = f"models-{request.node.name.replace('_', '-')[:40].lower()}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name})
    return name


def test_local_entries_reach_the_bucket_and_hidden_files_do_not(s3: BaseClient, bucket: str, tmp_path: Path) -> None:
    for name, data in ENTRY.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / ".half-written.tflite.x1").write_bytes(b"partial")

    assert upload_models(s3, bucket, tmp_path) == 2
    assert upload_models(s3, bucket, tmp_path) == 0

    listed = s3.list_objects_v2(Bucket=bucket, Prefix=MODELS_PREFIX)["Contents"]
    assert sorted(item["Key"].removeprefix(MODELS_PREFIX) for item in listed) == sorted(ENTRY)


def test_entries_a_run_compiled_in_the_bucket_come_back_whole(s3: BaseClient, bucket: str, tmp_path: Path) -> None:
    for name, data in ENTRY.items():
        s3.put_object(Bucket=bucket, Key=f"{MODELS_PREFIX}{name}", Body=data)
    local = tmp_path / "models"

    assert download_models(s3, bucket, local) == 2

    assert {path.name: path.read_bytes() for path in local.iterdir()} == ENTRY
    assert download_models(s3, bucket, local) == 0
