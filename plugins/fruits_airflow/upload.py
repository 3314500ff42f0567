"""Sync the landing folder ``<label>/<file>`` to ``s3://BUCKET/images/<label>/<file>``: it becomes its mirror.

A file is skipped when an object with its key already has the same size and ETag, so a rerun with
nothing new uploads nothing and a changed file is sent again. Then every image under ``images/`` that
the landing folder no longer has (deleted, or moved to another label) is removed, each removal logged.
The stack's bucket is versioned, so a removed image stays for a while as a noncurrent version, which
can be restored. A landing folder that would remove more than ``max_removal_share`` of the images
(empty, half-mounted) is refused before anything is sent or removed. Files run in parallel, with
progress logged about every tenth of the way.

Files that Spark could not read back are skipped with a warning instead of uploaded: files that are
not images, files not directly inside a label folder, and names Hadoop rejects (``:``) or hides
(leading ``_`` or ``.``).
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePath

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from fruits_airflow.config import DEFAULT_MAX_REMOVAL_SHARE, VARIABLE_KEY
from fruits_airflow.paths import IMAGES_PREFIX
from fruits_airflow.s3_objects import list_objects, same_content, upload_file
from fruits_contract import IMAGE_SUFFIXES, is_hidden_name, is_image_name

log = logging.getLogger(__name__)

UPLOAD_WORKERS = 16
# DeleteObjects takes at most 1,000 keys.
DELETE_BATCH = 1000


class LandingFolderError(Exception):
    """The landing folder cannot be synced as it is; nothing was uploaded or removed. The message says why."""


class RemovalRefusedError(LandingFolderError):
    """The landing folder would remove too many images: likely empty or not mounted; nothing was changed."""


@dataclass(frozen=True)
class SyncResult:
    """What one sync did: files uploaded (new or changed), objects removed, images in the landing folder."""

    uploaded: int
    removed: int
    n_images: int


@dataclass(frozen=True)
class LocalImage:
    """One landing-folder file and its destination key."""

    path: Path
    key: str
    size: int


def skip_reason(relative: PurePath) -> str | None:
    """Why a landing-folder file (``relative`` to the folder) is not uploaded, or None to upload it."""
    if len(relative.parts) != 2:
        return "not directly inside a label folder"
    if not is_image_name(relative.name):
        return f"not an image ({', '.join(IMAGE_SUFFIXES)})"
    if any(":" in part for part in relative.parts):
        return "':' in its path, which Hadoop rejects"
    if any(is_hidden_name(part) for part in relative.parts):
        return "a name starting with '.' or '_', which Hadoop hides"
    return None


def find_images(images_dir: Path) -> list[LocalImage]:
    """The landing folder's images, in a stable order; logs what it skips and why."""
    if not images_dir.is_dir():
        raise FileNotFoundError(
            f"images_dir {images_dir} is not a folder on this worker: fix 'images_dir' in the Variable "
            "fruits_pipeline, or mount the landing folder here."
        )
    images, skipped = [], 0
    try:
        for path in _files(images_dir):
            relative = path.relative_to(images_dir)
            reason = skip_reason(relative)
            if reason:
                skipped += 1
                log.warning("Skipping %s: %s", path, reason)
                continue
            images.append(LocalImage(path, f"{IMAGES_PREFIX}{relative.as_posix()}", path.stat().st_size))
    except OSError as error:
        raise LandingFolderError(
            f"images_dir {images_dir} cannot be read: {error.strerror or error} ({error.filename}); let the worker's "
            "user read the landing folder, or fix 'images_dir' in the Variable fruits_pipeline. Nothing was uploaded."
        ) from None
    log.info("Found %d image(s) in %s (%d other file(s) skipped)", len(images), images_dir, skipped)
    return images


def _files(folder: Path) -> list[Path]:
    """Every file below ``folder``, in order; a folder or file that cannot be read raises, never hides."""

    def fail(error: OSError) -> None:
        raise error

    found = []
    for root, _, names in os.walk(folder, onerror=fail):
        for name in names:
            path = Path(root, name)
            if not path.is_file():
                path.stat()  # a broken link or a loop: raises, naming it
                continue
            found.append(path)
    return sorted(found)


def require_images(images: list[LocalImage], images_dir: Path) -> None:
    """Refuse a landing folder that holds no image to upload: the run would have nothing to featurize."""
    if not images:
        raise LandingFolderError(
            f"images_dir {images_dir} holds no image to upload: put the photos in one folder per label, "
            f"{images_dir}/<label>/<file> ({', '.join(IMAGE_SUFFIXES)}; names starting with '.' or '_' are "
            "hidden). Nothing was uploaded or removed."
        )


