"""S3 listings as AWS answers them in a versioned bucket: no folder of deleted objects only.

Moto's ListObjects(V2) with a delimiter names a common prefix for every key under it, deleted or not:
in a versioned bucket a key whose current version is a delete marker still makes its folder appear.
AWS lists a common prefix only when a current object lies under it. Hadoop's committers list
``_temporary/0/`` that way and read each folder it names, so the phantom folders of deleted task
outputs failed a job here that AWS runs (``FileNotFoundException`` on a ``task_`` folder).
:func:`live_common_prefixes` drops them while the endpoint runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.s3.models import FakeDeleteMarker, S3Backend


def _live_folders(bucket: Any, prefix: str, delimiter: str) -> set[str]:
    folders = set()
    for name, key in bucket.keys.items():
        if isinstance(key, FakeDeleteMarker) or not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        if delimiter in rest:
            folders.add(f"{prefix}{rest.split(delimiter)[0]}{delimiter}")
    return folders


@contextmanager
def live_common_prefixes() -> Iterator[None]:
    """Moto's listings without the common prefixes of deleted objects, until the context exits."""
    original = S3Backend.list_objects

    def list_objects(
        self: S3Backend, bucket: Any, prefix: str | None, delimiter: str | None, *args: Any, **kwargs: Any
    ) -> Any:
        keys, folders, truncated, next_marker = original(self, bucket, prefix, delimiter, *args, **kwargs)
        if delimiter and folders:
            live = _live_folders(bucket, prefix or "", delimiter)
            folders = [folder for folder in folders if folder in live]
        return keys, folders, truncated, next_marker

    S3Backend.list_objects = list_objects
    try:
        yield
    finally:
        S3Backend.list_objects = original
