"""S3 objects as the Airflow side sees them: listings, lookups, and uploads that can tell, without
downloading, whether S3 already holds a file's exact content.

S3 reports an object's ETag: the MD5 of its bytes for a single-part upload, or the MD5 of its parts'
MD5s plus ``-<parts>`` for a multipart one. Uploading with a fixed part size lets us compute the same
value locally, so "same size and same ETag" means "same content". (Objects encrypted with SSE-KMS have
opaque ETags: on such a bucket every comparison fails, and files are uploaded again.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from fruits_airflow.aws_codes import code_of

# What S3 answers, depending on the call, for a key or bucket that is not there.
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
PART_SIZE = 8 * 1024 * 1024
# No threads inside one transfer: the callers parallelize across files, and the part size stays fixed.
TRANSFER_CONFIG = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, use_threads=False)


def local_etag(path: Path, size: int | None = None) -> str:
    """The ETag S3 gives ``path`` when it is uploaded with ``TRANSFER_CONFIG``."""
    size = path.stat().st_size if size is None else size
    part_md5s = []
    with path.open("rb") as file:
        while chunk := file.read(PART_SIZE):
            part_md5s.append(hashlib.md5(chunk, usedforsecurity=False))
    if size < PART_SIZE:
        return (part_md5s[0] if part_md5s else hashlib.md5(b"", usedforsecurity=False)).hexdigest()
    combined = hashlib.md5(b"".join(md5.digest() for md5 in part_md5s), usedforsecurity=False)
    return f"{combined.hexdigest()}-{len(part_md5s)}"


def same_content(path: Path, size: int, remote_size: int, remote_etag: str) -> bool:
    """Whether a local file of ``size`` bytes matches an object's size and (quoted) ETag."""
    return size == remote_size and local_etag(path, size) == remote_etag.strip('"')


def upload_file(s3_client: BaseClient, path: Path, bucket: str, key: str) -> None:
    """Upload with the part size that ``local_etag`` assumes."""
    s3_client.upload_file(str(path), bucket, key, Config=TRANSFER_CONFIG)


@dataclass(frozen=True)
class S3Object:
    """One listed object: its key, size in bytes and (quoted) ETag."""

    key: str
    size: int
    etag: str


def is_not_found(error: ClientError) -> bool:
    """Whether a call failed because its key (or bucket) does not exist, rather than for any other reason."""
    return code_of(error) in NOT_FOUND_CODES


def list_objects(s3_client: BaseClient, bucket: str, prefix: str) -> Iterator[S3Object]:
    """Every object under ``prefix``, through as many ``ListObjectsV2`` pages as it takes."""
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield S3Object(item["Key"], item["Size"], item["ETag"])


def read_object(s3_client: BaseClient, bucket: str, key: str, max_bytes: int | None = None) -> bytes | None:
    """An object's bytes, or None when there is no such object or it is larger than ``max_bytes``."""
    try:
        response = s3_client.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if is_not_found(error):
            return None
        raise
    if max_bytes is not None and response["ContentLength"] > max_bytes:
        return None
    return response["Body"].read()


def head(s3_client: BaseClient, bucket: str, key: str) -> tuple[int, str] | None:
    """An object's size and ETag, or None when there is no such object."""
    try:
        response = s3_client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if is_not_found(error):
            return None
        raise
    return response["ContentLength"], response["ETag"]
