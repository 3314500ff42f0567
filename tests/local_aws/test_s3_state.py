"""The endpoint's S3 survives a restart: saved on a clean stop, restored at the next start."""

from __future__ import annotations

import time
from pathlib import Path

from local_aws import EmbeddedAws
from local_aws.request_log import Request, requests_under
from local_aws.s3_state import save

BUCKET = "fruits-state"


def _create_bucket(aws: EmbeddedAws) -> None:
    aws.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region})


def test_any_key_s3_takes_survives_a_restart(tmp_path: Path) -> None:
    keys = {
        "images/Apple Red 1/r 0.jpg": b"jpeg bytes",
        "features/none/": b"",  # a directory marker, as S3A writes them
        "runs/a": b"a file",
        "runs/a/b": b"and a key below it",
    }
    with EmbeddedAws(state_dir=tmp_path) as aws:
        _create_bucket(aws)
        for key, body in keys.items():
            aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)

    with EmbeddedAws(state_dir=tmp_path) as aws:
        s3 = aws.client("s3")
        restored = {obj["Key"]: s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read() for obj in _objects(aws)}
        region = s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"]

    assert restored == keys
    assert region == "eu-west-1"


def test_a_restart_keeps_each_objects_last_modified_as_s3_would(tmp_path: Path) -> None:
    with EmbeddedAws(state_dir=tmp_path) as aws:
        _create_bucket(aws)
        aws.client("s3").put_object(Bucket=BUCKET, Key="images/Kiwi/a.jpg", Body=b"kiwi")
        before = {obj["Key"]: obj["LastModified"] for obj in _objects(aws)}
    time.sleep(1.1)

    with EmbeddedAws(state_dir=tmp_path) as aws:
        after = {obj["Key"]: obj["LastModified"] for obj in _objects(aws)}
        head = aws.client("s3").head_object(Bucket=BUCKET, Key="images/Kiwi/a.jpg")

    assert after == before
    assert head["LastModified"] == before["images/Kiwi/a.jpg"]


def test_a_stopped_endpoint_leaves_no_s3_behind_in_the_process(tmp_path: Path) -> None:
    with EmbeddedAws() as aws:
        _create_bucket(aws)

    with EmbeddedAws() as aws:
        buckets = aws.client("s3").list_buckets()["Buckets"]

    assert buckets == []


def test_saving_again_writes_only_new_contents_and_drops_deleted_ones(tmp_path: Path) -> None:
    with EmbeddedAws() as aws:
        _create_bucket(aws)
        s3 = aws.client("s3")
        s3.put_object(Bucket=BUCKET, Key="a.jpg", Body=b"a")
        s3.put_object(Bucket=BUCKET, Key="b.jpg", Body=b"b")
        first = save(tmp_path)
        s3.delete_object(Bucket=BUCKET, Key="b.jpg")
        s3.put_object(Bucket=BUCKET, Key="c.jpg", Body=b"c")
        second = save(tmp_path)

    assert (first.objects, first.written, first.removed) == (2, 2, 0)
    assert (second.objects, second.written, second.removed) == (2, 1, 1)
    assert len(list((tmp_path / "objects").iterdir())) == 2


def test_every_request_is_recorded_with_its_service_and_object(tmp_path: Path) -> None:
    with EmbeddedAws() as aws:
        _create_bucket(aws)
        s3 = aws.client("s3")
        s3.put_object(Bucket=BUCKET, Key="images/Kiwi/k 1.jpg", Body=b"k")
        aws.requests.clear()
        s3.get_object(Bucket=BUCKET, Key="images/Kiwi/k 1.jpg")
        aws.client("emr").list_clusters()

    recorded = [(r.service, r.operation, r.method, r.path, r.status) for r in aws.requests]
    assert recorded == [
        ("s3", "", "GET", f"/{BUCKET}/images/Kiwi/k 1.jpg", 200),
        ("elasticmapreduce", "ListClusters", "POST", "/", 200),
    ]


def test_latency_delays_every_request() -> None:
    with EmbeddedAws(latency_seconds=0.2) as aws:
        s3 = aws.client("s3")
        started = time.monotonic()
        s3.list_buckets()
        s3.list_buckets()
        elapsed = time.monotonic() - started

    assert elapsed >= 0.4


def _objects(aws: EmbeddedAws) -> list[dict]:
    return aws.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]


def test_requests_under_a_prefix_are_its_objects_and_its_listings() -> None:
    requests = [
        Request("s3", "", "GET", "/b/images/Kiwi/k.jpg", "", 200),
        Request("s3", "", "GET", "/b", "list-type=2&prefix=images%2F", 200),
        Request("s3", "", "PUT", "/b/features/part-0.parquet", "", 200),
    ]

    assert requests_under(requests, "b", "images") == requests[:2]
