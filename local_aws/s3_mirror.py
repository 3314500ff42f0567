"""A local folder that mirrors the embedded S3: what a step reads and writes, and what survives a restart.

Layout: ``<root>/<bucket>/<key>``, so ``s3://fruits/images/Apple Red 1/r_0.jpg`` is the file
``<root>/fruits/images/Apple Red 1/r_0.jpg``. A prefix with no object under it has no local folder, as
on S3: a job that refuses to overwrite an existing output, or creates it itself, sees what it would see
on a cluster.

Hadoop's local file system writes a ``.<name>.crc`` checksum next to every file it writes. They are an
artefact of running locally, never published to S3, and dropped whenever the file they check is
replaced, so a stale checksum cannot fail a later read.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)

S3_URI = re.compile(r"^s3[an]?://(?P<bucket>[^/]+)/?(?P<key>.*)$", re.DOTALL)
_GLOB_CHARS = re.compile(r"[*?\[{]")
_TRANSFER_THREADS = 8
_DELETE_BATCH = 1000


class MirrorError(Exception):
    """The mirror and S3 cannot be made to agree (missing bucket, a key that is both file and folder)."""


@dataclass(frozen=True, order=True)
class S3Prefix:
    """The objects a URI names: the key itself and everything under ``key/``; ``""`` is the whole bucket."""

    bucket: str
    key: str

    @classmethod
    def from_uri(cls, uri: str) -> S3Prefix:
        """The prefix to stage for a URI; a glob (``images/*/x.jpg``) stages the folder before its first wildcard."""
        match = S3_URI.match(uri)
        if match is None:
            raise ValueError(f"{uri!r} is not an s3:// URI; expected s3://bucket/key.")
        key = match["key"]
        wildcard = _GLOB_CHARS.search(key)
        if wildcard:
            key = key[: wildcard.start()].rpartition("/")[0]
        return cls(match["bucket"], key.strip("/"))

    def contains(self, key: str) -> bool:
        return not self.key or key == self.key or key.startswith(f"{self.key}/")

    def covers(self, other: S3Prefix) -> bool:
        return self.bucket == other.bucket and self.contains(other.key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass
class SyncCounts:
    """What one sync moved, for the logs and for tests that check nothing unchanged was copied."""

    transferred: int = 0
    deleted: int = 0
    unchanged: int = 0

    def add(self, other: SyncCounts) -> None:
        self.transferred += other.transferred
        self.deleted += other.deleted
        self.unchanged += other.unchanged


@dataclass
class StagedPrefixes:
    """The prefixes a step uses and the local files they held when it started (size, mtime)."""

    prefixes: list[S3Prefix]
    files: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    counts: SyncCounts = field(default_factory=SyncCounts)


def local_path(root: Path, uri: str) -> str:
    """The mirror path standing in for an s3:// URI; a trailing slash and any wildcard are kept."""
    match = S3_URI.match(uri)
    if match is None:
        raise ValueError(f"{uri!r} is not an s3:// URI; expected s3://bucket/key.")
    return f"{root / match['bucket']}/{match['key']}"


def _is_checksum(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".crc")


def _drop_checksum(path: Path) -> None:
    (path.parent / f".{path.name}.crc").unlink(missing_ok=True)


def _stat(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _same_content(path: Path | None, remote: dict[str, Any]) -> bool:
    """Compare by MD5 when the ETag is one; a multipart ETag is not, so fall back to size and age."""
    if path is None:
        return False
    size, mtime_ns = _stat(path)
    if size != remote["Size"]:
        return False
    etag = remote["ETag"].strip('"')
    if "-" in etag:
        return mtime_ns / 1e9 >= remote["LastModified"].timestamp()
    return _md5(path) == etag


def _prune_empty_dirs(top: Path) -> None:
    if not top.is_dir():
        return
    for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if not any(top.iterdir()):
        top.rmdir()


def _run_all(action: Callable[[Any], None], items: Iterable[Any]) -> None:
    with ThreadPoolExecutor(max_workers=_TRANSFER_THREADS) as pool:
        for _ in pool.map(action, items):
            pass


class S3Mirror:
    """Two-way sync between the embedded S3 and ``root``, limited to the prefixes a step names.

    :param s3: a boto3 S3 client of the embedded endpoint.
    :param root: the mirror folder, ``<state dir>/s3``.
    :param region: where buckets are re-created by :meth:`restore_all`.
    """

    def __init__(self, *, s3: BaseClient, root: Path, region: str) -> None:
        self._s3 = s3
        self.root = root.absolute()
        self._region = region

    def stage(self, prefixes: Iterable[S3Prefix]) -> StagedPrefixes:
        """Make the mirror of each prefix equal to S3: fetch new and changed objects, drop deleted ones."""
        staged = StagedPrefixes(prefixes=_outermost(prefixes))
        for prefix in staged.prefixes:
            started = time.monotonic()
            counts = self._sync_down(prefix)
            staged.counts.add(counts)
            logger.log(
                logging.INFO if counts.transferred or counts.deleted else logging.DEBUG,
                "mirrored %s: %d downloaded, %d unchanged, %d removed locally in %.1f s",
                prefix,
                counts.transferred,
                counts.unchanged,
                counts.deleted,
                time.monotonic() - started,
            )
            for key, path in self._local_files(prefix).items():
                staged.files[(prefix.bucket, key)] = _stat(path)
            self._make_parent(prefix)
        return staged

    def publish(self, staged: StagedPrefixes) -> SyncCounts:
        """Upload the files a step added or changed under its prefixes and delete the ones it removed."""
        total = SyncCounts()
        for prefix in staged.prefixes:
            started = time.monotonic()
            local = self._local_files(prefix)
            changed = [key for key, path in local.items() if staged.files.get((prefix.bucket, key)) != _stat(path)]
            removed = [
                key
                for bucket, key in staged.files
                if bucket == prefix.bucket and prefix.contains(key) and key not in local
            ]
            _run_all(lambda key, b=prefix.bucket, files=local: self._upload(b, key, files[key]), changed)
            self._delete_objects(prefix.bucket, removed)
            counts = SyncCounts(len(changed), len(removed), len(local) - len(changed))
            total.add(counts)
            logger.log(
                logging.INFO if counts.transferred or counts.deleted else logging.DEBUG,
                "published %s: %d uploaded, %d deleted, %d unchanged in %.1f s",
                prefix,
                counts.transferred,
                counts.deleted,
                counts.unchanged,
                time.monotonic() - started,
            )
        return total

    def save_all(self) -> SyncCounts:
        """Mirror every bucket, so that :meth:`restore_all` can bring the endpoint back after a restart."""
        buckets = {bucket["Name"] for bucket in self._s3.list_buckets().get("Buckets", [])}
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in self.root.iterdir():
            if folder.is_dir() and folder.name not in buckets:
                shutil.rmtree(folder)
        counts = self.stage(S3Prefix(bucket, "") for bucket in sorted(buckets)).counts
        logger.info("saved %d buckets to %s", len(buckets), self.root)
        return counts

    def restore_all(self) -> int:
        """Re-create every bucket found in the mirror and upload its files; returns the object count."""
        if not self.root.is_dir():
            return 0
        count = 0
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            self._create_bucket(folder.name)
            files = self._local_files(S3Prefix(folder.name, ""))
            _run_all(lambda key, b=folder.name, f=files: self._upload(b, key, f[key]), files)
            count += len(files)
            logger.info("restored s3://%s/ with %d objects from %s", folder.name, len(files), folder)
        return count

    def to_s3_uris(self, text: str) -> str:
        """Rewrite mirror paths in a message back to the s3:// URIs the user wrote."""
        return text.replace(f"file:{self.root}/", "s3://").replace(f"{self.root}/", "s3://")

    def _sync_down(self, prefix: S3Prefix) -> SyncCounts:
        remote = self._remote_objects(prefix)
        local = self._local_files(prefix)
        fetch = [key for key, obj in remote.items() if not _same_content(local.get(key), obj)]
        stale = [path for key, path in local.items() if key not in remote]
        try:
            _run_all(lambda key: self._download(prefix.bucket, key), fetch)
        except (NotADirectoryError, IsADirectoryError, FileExistsError) as error:
            raise MirrorError(
                f"{prefix} holds a key that is both an object and a folder ({error.filename}); "
                "a local file system cannot hold both, rename one of them."
            ) from error
        for path in stale:
            path.unlink()
            _drop_checksum(path)
        _prune_empty_dirs(self._local_dir(prefix))
        return SyncCounts(len(fetch), len(stale), len(remote) - len(fetch))

    def _remote_objects(self, prefix: S3Prefix) -> dict[str, dict[str, Any]]:
        objects: dict[str, dict[str, Any]] = {}
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=prefix.bucket, Prefix=prefix.key)
            for page in pages:
                for obj in page.get("Contents", []):
                    if prefix.contains(obj["Key"]) and not obj["Key"].endswith("/"):
                        objects[obj["Key"]] = obj
        except ClientError as error:
            if error.response["Error"]["Code"] == "NoSuchBucket":
                raise MirrorError(f"Bucket {prefix.bucket!r} does not exist; create it first.") from error
            raise
        return objects

    def _make_parent(self, prefix: S3Prefix) -> None:
        """On S3 any prefix of an existing bucket is writable; locally its parent folder must exist."""
        (self.root / prefix.bucket).mkdir(parents=True, exist_ok=True)
        self._local_dir(prefix).parent.mkdir(parents=True, exist_ok=True)

    def _local_dir(self, prefix: S3Prefix) -> Path:
        return self.root / prefix.bucket / prefix.key if prefix.key else self.root / prefix.bucket

    def _local_files(self, prefix: S3Prefix) -> dict[str, Path]:
        top = self._local_dir(prefix)
        bucket_dir = self.root / prefix.bucket
        if top.is_file():
            paths: Iterable[Path] = [top]
        elif top.is_dir():
            paths = (p for p in top.rglob("*") if p.is_file() and not _is_checksum(p))
        else:
            return {}
        return {path.relative_to(bucket_dir).as_posix(): path for path in paths}

    def _download(self, bucket: str, key: str) -> None:
        path = self.root / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_checksum(path)
        self._s3.download_file(bucket, key, str(path))

    def _upload(self, bucket: str, key: str, path: Path) -> None:
        self._s3.upload_file(str(path), bucket, key)

    def _delete_objects(self, bucket: str, keys: list[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start : start + _DELETE_BATCH]]
            self._s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})

    def _create_bucket(self, bucket: str) -> None:
        options = {} if self._region == "us-east-1" else {"LocationConstraint": self._region}
        try:
            self._s3.create_bucket(Bucket=bucket, **({"CreateBucketConfiguration": options} if options else {}))
        except ClientError as error:
            if error.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
                raise


def _outermost(prefixes: Iterable[S3Prefix]) -> list[S3Prefix]:
    """Drop prefixes inside another one, so that nothing is synced twice."""
    kept: list[S3Prefix] = []
    for prefix in sorted(set(prefixes), key=lambda p: (p.bucket, len(p.key), p.key)):
        if not any(outer.covers(prefix) for outer in kept):
            kept.append(prefix)
    return kept
