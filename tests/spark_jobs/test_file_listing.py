"""The driver's listing in Python names every file, with its size and time, exactly as Hadoop's does.

Hadoop's own listing (``HadoopFs.list_files``: the local file system, S3A against the embedded
endpoint's S3 API) is the oracle: the features dataset keeps its paths, sizes and times from run to
run, so a listing that named a file differently would have every image featurized again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.client import BaseClient
from pyspark.sql import SparkSession

from fruits_spark.file_listing import list_files
from fruits_spark.storage import FileEntry, HadoopFs
from local_aws import EmbeddedAws

BUCKET = "fruits-listing"
KEYS = [
    "images/Kiwi/1.jpg",
    "images/Kiwi/_hidden.jpg",
    "images/Kiwi/.DS_Store",
    "images/Apple Red 1/with space.JPG",
    "images/Apple Red 1/100%.png",
    "images/Citron/déjà vu.jpeg",
    "images/Banana/more/deep/nested.jpg",
    "images/Empty/",  # a folder marker, as the S3 console makes: not a file
    "images-not-below/Kiwi/1.jpg",  # shares the prefix's first characters, not its folder
]


def listed(entries: Iterator[FileEntry]) -> list[FileEntry]:
    return sorted(entries, key=lambda entry: entry.path)


@pytest.fixture(scope="module")
def fs(spark: SparkSession) -> HadoopFs:
    return HadoopFs(spark)


@pytest.fixture(scope="module")
def local_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("listing")
    for number, key in enumerate(KEYS):
        path = root / key
        if key.endswith("/"):
            path.mkdir(parents=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * number)
        # Sub-millisecond times, which both listings must cut to the same whole millisecond.
        os.utime(path, ns=(1_700_000_000_123_456_789 + number * 999_999, 1_700_000_000_123_456_789 + number * 999_999))
    # A link is followed; a link to nothing is left out, as a file removed while the folder is listed.
    (root / "images" / "Banana" / "linked.jpg").symlink_to(root / "images-not-below" / "Kiwi" / "1.jpg")
    (root / "images" / "Kiwi" / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    return root


@pytest.mark.parametrize("form", ["{root}", "{root}/", "file:{root}", "file://{root}/"])
def test_a_local_folder_lists_as_hadoop_lists_it(fs: HadoopFs, local_tree: Path, form: str) -> None:
    uri = form.format(root=local_tree / "images")

    native = listed(list_files(fs, uri))

    assert native == listed(fs.list_files(str(local_tree / "images")))
    assert len(native) == 8
    assert all(entry.path.startswith(f"file:{local_tree}/images/") for entry in native)


@pytest.fixture(scope="module")
def s3_fs(spark: SparkSession, aws: EmbeddedAws, s3: BaseClient) -> Iterator[HadoopFs]:
    """S3A pointed at the endpoint for this module's bucket only, and the variables boto3 reads."""
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region})
    for number, key in enumerate(KEYS):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x" * number)
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    for name, value in {
        "endpoint": aws.endpoint_url,
        "endpoint.region": aws.region,
        "path.style.access": "true",
        "aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "access.key": "local",
        "secret.key": "local",
    }.items():
        hadoop.set(f"fs.s3a.bucket.{BUCKET}.{name}", value)
    with pytest.MonkeyPatch.context() as environment:
        for name, value in aws.client_environment().items():
            environment.setenv(name, value)
        yield HadoopFs(spark)


@pytest.mark.parametrize("scheme", ["s3", "s3a"])
@pytest.mark.parametrize("folder", ["images", "images/", ""])
def test_an_s3_prefix_lists_as_s3a_lists_it(s3_fs: HadoopFs, scheme: str, folder: str) -> None:
    uri = f"{scheme}://{BUCKET}/{folder}"

    native = listed(list_files(s3_fs, uri))

    assert native == listed(s3_fs.list_files(uri))
    assert len(native) == (7 if folder else 8)
    assert all(entry.path.startswith(f"{scheme}://{BUCKET}/") and entry.modified > 0 for entry in native)


def test_an_s3_listing_of_fewer_than_a_thousand_keys_is_one_request(s3_fs: HadoopFs, aws: EmbeddedAws) -> None:
    aws.requests.clear()

    entries = list(list_files(s3_fs, f"s3://{BUCKET}/images"))

    assert [(r.method, r.path) for r in aws.requests] == [("GET", f"/{BUCKET}")]
    assert len(entries) == 7


def test_a_bucket_that_is_gone_is_an_os_error_naming_s3s_reason(s3_fs: HadoopFs) -> None:
    with pytest.raises(OSError, match="NoSuchBucket"):
        list(list_files(s3_fs, "s3://fruits-listing-no-such-bucket/images"))
