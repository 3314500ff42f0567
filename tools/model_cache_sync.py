"""The local compiled-model cache and the embedded endpoint's ``s3://BUCKET/artifacts/models/``, kept in step.

A local run of extract_features stores its compiled model in the user cache folder
(fruits_spark.model_cache.default_cache_dir); the DAG's runs use the bucket's cache instead. The demo
and the local Airflow stack copy the local entries into a fresh bucket before a run and the entries a
run compiled back out, so that neither side compiles a model the other already has (~16 s each).
Entries are copied whole, flatbuffer before manifest, so a reader never sees a half entry.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from botocore.client import BaseClient

from fruits_airflow.paths import MODELS_PREFIX

log = logging.getLogger(__name__)


def _entry_order(name: str) -> tuple[bool, str]:
    """Flatbuffers first, manifests last: an entry is visible once its manifest is."""
    return name.endswith(".json"), name


def upload_models(s3: BaseClient, bucket: str, folder: Path) -> int:
    """Copy the entries of ``folder`` the bucket lacks; returns how many files were copied."""
    if not folder.is_dir():
        return 0
    there = _bucket_names(s3, bucket)
    names = sorted((p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")), key=_entry_order)
    copied = [name for name in names if name not in there]
    for name in copied:
        s3.upload_file(str(folder / name), bucket, f"{MODELS_PREFIX}{name}")
    if copied:
        log.info("copied %d compiled-model files from %s to s3://%s/%s", len(copied), folder, bucket, MODELS_PREFIX)
    return len(copied)


def download_models(s3: BaseClient, bucket: str, folder: Path) -> int:
    """Copy the bucket's entries that ``folder`` lacks, each file renamed into place whole."""
    names = sorted(_bucket_names(s3, bucket), key=_entry_order)
    copied = [name for name in names if not (folder / name).exists()]
    for name in copied:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        os.close(handle)
        s3.download_file(bucket, f"{MODELS_PREFIX}{name}", temporary)
        os.replace(temporary, folder / name)
    if copied:
        log.info("copied %d compiled-model files from s3://%s/%s to %s", len(copied), bucket, MODELS_PREFIX, folder)
    return len(copied)


def _bucket_names(s3: BaseClient, bucket: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=MODELS_PREFIX)
    keys = (item["Key"] for page in pages for item in page.get("Contents", []))
    return {key.removeprefix(MODELS_PREFIX) for key in keys if "/" not in key.removeprefix(MODELS_PREFIX)}
