"""Build the Spark job artifacts that a cluster runs: the entry scripts and the `--py-files` zip.

The zip is byte-for-byte deterministic (sorted entries, fixed timestamps, no caches), so its content
hash names a version: two DAG runs on the same code stage the same artifacts, and a code change
always stages new ones. The bootstrap action and its requirements are part of the hash, since the
cluster runs them too.

``upload_artifacts`` uploads one version to ``s3://BUCKET/artifacts/<version>/``, the prefix the steps
and the bootstrap action read, so that a run always executes the code of the DAG version that started
it. The wheels the bootstrap installs are not part of it: they are the lock's wheelhouses, one per
architecture (fruits_airflow.wheelhouse), shared by every version of the same lock.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from botocore.client import BaseClient

from fruits_airflow.paths import ARTIFACTS_PREFIX
from fruits_airflow.s3_objects import head, same_content, upload_file
from fruits_airflow.wheelhouse import ARCHES, WHEELHOUSE_PREFIX, wheelhouse_key

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# A hosted Airflow gets the plugins folder alone, so `make bundle` (tools/bundle.py) packs spark_jobs/ and
# bootstrap/ into this package, in bundled/; in the repository they are beside plugins/.
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
SOURCES_ROOT = BUNDLED_DIR if BUNDLED_DIR.is_dir() else REPO_ROOT
SPARK_JOBS_DIR = SOURCES_ROOT / "spark_jobs"
PACKAGE_NAME = "fruits_spark"
# The module the jobs share with the Airflow side; zipped beside the package.
CONTRACT_MODULE = "fruits_contract.py"
ENTRY_SCRIPTS = ("extract_features.py", "pca.py")
BOOTSTRAP_DIR = SOURCES_ROOT / "bootstrap"
BOOTSTRAP_SCRIPT = "install_python_deps.sh"
BOOTSTRAP_REQUIREMENTS = "requirements.txt"
# The primary node's: the same pins plus TensorFlow, which only the driver needs (to compile the model).
BOOTSTRAP_PRIMARY_REQUIREMENTS = "requirements-primary.txt"
# The installer (uv) the bootstrap installs first, from the wheelhouse, with its hashes.
BOOTSTRAP_INSTALLER_REQUIREMENTS = "requirements-installer.txt"
_FIXED_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class SparkArtifacts:
    """Local files to stage for one version of the Spark jobs.

    :param py_files_zip: the zip passed to spark-submit with ``--py-files``.
    :param entry_scripts: the scripts spark-submit runs, by file name.
    :param version: a short content hash of all of these files.
    :param bootstrap_files: the bootstrap action and its requirements, by file name.
    :param wheelhouse_keys: the content key of the requirements' wheelhouse, per architecture.
    """

    py_files_zip: Path
    entry_scripts: dict[str, Path]
    version: str
    bootstrap_files: dict[str, Path] = field(default_factory=dict)
    wheelhouse_keys: dict[str, str] = field(default_factory=dict)

    def files(self) -> dict[str, Path]:
        """Every file to stage, by its key under the version's prefix."""
        bootstrap = {f"bootstrap/{name}": path for name, path in self.bootstrap_files.items()}
        return {self.py_files_zip.name: self.py_files_zip, **self.entry_scripts, **bootstrap}


@dataclass(frozen=True)
class StagedArtifacts:
    """The S3 URIs of one staged version, as the cluster request and the steps need them.

    :param version: the content hash naming the version.
    :param prefix_uri: ``s3://BUCKET/artifacts/<version>/``.
    :param py_files_uri: the ``--py-files`` zip.
    :param scripts: the entry scripts' URIs by file name (``extract_features.py``, ``pca.py``).
    :param bootstrap_script_uri: the bootstrap action.
    :param bootstrap_requirements_uri: the pinned requirements the bootstrap action installs on core and
        task nodes.
    :param bootstrap_primary_requirements_uri: those it installs on the primary node (TensorFlow too).
    :param bootstrap_installer_requirements_uri: the installer's (uv), which it installs first.
    :param wheelhouse_uris: per architecture (``x86_64``, ``aarch64``), ``s3://BUCKET/artifacts/wheelhouse/<key>/``,
        where a node of that architecture takes every wheel from.
    """

    version: str
    prefix_uri: str
    py_files_uri: str
    scripts: dict[str, str]
    bootstrap_script_uri: str
    bootstrap_requirements_uri: str
    bootstrap_primary_requirements_uri: str
    bootstrap_installer_requirements_uri: str
    wheelhouse_uris: dict[str, str]