def list_uploaded(s3_client: BaseClient, bucket: str, prefix: str = IMAGES_PREFIX) -> dict[str, tuple[int, str]]:
    """Size and ETag of every object under ``prefix``, in one paginated listing."""
    return {obj.key: (obj.size, obj.etag) for obj in list_objects(s3_client, bucket, prefix)}


class _Progress:
    """Logs how far the sync got, about every tenth of the files."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.sent, self.sent_bytes = total, 0, 0, 0
        self.started = time.monotonic()
        self.step = max(1, total // 10)

    def update(self, image: LocalImage, sent: bool) -> None:
        self.done += 1
        if sent:
            self.sent += 1
            self.sent_bytes += image.size
        if self.done % self.step == 0 or self.done == self.total:
            log.info(
                "Checked %d/%d image(s) (%d%%), uploaded %d (%.1f MB) in %.1f s",
                self.done,
                self.total,
                100 * self.done // self.total,
                self.sent,
                self.sent_bytes / 1e6,
                time.monotonic() - self.started,
            )


def to_remove(images: list[LocalImage], uploaded: dict[str, tuple[int, str]], max_share: float) -> list[str]:
    """The image keys under ``images/`` that the landing folder no longer has, in order.

    :raises RemovalRefusedError: when they are more than ``max_share`` of the images in S3.
    """
    wanted = {image.key for image in images}
    remote = [key for key in uploaded if is_image_name(key)]
    gone = sorted(key for key in remote if key not in wanted)
    if gone and len(gone) > max_share * len(remote):
        raise RemovalRefusedError(
            f"The landing folder has {len(images)} image(s) and would remove {len(gone)} of the {len(remote)} "
            f"in images/ ({len(gone) / len(remote):.0%}, above max_removal_share {max_share:g}); nothing was "
            f"uploaded or removed. Check that the landing folder is mounted and complete, or raise "
            f"'max_removal_share' in the Variable {VARIABLE_KEY} if it is meant."
        )
    return gone


def remove_objects(s3_client: BaseClient, bucket: str, keys: list[str]) -> None:
    """Remove ``keys``, logging each; on a versioned bucket each becomes a noncurrent version."""
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        response = s3_client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
        )
        errors = response.get("Errors", [])
        if errors:
            # DeleteObjects answers 200 and lists the keys it could not remove: raised as the error of
            # the first, so that a denied one reads like any other denied call.
            first = errors[0]
            message = f"{first.get('Message')} ({len(errors)} key(s), e.g. s3://{bucket}/{first['Key']})"
            raise ClientError({"Error": {"Code": first.get("Code"), "Message": message}}, "DeleteObjects")
        for key in batch:
            log.info("Removed s3://%s/%s: no longer in the landing folder", bucket, key)


def upload_new_images(
    s3_client: BaseClient,
    images_dir: Path,
    bucket: str,
    *,
    max_removal_share: float = DEFAULT_MAX_REMOVAL_SHARE,
    max_workers: int = UPLOAD_WORKERS,
) -> SyncResult:
    """Make ``s3://bucket/images/`` the landing folder's mirror: upload what is new or changed, remove what is gone.

    :param s3_client: a boto3 S3 client; it is shared by the worker threads (clients are thread-safe).
    :param images_dir: the landing folder, ``<label>/<file>``.
    :param bucket: the destination bucket.
    :param max_removal_share: the largest share of the images in S3 one sync may remove.
    :param max_workers: files checked and uploaded at once.
    :raises RemovalRefusedError: before any change, when the sync would remove more than that.
    :raises LandingFolderError: before any change, when the folder cannot be read or holds no image.
    """
    images = find_images(images_dir)
    uploaded = list_uploaded(s3_client, bucket)
    gone = to_remove(images, uploaded, max_removal_share)
    require_images(images, images_dir)
    progress = _Progress(len(images))

    def sync(image: LocalImage) -> bool:
        remote = uploaded.get(image.key)
        if remote is not None and same_content(image.path, image.size, *remote):
            return False
        upload_file(s3_client, image.path, bucket, image.key)
        return True

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="upload") as pool:
        futures = {pool.submit(sync, image): image for image in images}
        for future in as_completed(futures):
            progress.update(futures[future], future.result())
    log.info(
        "Uploaded %d new or changed image(s) of %d to s3://%s/%s", progress.sent, len(images), bucket, IMAGES_PREFIX
    )
    # Removed after the uploads: an image moved to another label is never missing from S3 meanwhile.
    remove_objects(s3_client, bucket, gone)
    log.info("Removed %d image(s) no longer in the landing folder from s3://%s/%s", len(gone), bucket, IMAGES_PREFIX)
    return SyncResult(progress.sent, len(gone), len(images))
