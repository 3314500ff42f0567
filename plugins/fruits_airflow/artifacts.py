"""Build the Spark job artifacts that a cluster runs: the entry scripts and the `--py-files` zip.

The zip is byte-for-byte deterministic (sorted entries, fixed timestamps, no caches), so its content
hash names a version: two DAG runs on the same code stage the same artifacts, and a code change
always stages new ones.
"""

from __future__ import annotations

import argparse
import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SPARK_JOBS_DIR = REPO_ROOT / "spark_jobs"
PACKAGE_NAME = "fruits_spark"
ENTRY_SCRIPTS = ("extract_features.py", "pca.py")
_FIXED_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class SparkArtifacts:
    """Local files to stage for one version of the Spark jobs.

    :param py_files_zip: the zip passed to spark-submit with ``--py-files``.
    :param entry_scripts: the scripts spark-submit runs, by file name.
    :param version: a short content hash of all of the above.
    """

    py_files_zip: Path
    entry_scripts: dict[str, Path]
    version: str


def _package_files(package_dir: Path) -> list[Path]:
    return sorted(
        path
        for path in package_dir.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def build_py_files_zip(dest: Path, spark_jobs_dir: Path = SPARK_JOBS_DIR) -> Path:
    """Zip the ``fruits_spark`` package so that ``import fruits_spark`` works from the zip."""
    package_dir = spark_jobs_dir / PACKAGE_NAME
    if not (package_dir / "__init__.py").is_file():
        raise FileNotFoundError(f"no Python package at {package_dir}: is this a full checkout?")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in _package_files(package_dir):
            info = zipfile.ZipInfo(str(path.relative_to(spark_jobs_dir)), date_time=_FIXED_TIMESTAMP)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return dest


def build_spark_artifacts(out_dir: Path, spark_jobs_dir: Path = SPARK_JOBS_DIR) -> SparkArtifacts:
    """Build the zip into ``out_dir`` and hash it together with the entry scripts."""
    py_files_zip = build_py_files_zip(out_dir / f"{PACKAGE_NAME}.zip", spark_jobs_dir)
    entry_scripts = {name: spark_jobs_dir / name for name in ENTRY_SCRIPTS}
    digest = hashlib.sha256(py_files_zip.read_bytes())
    for name, path in entry_scripts.items():
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return SparkArtifacts(py_files_zip, entry_scripts, digest.hexdigest()[:12])


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the --py-files zip of the Spark jobs.")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist", help="output folder")
    artifacts = build_spark_artifacts(parser.parse_args().out)
    print(f"{artifacts.py_files_zip} (version {artifacts.version})")


if __name__ == "__main__":
    main()
