from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from fruits_airflow import artifacts
from fruits_airflow.artifacts import BOOTSTRAP_DIR, build_spark_artifacts, upload_artifacts


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path]:
    """A minimal copy of spark_jobs/ and bootstrap/ that tests may edit."""
    spark_jobs = tmp_path / "spark_jobs"
    (spark_jobs / "fruits_spark" / "__pycache__").mkdir(parents=True)
    (spark_jobs / "fruits_spark" / "__init__.py").write_text('"""Jobs."""\n')
    (spark_jobs / "fruits_spark" / "pca.py").write_text("K = 1\n")
    (spark_jobs / "fruits_spark" / "__pycache__" / "pca.cpython-311.pyc").write_bytes(b"cache")
    (spark_jobs / "fruits_contract.py").write_text("PCA_COLUMN = 'pca_features'\n")
    (spark_jobs / "extract_features.py").write_text("from fruits_spark import extract_features\n")
    (spark_jobs / "pca.py").write_text("from fruits_spark import pca\n")
    bootstrap = shutil.copytree(BOOTSTRAP_DIR, tmp_path / "bootstrap")
    return spark_jobs, bootstrap


def build(tmp_path: Path, sources: tuple[Path, Path], out: str = "out") -> artifacts.SparkArtifacts:
    spark_jobs, bootstrap = sources
    return build_spark_artifacts(tmp_path / out, spark_jobs, bootstrap)


def test_the_zip_holds_the_contract_and_the_package_without_caches(tmp_path, sources):
    built = build(tmp_path, sources)

    names = zipfile.ZipFile(built.py_files_zip).namelist()
    assert names == ["fruits_contract.py", "fruits_spark/__init__.py", "fruits_spark/pca.py"]


def test_the_same_code_gets_the_same_version(tmp_path, sources):
    assert build(tmp_path, sources, "a").version == build(tmp_path, sources, "b").version


@pytest.mark.parametrize(
    "edit",
    [
        lambda jobs, boot: (jobs / "fruits_spark" / "pca.py").write_text("K = 2\n"),
        lambda jobs, boot: (jobs / "fruits_contract.py").write_text("PCA_COLUMN = 'pca'\n"),
        lambda jobs, boot: (jobs / "pca.py").write_text("from fruits_spark import pca  # v2\n"),
        lambda jobs, boot: (boot / "install_python_deps.sh").write_text("#!/usr/bin/env bash\necho v2\n"),
        lambda jobs, boot: (boot / "requirements.txt").write_text("numpy==1.0\n"),
        lambda jobs, boot: (boot / "requirements-primary.txt").write_text("numpy==1.0\n"),
        lambda jobs, boot: (boot / "requirements-installer.txt").write_text("uv==1.0\n"),
    ],
    ids=[
        "package",
        "contract",
        "entry_script",
        "bootstrap_script",
        "bootstrap_requirements",
        "bootstrap_primary_requirements",
        "bootstrap_installer_requirements",
    ],
)
def test_a_code_change_gets_a_new_version(tmp_path, sources, edit):
    before = build(tmp_path, sources, "before").version
    edit(*sources)

    assert build(tmp_path, sources, "after").version != before


def test_a_missing_entry_script_is_named(tmp_path, sources):
    (sources[0] / "pca.py").unlink()

    with pytest.raises(FileNotFoundError, match=r"pca\.py"):
        build(tmp_path, sources)


def test_staging_puts_every_file_under_the_version_prefix(s3, bucket, tmp_path, sources):
    built = build(tmp_path, sources)

    staged = upload_artifacts(s3, bucket, built)

    prefix = f"artifacts/{built.version}/"
    listed = sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"])
    assert listed == [
        f"{prefix}bootstrap/install_python_deps.sh",
        f"{prefix}bootstrap/requirements-installer.txt",
        f"{prefix}bootstrap/requirements-primary.txt",
        f"{prefix}bootstrap/requirements.txt",
        f"{prefix}extract_features.py",
        f"{prefix}fruits_spark.zip",
        f"{prefix}pca.py",
    ]
    assert staged.prefix_uri == f"s3://{bucket}/{prefix}"
    assert staged.py_files_uri == f"s3://{bucket}/{prefix}fruits_spark.zip"
    assert staged.scripts == {
        "extract_features.py": f"s3://{bucket}/{prefix}extract_features.py",
        "pca.py": f"s3://{bucket}/{prefix}pca.py",
    }
    assert staged.bootstrap_script_uri == f"s3://{bucket}/{prefix}bootstrap/install_python_deps.sh"
    assert staged.bootstrap_requirements_uri == f"s3://{bucket}/{prefix}bootstrap/requirements.txt"
    assert staged.bootstrap_primary_requirements_uri == f"s3://{bucket}/{prefix}bootstrap/requirements-primary.txt"
    assert staged.bootstrap_installer_requirements_uri == f"s3://{bucket}/{prefix}bootstrap/requirements-installer.txt"
    assert staged.wheelhouse_uris == {
        arch: f"s3://{bucket}/artifacts/wheelhouse/{built.wheelhouse_keys[arch]}/" for arch in ("x86_64", "aarch64")
    }


@pytest.fixture
def counted_uploads(monkeypatch) -> list[str]:
    keys: list[str] = []
    real_upload = artifacts.upload_file

    def counting_upload(client, path, bucket, key):
        keys.append(key)
        real_upload(client, path, bucket, key)

    monkeypatch.setattr(artifacts, "upload_file", counting_upload)
    return keys


def test_staging_the_same_version_again_uploads_nothing(s3, bucket, tmp_path, sources, counted_uploads):
    first = upload_artifacts(s3, bucket, build(tmp_path, sources, "a"))
    uploads_of_first_run = len(counted_uploads)

    second = upload_artifacts(s3, bucket, build(tmp_path, sources, "b"))

    assert uploads_of_first_run == 7
    assert len(counted_uploads) == 7
    assert second == first


def test_staging_replaces_a_damaged_object(s3, bucket, tmp_path, sources, counted_uploads):
    built = build(tmp_path, sources)
    upload_artifacts(s3, bucket, built)
    s3.put_object(Bucket=bucket, Key=f"artifacts/{built.version}/pca.py", Body=b"truncat")

    upload_artifacts(s3, bucket, built)

    assert counted_uploads[len(built.files()) :] == [f"artifacts/{built.version}/pca.py"]
    body = s3.get_object(Bucket=bucket, Key=f"artifacts/{built.version}/pca.py")["Body"].read()
    assert body == (sources[0] / "pca.py").read_bytes()


def test_a_code_change_is_staged_under_a_new_prefix(s3, bucket, tmp_path, sources):
    first = upload_artifacts(s3, bucket, build(tmp_path, sources, "a"))
    (sources[0] / "fruits_spark" / "pca.py").write_text("K = 3\n")

    second = upload_artifacts(s3, bucket, build(tmp_path, sources, "b"))

    assert second.prefix_uri != first.prefix_uri
    assert s3.list_objects_v2(Bucket=bucket, Prefix=first.prefix_uri.split("/", 3)[3])["KeyCount"] == 7