def _package_files(package_dir: Path) -> list[Path]:
    return sorted(
        path
        for path in package_dir.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def build_py_files_zip(dest: Path, spark_jobs_dir: Path = SPARK_JOBS_DIR) -> Path:
    """Zip the ``fruits_spark`` package and the contract module, importable from the zip as they are here."""
    package_dir = spark_jobs_dir / PACKAGE_NAME
    if not (package_dir / "__init__.py").is_file():
        raise FileNotFoundError(f"no Python package at {package_dir}: is this a full checkout?")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in [spark_jobs_dir / CONTRACT_MODULE, *_package_files(package_dir)]:
            info = zipfile.ZipInfo(str(path.relative_to(spark_jobs_dir)), date_time=_FIXED_TIMESTAMP)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return dest


def build_spark_artifacts(
    out_dir: Path, spark_jobs_dir: Path = SPARK_JOBS_DIR, bootstrap_dir: Path = BOOTSTRAP_DIR
) -> SparkArtifacts:
    """Build the zip into ``out_dir`` and hash it together with the entry scripts and the bootstrap."""
    py_files_zip = build_py_files_zip(out_dir / f"{PACKAGE_NAME}.zip", spark_jobs_dir)
    entry_scripts = {name: spark_jobs_dir / name for name in ENTRY_SCRIPTS}
    bootstrap_files = {
        name: bootstrap_dir / name
        for name in (
            BOOTSTRAP_SCRIPT,
            BOOTSTRAP_REQUIREMENTS,
            BOOTSTRAP_PRIMARY_REQUIREMENTS,
            BOOTSTRAP_INSTALLER_REQUIREMENTS,
        )
    }
    missing = [str(path) for path in (*entry_scripts.values(), *bootstrap_files.values()) if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"missing artifact files {', '.join(missing)}: is this a full checkout?")
    digest = hashlib.sha256(py_files_zip.read_bytes())
    for name, path in sorted({**entry_scripts, **bootstrap_files}.items()):
        digest.update(name.encode())
        digest.update(path.read_bytes())
    keys = {arch: wheelhouse_key(bootstrap_dir, arch) for arch in ARCHES}
    return SparkArtifacts(py_files_zip, entry_scripts, digest.hexdigest()[:12], bootstrap_files, keys)


def upload_artifacts(s3_client: BaseClient, bucket: str, artifacts: SparkArtifacts) -> StagedArtifacts:
    """Upload one version to ``s3://bucket/artifacts/<version>/``, skipping the files already there.

    The version is a content hash, so an object already at its key should hold the same bytes; its
    size and ETag are still compared, so that a partial or foreign object is replaced, not trusted.
    """
    prefix = f"{ARTIFACTS_PREFIX}{artifacts.version}/"
    uploaded = 0
    for name, path in artifacts.files().items():
        key = f"{prefix}{name}"
        remote = head(s3_client, bucket, key)
        if remote is not None and same_content(path, path.stat().st_size, *remote):
            continue
        upload_file(s3_client, path, bucket, key)
        uploaded += 1
    prefix_uri = f"s3://{bucket}/{prefix}"
    log.info(
        "Artifacts version %s at %s: %d of %d file(s) uploaded, the others were already there",
        artifacts.version,
        prefix_uri,
        uploaded,
        len(artifacts.files()),
    )
    return StagedArtifacts(
        version=artifacts.version,
        prefix_uri=prefix_uri,
        py_files_uri=f"{prefix_uri}{artifacts.py_files_zip.name}",
        scripts={name: f"{prefix_uri}{name}" for name in artifacts.entry_scripts},
        bootstrap_script_uri=f"{prefix_uri}bootstrap/{BOOTSTRAP_SCRIPT}",
        bootstrap_requirements_uri=f"{prefix_uri}bootstrap/{BOOTSTRAP_REQUIREMENTS}",
        bootstrap_primary_requirements_uri=f"{prefix_uri}bootstrap/{BOOTSTRAP_PRIMARY_REQUIREMENTS}",
        bootstrap_installer_requirements_uri=f"{prefix_uri}bootstrap/{BOOTSTRAP_INSTALLER_REQUIREMENTS}",
        wheelhouse_uris={
            arch: f"s3://{bucket}/{WHEELHOUSE_PREFIX}{key}/" for arch, key in artifacts.wheelhouse_keys.items()
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the --py-files zip of the Spark jobs.")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist", help="output folder")
    artifacts = build_spark_artifacts(parser.parse_args().out)
    print(f"{artifacts.py_files_zip} (version {artifacts.version})")


if __name__ == "__main__":
    main()
