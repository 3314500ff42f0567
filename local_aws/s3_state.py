"""The embedded S3's content on disk, so that it survives a restart of the endpoint.

Moto keeps S3 in memory. On a clean stop, :func:`save` writes every bucket's objects to
``<state dir>/s3/``; at the next start :func:`restore` puts them back. Both talk to moto's backend in
this process, not over HTTP: restoring 20,000 images takes seconds, not minutes. Nothing else reads
the folder: steps reach S3 through the endpoint's API, as on EMR.

Layout: ``manifest.json`` maps each bucket (and its region) to its keys, each key to the MD5 of its
content; ``objects/<md5>`` holds each distinct content once. Any key S3 takes can be saved this way,
including directory markers (``features/``) and a key that is also another key's folder
(``a`` and ``a/b``). Only the newest version of each object is kept, with its LastModified (the jobs
and the DAG take it for part of what identifies an image's content, as on S3, where it changes only
when the object is written) and no other metadata; bucket settings (versioning, policies, lifecycle)
are not kept. ``modified`` maps each bucket's keys to their LastModified, ISO 8601.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import FakeKey, S3Backend, s3_backends

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
OBJECTS = "objects"
_FORMAT = 1


@dataclass(frozen=True)
class SavedCounts:
    """What :func:`save` did: objects in all buckets, contents written anew, contents removed."""

    objects: int
    written: int
    removed: int


def backend() -> S3Backend:
    """Moto's S3 of the default account: the one the endpoint serves."""
    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


def save(folder: Path) -> SavedCounts:
    """Write every bucket to ``folder``, writing only contents not saved before."""
    objects_dir = folder / OBJECTS
    objects_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"format": _FORMAT, "buckets": {}}
    written = count = 0
    for name, bucket in sorted(backend().buckets.items()):
        keys: dict[str, str] = {}
        modified: dict[str, str] = {}
        for key in bucket.keys.values():
            if not isinstance(key, FakeKey):  # a delete marker in a versioned bucket
                continue
            value = key.value
            digest = hashlib.md5(value, usedforsecurity=False).hexdigest()
            target = objects_dir / digest
            if not target.exists():
                _write_atomically(target, value)
                written += 1
            keys[key.name] = digest
            modified[key.name] = key.last_modified.isoformat()
        manifest["buckets"][name] = {"region": bucket.region_name, "keys": keys, "modified": modified}
        count += len(keys)
    _write_atomically(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    referenced = {digest for saved in manifest["buckets"].values() for digest in saved["keys"].values()}
    stale = [path for path in objects_dir.iterdir() if path.name not in referenced]
    for path in stale:
        path.unlink()
    logger.info(
        "saved %d buckets, %d objects to %s (%d contents written)", len(manifest["buckets"]), count, folder, written
    )
    return SavedCounts(count, written, len(stale))


def restore(folder: Path) -> int:
    """Re-create the buckets saved in ``folder`` with their objects; returns the number of objects."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return 0
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != _FORMAT:
        raise ValueError(f"{manifest_path} is not a saved S3 state of this version; remove {folder} to start afresh.")
    s3 = backend()
    count = 0
    for name, saved in manifest["buckets"].items():
        if name not in s3.buckets:
            s3.create_bucket(name, saved["region"])
        modified = saved.get("modified", {})
        for key, digest in saved["keys"].items():
            restored = s3.put_object(name, key, (folder / OBJECTS / digest).read_bytes(), disable_notification=True)
            if key in modified:
                restored.last_modified = datetime.fromisoformat(modified[key])
        count += len(saved["keys"])
        logger.info("restored s3://%s/ with %d objects", name, len(saved["keys"]))
    return count


def _write_atomically(path: Path, data: bytes) -> None:
    """A crash mid-save leaves the previous file, never half of one."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
