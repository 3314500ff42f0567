"""Check a run's output before calling it done: one PCA row per current image with features, k values each.

The number of images comes from the manifest ``extract_features`` wrote (``n_features``: the listed
images with features, each once, whatever stale rows the append-only dataset holds); the PCA vectors
are read from their one column with ranged GETs.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from typing import Any

from botocore.client import BaseClient

from fruits_airflow.paths import RunPaths
from fruits_airflow.s3_objects import list_objects, read_object
from fruits_contract import PCA_COLUMN, REPORT_FILES, VARIANCE_REPORT, ManifestKeys, is_hidden_name

log = logging.getLogger(__name__)


class OutputCheckError(Exception):
    """The run's output is incomplete or inconsistent; the message says what and where."""


@dataclass(frozen=True)
class OutputSummary:
    """What the check found, for the log and the task's XCom."""

    n_features: int
    n_pca_rows: int
    k: int
    pca_uri: str
    report_uri: str
    manifest: dict[str, Any]


class _S3RangeFile(io.RawIOBase):
    """A read-only, seekable view of an S3 object that fetches only the byte ranges asked for."""

    def __init__(self, s3_client: BaseClient, bucket: str, key: str, size: int) -> None:
        self._s3, self._bucket, self._key, self._size, self._position = s3_client, bucket, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        end = min(self._position + len(buffer), self._size)
        if end <= self._position:
            return 0
        byte_range = f"bytes={self._position}-{end - 1}"
        data = self._s3.get_object(Bucket=self._bucket, Key=self._key, Range=byte_range)["Body"].read()
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def _parquet_files(s3_client: BaseClient, bucket: str, prefix: str) -> list[tuple[str, int]]:
    """The data files of a Spark parquet dataset: keys ending in .parquet, none hidden (``_``, ``.``)."""
    return [
        (obj.key, obj.size)
        for obj in list_objects(s3_client, bucket, prefix)
        if obj.key.endswith(".parquet") and not is_hidden_name(obj.key.rsplit("/", 1)[-1])
    ]


def _open(s3_client: BaseClient, bucket: str, key: str, size: int) -> Any:
    import pyarrow.parquet as pq  # kept out of DAG parsing

    return pq.ParquetFile(io.BufferedReader(_S3RangeFile(s3_client, bucket, key, size), buffer_size=1 << 20))


def vector_lengths(
    s3_client: BaseClient, bucket: str, prefix: str, column: str = PCA_COLUMN
) -> tuple[int, set[int], int]:
    """Rows, the distinct lengths of the list ``column`` and its null count, across a parquet dataset."""
    import pyarrow.compute as pc  # kept out of DAG parsing

    files = _parquet_files(s3_client, bucket, prefix)
    if not files:
        raise OutputCheckError(f"no parquet files under s3://{bucket}/{prefix}")
    rows, nulls = 0, 0
    lengths: set[int] = set()
    for key, size in files:
        parquet = _open(s3_client, bucket, key, size)
        if column not in parquet.schema_arrow.names:
            raise OutputCheckError(
                f"s3://{bucket}/{key} has no column {column!r} (columns: {parquet.schema_arrow.names})"
            )
        values = parquet.read(columns=[column]).column(column)
        rows += len(values)
        nulls += values.null_count
        lengths.update(length for length in pc.unique(pc.list_value_length(values).drop_null()).to_pylist())
    return rows, lengths, nulls


def _read_report(s3_client: BaseClient, paths: RunPaths) -> dict[str, Any]:
    listed = {
        obj.key.removeprefix(paths.report_prefix) for obj in list_objects(s3_client, paths.bucket, paths.report_prefix)
    }
    missing = [name for name in REPORT_FILES if name not in listed]
    if missing:
        raise OutputCheckError(f"the report at {paths.report_uri} lacks {', '.join(missing)}")
    body = s3_client.get_object(Bucket=paths.bucket, Key=f"{paths.report_prefix}{VARIANCE_REPORT}")["Body"].read()
    report = json.loads(body)
    if not isinstance(report.get("k"), int) or report["k"] < 1:
        raise OutputCheckError(f"{paths.report_uri}{VARIANCE_REPORT} has no positive integer 'k': {report.get('k')!r}")
    return report


def read_manifest(s3_client: BaseClient, paths: RunPaths) -> dict[str, Any]:
    """The run's manifest, written by extract_features."""
    body = read_object(s3_client, paths.bucket, paths.manifest_key)
    if body is None:
        raise OutputCheckError(f"{paths.uri(paths.manifest_key)} is missing: extract_features wrote none")
    manifest = json.loads(body)
    if not isinstance(manifest.get(ManifestKeys.N_FEATURES), int):
        raise OutputCheckError(f"{paths.uri(paths.manifest_key)} has no integer {ManifestKeys.N_FEATURES!r}")
    return manifest


def verify_output(s3_client: BaseClient, paths: RunPaths) -> OutputSummary:
    """Compare the run's PCA output with the images its manifest counts and with its report.

    :raises OutputCheckError: naming the first inconsistency and the S3 location to look at.
    """
    report = _read_report(s3_client, paths)
    k = report["k"]
    manifest = read_manifest(s3_client, paths)
    n_features = manifest[ManifestKeys.N_FEATURES]
    n_pca_rows, lengths, nulls = vector_lengths(s3_client, paths.bucket, paths.pca_prefix)
    if n_pca_rows != n_features:
        raise OutputCheckError(
            f"{paths.pca_uri} has {n_pca_rows} rows but {paths.uri(paths.manifest_key)} counts {n_features} "
            "images with features"
        )
    if nulls or lengths - {k}:
        raise OutputCheckError(
            f"{paths.pca_uri}: every {PCA_COLUMN} vector should have k={k} values (from the report), "
            f"found lengths {sorted(lengths)} and {nulls} missing vector(s)"
        )
    if report.get("n_images") != n_pca_rows:
        raise OutputCheckError(
            f"{paths.report_uri}{VARIANCE_REPORT} says n_images={report.get('n_images')}, "
            f"but {paths.pca_uri} has {n_pca_rows} rows"
        )
    summary = OutputSummary(n_features, n_pca_rows, k, paths.pca_uri, paths.report_uri, manifest)
    log.info(
        "Output checked: %d images with features, %d PCA rows of k=%d values, report at %s",
        n_features,
        n_pca_rows,
        k,
        paths.report_uri,
    )
    return summary


def read_rows(
    s3_client: BaseClient, bucket: str, prefix: str, columns: list[str], limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """The row count and the first ``limit`` rows (``columns`` only) of a parquet dataset; (0, []) when absent."""
    files = _parquet_files(s3_client, bucket, prefix)
    total, rows = 0, list[dict[str, Any]]()
    for key, size in files:
        parquet = _open(s3_client, bucket, key, size)
        total += parquet.metadata.num_rows
        if len(rows) < limit:
            rows += parquet.read(columns=columns).slice(0, limit - len(rows)).to_pylist()
    return total, rows
