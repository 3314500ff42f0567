"""`make bundle`: the Airflow side as a hosted Airflow takes it (Amazon MWAA, Astronomer, a dags-folder sync).

    python -m tools.bundle [--out dist/airflow]

```
dist/airflow/
  dags/fruits_pipeline.py   dags/, for the environment's dags folder
  plugins.zip               plugins/, to unzip into the environment's plugins folder (MWAA does):
                              fruits_airflow/, fruits_contract.py, run_report_plugin.py, .airflowignore,
                              and fruits_airflow/bundled/{spark_jobs,bootstrap}/, what stage_artifacts uploads
  requirements.txt          requirements-airflow.txt, the Airflow group's export of uv.lock
```

Airflow puts its dags folder and its plugins folder on ``sys.path``, and a hosted Airflow gets those two
folders and a requirements file, nothing beside them. So everything the DAG imports or reads is in one of
them: the contract (plugins/fruits_contract.py, a link to its one home, spark_jobs/fruits_contract.py, is
zipped as the file it points to) and the Spark jobs and bootstrap that ``stage_artifacts`` uploads, packed
where ``fruits_airflow.artifacts`` looks for them first. No startup script is needed: the code reads no
environment variable and installs nothing on the Airflow host.

Reproducible: the same sources give the same bytes. The zip's entries are sorted, dated 1980-01-01 and
given mode 0755 (MWAA's advice: ``chmod -R 755`` before zipping); no ``__pycache__`` nor ``.pyc`` goes in;
the output folder is written afresh each time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path

from fruits_airflow import artifacts

REPO_ROOT = artifacts.REPO_ROOT
DAGS_DIR = REPO_ROOT / "dags"
PLUGINS_DIR = artifacts.BUNDLED_DIR.parents[1]
REQUIREMENTS = REPO_ROOT / "requirements-airflow.txt"
# Where artifacts.py finds the Spark jobs and the bootstrap inside the unzipped plugins folder.
BUNDLED_PATH = artifacts.BUNDLED_DIR.relative_to(PLUGINS_DIR).as_posix()
BUNDLE_ENTRIES = frozenset({"dags", "plugins.zip", "requirements.txt"})
_FIXED_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
_ZIP_MODE = 0o755


class BundleError(Exception):
    """A bundle that cannot be written where asked; the message says what to do."""


def source_files(folder: Path) -> dict[str, Path]:
    """The files under ``folder`` by their POSIX path in it, caches left out; links read as their target."""
    return {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def plugins_zip_files() -> dict[str, Path]:
    """What plugins.zip holds, by name: plugins/, with spark_jobs/ and bootstrap/ under BUNDLED_PATH."""
    files = {name: path for name, path in source_files(PLUGINS_DIR).items() if not name.startswith(f"{BUNDLED_PATH}/")}
    for folder in (artifacts.SPARK_JOBS_DIR, artifacts.BOOTSTRAP_DIR):
        files.update({f"{BUNDLED_PATH}/{folder.name}/{name}": path for name, path in source_files(folder).items()})
    return dict(sorted(files.items()))


def write_zip(dest: Path, files: dict[str, Path]) -> None:
    """A zip whose bytes depend on the files' names and contents alone."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIMESTAMP)
            info.external_attr = _ZIP_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())


def prepare_out(out: Path) -> None:
    """Empty ``out`` if it holds a previous bundle; refuse a folder that holds anything else."""
    if out.exists():
        if not out.is_dir():
            raise BundleError(f"--out {out} is a file; pass a folder for the bundle (default dist/airflow)")
        foreign = sorted(entry.name for entry in out.iterdir() if entry.name not in BUNDLE_ENTRIES)
        if foreign:
            raise BundleError(
                f"--out {out} holds {', '.join(foreign)}, which is no bundle's; pass an empty or new folder"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)


def build_bundle(out: Path) -> dict[str, int]:
    """Write the bundle into ``out``; returns how many files each part holds."""
    prepare_out(out)
    dags = source_files(DAGS_DIR)
    for name, path in dags.items():
        target = out / "dags" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    plugins = plugins_zip_files()
    write_zip(out / "plugins.zip", plugins)
    shutil.copyfile(REQUIREMENTS, out / "requirements.txt")
    return {"dags": len(dags), "plugins.zip": len(plugins)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist" / "airflow", help="the bundle's folder")
    args = parser.parse_args(argv)
    try:
        counts = build_bundle(args.out)
    except BundleError as error:
        print(f"bundle: error: {error}", file=sys.stderr)
        return 2
    size_kb = (args.out / "plugins.zip").stat().st_size / 1024
    print(
        f"{args.out}: dags/ ({counts['dags']} file(s)), plugins.zip ({counts['plugins.zip']} files, "
        f"{size_kb:.0f} kB), requirements.txt"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
