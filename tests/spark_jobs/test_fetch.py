"""The executors' image reads: one GET per object, in order, a vanished object a reject, any other failure fatal."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from fruits_spark.fetch import GONE_REASON, Fetcher, FetchError, fetch_failure
from fruits_spark.images import ImageRejectedError
from local_aws import EmbeddedAws
from local_aws.failed_attempts import FailedAttempts
from local_aws.faults import FaultPlan

BUCKET = "fruits-fetch"
# botocore's default retry mode (legacy) makes 5 attempts of a request, its standard mode 3.
BOTOCORE_DEFAULT_ATTEMPTS = 5


@pytest.fixture
def endpoint_environment(aws: EmbeddedAws, s3, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in aws.client_environment().items():
        monkeypatch.setenv(name, value)
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region})


def test_batches_come_back_in_order_with_one_get_per_object(endpoint_environment, aws, s3) -> None:
    for number in range(5):
        s3.put_object(Bucket=BUCKET, Key=f"images/Kiwi/{number}.jpg", Body=f"image {number}".encode())
    uris = [f"s3://{BUCKET}/images/Kiwi/{number}.jpg" for number in range(5)]
    aws.requests.clear()

    contents = list(Fetcher(threads=4).prefetched([uris[:2], uris[2:]]))

    assert contents == [[b"image 0", b"image 1"], [b"image 2", b"image 3", b"image 4"]]
    assert sorted((r.method, r.path) for r in aws.requests) == sorted(("GET", u.removeprefix("s3:/")) for u in uris)


def test_an_object_gone_since_the_listing_is_a_reject_reason(endpoint_environment) -> None:
    gone = Fetcher().submit(f"s3://{BUCKET}/images/Kiwi/deleted.jpg").result()

    assert isinstance(gone, ImageRejectedError)
    assert str(gone) == GONE_REASON


def test_local_files_are_read_by_path_or_file_uri(tmp_path: Path) -> None:
    image = tmp_path / "Apple Red 1" / "r 0.jpg"
    image.parent.mkdir()
    image.write_bytes(b"jpeg")

    contents = list(Fetcher().prefetched([[str(image), f"file:{image}", f"file://{image}"]]))

    assert contents == [[b"jpeg", b"jpeg", b"jpeg"]]


def test_an_unreachable_endpoint_is_a_fetch_error_naming_the_object(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")

    with pytest.raises(FetchError, match=rf"s3://{BUCKET}/images/k\.jpg cannot be read \(.*127\.0\.0\.1:{port}"):
        Fetcher().submit(f"s3://{BUCKET}/images/k.jpg").result()


@pytest.fixture
def five_failed_attempts(endpoint_environment, aws: EmbeddedAws, s3) -> Iterator[str]:
    """An image whose every GET fails with 503 SlowDown or 500 InternalError as many times as botocore's
    default retries allow, in a row; returns its URI."""
    s3.put_object(Bucket=BUCKET, Key="images/Kiwi/busy.jpg", Body=b"busy kiwi")
    plan = FailedAttempts(at=f"GET /{BUCKET}/images/Kiwi/busy.jpg", attempts=BOTOCORE_DEFAULT_ATTEMPTS)
    aws.faults = FaultPlan(seed=26, failed_attempts=plan)
    yield f"s3://{BUCKET}/images/Kiwi/busy.jpg"
    aws.faults = FaultPlan()


def test_the_fetch_outlasts_more_consecutive_5xx_than_botocore_s_default_retries(five_failed_attempts, aws) -> None:
    content = Fetcher().submit(five_failed_attempts).result()

    assert content == b"busy kiwi"
    assert len([fault for fault in aws.injected if fault.kind == "s3 error"]) >= BOTOCORE_DEFAULT_ATTEMPTS


def test_botocore_s_default_retries_give_up_on_the_same_5xx(five_failed_attempts) -> None:
    """The control of the test above: without the fetch's own retry setting, the image could not be read."""
    with pytest.raises(ClientError, match=r"SlowDown|InternalError"):
        boto3.client("s3").get_object(Bucket=BUCKET, Key="images/Kiwi/busy.jpg")


def test_the_driver_finds_the_fetch_error_in_a_failed_task_s_text() -> None:
    task_failure = (
        "py4j.protocol.Py4JJavaError: An error occurred while calling o153.count.\n"
        "org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
        '  File "fetch.py", line 110, in _get_object\n'
        "fruits_spark.fetch.FetchError: s3://b/images/k.jpg cannot be read (AccessDenied: Access Denied)\n"
    )

    assert fetch_failure(Exception(task_failure)) == "s3://b/images/k.jpg cannot be read (AccessDenied: Access Denied)"
    assert fetch_failure(Exception("java.lang.OutOfMemoryError: Java heap space")) is None
