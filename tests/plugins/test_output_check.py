from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fruits_airflow.output_check import OutputCheckError, count_rows, verify_output
from fruits_airflow.paths import RunPaths

K = 7
N_FEATURES = 1280


@pytest.fixture
def paths(bucket) -> RunPaths:
    return RunPaths.for_run(bucket, "manual__1", reprocess_all=False, weights="imagenet")


def put_parquet(s3, bucket: str, key: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def vectors(lengths: list[int], column: str) -> pa.Table:
    return pa.table(
        {
            "path": [f"s3://b/images/Apple/{index}.jpg" for index in range(len(lengths))],
            "label": ["Apple"] * len(lengths),
            column: pa.array([[0.5] * length for length in lengths], type=pa.list_(pa.float32())),
        }
    )


def write_features(s3, paths: RunPaths, counts: list[int]) -> None:
    """A Spark-like dataset: part files, a _SUCCESS marker and a metadata file that is not data."""
    for part, count in enumerate(counts):
        key = f"{paths.features_prefix}part-{part:05d}-abc.snappy.parquet"
        put_parquet(s3, paths.bucket, key, vectors([N_FEATURES] * count, "features"))
    s3.put_object(Bucket=paths.bucket, Key=f"{paths.features_prefix}_SUCCESS", Body=b"")
    s3.put_object(Bucket=paths.bucket, Key=f"{paths.features_prefix}_fruits_model.json", Body=b"{}")


def write_pca(s3, paths: RunPaths, lengths_per_part: list[list[int]]) -> None:
    for part, lengths in enumerate(lengths_per_part):
        put_parquet(s3, paths.bucket, f"{paths.pca_prefix}part-{part:05d}.parquet", vectors(lengths, "pca_features"))
    s3.put_object(Bucket=paths.bucket, Key=paths.pca_success_key, Body=b"")


def write_report(s3, paths: RunPaths, n_images: int, k: int = K, skip: str | None = None) -> None:
    report = {"k": k, "threshold": 0.95, "n_images": n_images, "n_features": N_FEATURES}
    files = {
        "explained_variance.json": json.dumps({**report, "explained_variance_ratio": [], "cumulative": []}).encode(),
        "pca_features.csv": b"path,label,pc1\n",
        "cumulative_variance.png": b"\x89PNG",
        "pca_scatter.png": b"\x89PNG",
    }
    for name, body in files.items():
        if name != skip:
            s3.put_object(Bucket=paths.bucket, Key=f"{paths.report_prefix}{name}", Body=body)


def test_a_consistent_output_passes_with_its_counts(s3, paths):
    write_features(s3, paths, [3, 2])
    write_pca(s3, paths, [[K] * 4, [K]])
    write_report(s3, paths, n_images=5)

    summary = verify_output(s3, paths)

    assert (summary.n_features, summary.n_pca_rows, summary.k) == (5, 5, K)


def test_rows_are_counted_from_every_part_file(s3, paths):
    write_features(s3, paths, [3, 4, 1])

    assert count_rows(s3, paths.bucket, paths.features_prefix) == 8


def test_fewer_pca_rows_than_featurized_images_fail(s3, paths):
    write_features(s3, paths, [3, 2])
    write_pca(s3, paths, [[K] * 4])
    write_report(s3, paths, n_images=4)

    with pytest.raises(OutputCheckError, match=r"pca/ has 4 rows but .*features/imagenet/ has 5 featurized images"):
        verify_output(s3, paths)


def test_vectors_of_the_wrong_length_fail(s3, paths):
    write_features(s3, paths, [3])
    write_pca(s3, paths, [[K, K, K - 1]])
    write_report(s3, paths, n_images=3)

    with pytest.raises(OutputCheckError, match=rf"k={K} values .* found lengths \[{K - 1}, {K}\]"):
        verify_output(s3, paths)


def test_a_missing_report_file_is_named(s3, paths):
    write_features(s3, paths, [3])
    write_pca(s3, paths, [[K] * 3])
    write_report(s3, paths, n_images=3, skip="pca_scatter.png")

    with pytest.raises(OutputCheckError, match=r"report/ lacks pca_scatter\.png"):
        verify_output(s3, paths)


def test_a_report_counting_other_images_fails(s3, paths):
    write_features(s3, paths, [3])
    write_pca(s3, paths, [[K] * 3])
    write_report(s3, paths, n_images=4)

    with pytest.raises(OutputCheckError, match=r"n_images=4, but .* has 3 rows"):
        verify_output(s3, paths)


def test_no_pca_output_fails(s3, paths):
    write_features(s3, paths, [3])
    write_report(s3, paths, n_images=3)

    with pytest.raises(OutputCheckError, match=r"no parquet files under .*/pca/"):
        verify_output(s3, paths)


def test_a_run_with_its_own_features_is_checked_against_them(s3, bucket):
    own = RunPaths.for_run(bucket, "manual__2", reprocess_all=True, weights="imagenet")
    shared = RunPaths.for_run(bucket, "manual__2", reprocess_all=False, weights="imagenet")
    write_features(s3, shared, [10])
    write_features(s3, own, [2])
    write_pca(s3, own, [[K] * 2])
    write_report(s3, own, n_images=2)

    assert verify_output(s3, own).n_features == 2


def test_counting_rows_reads_the_footers_not_the_features(s3, paths, monkeypatch):
    rows = 1000
    noise = np.random.default_rng(0).random((rows, N_FEATURES), dtype=np.float32)
    features = pa.table(
        {"features": pa.FixedSizeListArray.from_arrays(noise.ravel(), N_FEATURES).cast(pa.list_(pa.float32()))}
    )
    key = f"{paths.features_prefix}part-00000.snappy.parquet"
    put_parquet(s3, paths.bucket, key, features)
    size = s3.head_object(Bucket=paths.bucket, Key=key)["ContentLength"]
    fetched = []
    get_object = s3.get_object

    def recording_get_object(**kwargs):
        response = get_object(**kwargs)
        fetched.append(response["ContentLength"])
        return response

    monkeypatch.setattr(s3, "get_object", recording_get_object)

    assert count_rows(s3, paths.bucket, paths.features_prefix) == rows
    assert sum(fetched) < size / 10
