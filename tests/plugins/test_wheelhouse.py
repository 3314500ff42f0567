"""The nodes' wheelhouse on the Airflow side: keyed by the lock, uploaded from a local build that the bucket
lacks, and a run without either stopped in one line saying how to publish it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from fruits_airflow.artifacts import BOOTSTRAP_DIR
from fruits_airflow.wheelhouse import LAYERS, Wheelhouse, WheelhouseMissingError, ensure_published, wheelhouse_key


@pytest.fixture
def bootstrap_dir(tmp_path: Path) -> Path:
    return shutil.copytree(BOOTSTRAP_DIR, tmp_path / "bootstrap")


@pytest.fixture
def local_build(tmp_path: Path, bootstrap_dir: Path) -> Wheelhouse:
    """A local build of the lock's wheelhouse with small stand-in layers."""
    wheelhouse = Wheelhouse.of(bootstrap_dir, tmp_path / "wheelhouses")
    wheelhouse.local_dir.mkdir(parents=True)
    for layer in LAYERS:
        (wheelhouse.local_dir / layer).write_bytes(layer.encode() * 1000)
    return wheelhouse


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-primary.txt", "requirements-installer.txt"])
def test_a_new_lock_gets_a_new_wheelhouse(bootstrap_dir, name):
    before = wheelhouse_key(bootstrap_dir)
    (bootstrap_dir / name).write_text((bootstrap_dir / name).read_text() + "\n")

    assert wheelhouse_key(bootstrap_dir) != before


def test_the_same_lock_gets_the_same_wheelhouse(bootstrap_dir):
    assert wheelhouse_key(bootstrap_dir) == wheelhouse_key(BOOTSTRAP_DIR)


def test_the_x86_64_key_is_the_one_published_before_there_was_another_architecture(bootstrap_dir):
    """Wheelhouses published before aarch64 existed stay valid: the x86_64 key hashes what it always did."""
    digest = hashlib.sha256(b"cp311-manylinux_2_34_x86_64 v1")
    for name in ("requirements-installer.txt", "requirements.txt", "requirements-primary.txt"):
        digest.update(name.encode())
        digest.update((bootstrap_dir / name).read_bytes())

    assert wheelhouse_key(bootstrap_dir) == wheelhouse_key(bootstrap_dir, "x86_64") == digest.hexdigest()[:16]


def test_each_architecture_has_its_own_wheelhouse(bootstrap_dir):
    assert wheelhouse_key(bootstrap_dir, "aarch64") != wheelhouse_key(bootstrap_dir, "x86_64")


def test_the_aarch64_wheelhouse_has_no_tensorflow_layer(s3, bucket, tmp_path, bootstrap_dir):
    build = Wheelhouse.of(bootstrap_dir, tmp_path / "wheelhouses", arch="aarch64")
    build.local_dir.mkdir(parents=True)
    (build.local_dir / "nodes.tar").write_bytes(b"lean aarch64 wheels")

    assert build.built()
    assert ensure_published(s3, bucket, build) == build.uri(bucket)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=build.prefix)["Contents"]
    assert [item["Key"] for item in listed] == [f"{build.prefix}nodes.tar"]


def test_no_aarch64_wheelhouse_anywhere_says_how_to_publish_it(s3, bucket, tmp_path, bootstrap_dir):
    with pytest.raises(WheelhouseMissingError) as raised:
        ensure_published(s3, bucket, Wheelhouse.of(bootstrap_dir, tmp_path / "none", arch="aarch64"))

    assert f"`make publish-wheelhouse BUCKET={bucket} ARCH=aarch64`" in str(raised.value)


def test_a_local_build_is_uploaded_where_the_nodes_read_it(s3, bucket, local_build):
    uri = ensure_published(s3, bucket, local_build)

    assert uri == f"s3://{bucket}/artifacts/wheelhouse/{local_build.key}/"
    for layer in LAYERS:
        body = s3.get_object(Bucket=bucket, Key=f"artifacts/wheelhouse/{local_build.key}/{layer}")["Body"].read()
        assert body == (local_build.local_dir / layer).read_bytes()


def test_a_corrupt_layer_in_the_bucket_is_replaced_by_the_local_build(s3, bucket, local_build):
    key = f"artifacts/wheelhouse/{local_build.key}/nodes.tar"
    s3.put_object(Bucket=bucket, Key=key, Body=b"truncated")

    ensure_published(s3, bucket, local_build)

    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == (local_build.local_dir / "nodes.tar").read_bytes()


def test_a_published_wheelhouse_needs_no_local_build(s3, bucket, local_build, tmp_path):
    ensure_published(s3, bucket, local_build)
    elsewhere = Wheelhouse(local_build.key, tmp_path / "not-built")

    assert ensure_published(s3, bucket, elsewhere) == local_build.uri(bucket)


def test_no_wheelhouse_anywhere_is_one_line_saying_how_to_publish_it(s3, bucket, tmp_path, bootstrap_dir):
    with pytest.raises(WheelhouseMissingError) as raised:
        ensure_published(s3, bucket, Wheelhouse.of(bootstrap_dir, tmp_path / "none"))

    message = str(raised.value)
    assert "\n" not in message
    assert f"s3://{bucket}/artifacts/wheelhouse/" in message
    assert f"make publish-wheelhouse BUCKET={bucket}" in message
