from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fruits_airflow.output_check import OutputCheckError, verify_output
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


def write_manifest(s3, paths: RunPaths, n_features: int | None) -> None:
    """The manifest extract_features writes; ``n_features`` counts the listed images with features."""
    manifest = {"images_digest": "d", "n_images": 9, "n_featurized": 2, "n_reused": 3, "n_features": n_features}
    s3.put_object(Bucket=paths.bucket, Key=paths.manifest_key, Body=json.dumps(manifest).encode())


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
        "separability.json": b'{"status": "ok"}',
    }
    for name, body in files.items():
        if name != skip:
            s3.put_object(Bucket=paths.bucket, Key=f"{paths.report_prefix}{name}", Body=body)


def test_a_consistent_output_passes_with_its_counts(s3, paths):
    write_manifest(s3, paths, 5)
    write_pca(s3, paths, [[K] * 4, [K]])
    write_report(s3, paths, n_images=5)

    summary = verify_output(s3, paths)

    assert (summary.n_features, summary.n_pca_rows, summary.k) == (5, 5, K)


def test_fewer_pca_rows_than_featurized_images_fail(s3, paths):
    write_manifest(s3, paths, 5)
    write_pca(s3, paths, [[K] * 4])
    write_report(s3, paths, n_images=4)

    with pytest.raises(OutputCheckError, match=r"pca/ has 4 rows but .*manifest\.json counts 5 images with features"):
        verify_output(s3, paths)


def test_vectors_of_the_wrong_length_fail(s3, paths):
    write_manifest(s3, paths, 3)
    write_pca(s3, paths, [[K, K, K - 1]])
    write_report(s3, paths, n_images=3)

    with pytest.raises(OutputCheckError, match=rf"k={K} values .* found lengths \[{K - 1}, {K}\]"):
        verify_output(s3, paths)


def test_a_missing_report_file_is_named(s3, paths):
    write_manifest(s3, paths, 3)
    write_pca(s3, paths, [[K] * 3])
    write_report(s3, paths, n_images=3, skip="pca_scatter.png")

    with pytest.raises(OutputCheckError, match=r"report/ lacks pca_scatter\.png"):
        verify_output(s3, paths)


def test_a_report_counting_other_images_fails(s3, paths):
    write_manifest(s3, paths, 3)
    write_pca(s3, paths, [[K] * 3])
    write_report(s3, paths, n_images=4)

    with pytest.raises(OutputCheckError, match=r"n_images=4, but .* has 3 rows"):
        verify_output(s3, paths)


def test_no_pca_output_fails(s3, paths):
    write_manifest(s3, paths, 3)
    write_report(s3, paths, n_images=3)

    with pytest.raises(OutputCheckError, match=r"no parquet files under .*/pca/"):
        verify_output(s3, paths)


def test_the_count_comes_from_the_manifest_not_the_append_only_features(s3, paths):
    # The dataset holds stale rows (moved, removed, rewritten images): only the manifest's count is current.
    s3.put_object(Bucket=paths.bucket, Key=f"{paths.features_prefix}part-00000.parquet", Body=b"not read")
    write_manifest(s3, paths, 2)
    write_pca(s3, paths, [[K] * 2])
    write_report(s3, paths, n_images=2)

    summary = verify_output(s3, paths)

    assert summary.n_features == 2
    assert summary.manifest["n_featurized"] == 2


def test_a_missing_manifest_is_named(s3, paths):
    write_pca(s3, paths, [[K] * 3])
    write_report(s3, paths, n_images=3)

    with pytest.raises(OutputCheckError, match=r"runs/manual__1/manifest\.json is missing"):
        verify_output(s3, paths)


def test_a_manifest_without_a_count_fails(s3, paths):
    write_manifest(s3, paths, None)
    write_pca(s3, paths, [[K] * 3])
    write_report(s3, paths, n_images=3)

    with pytest.raises(OutputCheckError, match=r"manifest\.json has no integer 'n_features'"):
        verify_output(s3, paths)
