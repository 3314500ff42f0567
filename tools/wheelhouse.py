"""Build the nodes' wheelhouse from PyPI, once per lock, and publish it to a pipeline's bucket.

    python -m tools.wheelhouse build                      # make install runs it; quick when built
    python -m tools.wheelhouse publish --bucket BUCKET    # make publish-wheelhouse BUCKET=...
    python -m tools.wheelhouse --arch aarch64 publish --bucket BUCKET
                                                          # make publish-wheelhouse BUCKET=... ARCH=aarch64
    python -m tools.wheelhouse --dir DIR publish --bucket BUCKET --region REGION --endpoint-url URL
                                                          # docker-compose.yaml's local-aws-wheelhouse

``build`` is the only step of the project that asks a package index for the nodes' packages: pip
downloads the exact wheels that bootstrap/requirements-primary.txt and requirements-installer.txt pin,
for the nodes' platform (fruits_airflow.wheelhouse: CPython 3.11, manylinux up to glibc 2.34, x86_64 by
default), checking every hash (``--require-hashes``), and packs them into the layers of
``fruits_airflow.wheelhouse`` under ``$FRUITS_WHEELHOUSE_DIR/<key>/`` (the user's cache folder by
default, shared by every checkout of the same lock). For ``--arch aarch64`` (Graviton) it downloads the
lean nodes' pins only (requirements.txt and the installer's): the lock's ``tensorflow-cpu`` has no
aarch64 wheel, so the aarch64 wheelhouse has no compiler layer. ``publish`` uploads that build to
``s3://BUCKET/artifacts/wheelhouse/<key>/`` with the default AWS credentials (``AWS_PROFILE``...);
``stage_artifacts`` does the same from the Airflow side when it finds a local build.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from fruits_airflow.artifacts import BOOTSTRAP_DIR
from fruits_airflow.wheelhouse import (
    ABI,
    ARCHES,
    COMPILER_LAYER,
    GLIBC,
    INSTALLER_REQUIREMENTS,
    NODES_LAYER,
    NODES_REQUIREMENTS,
    PRIMARY_REQUIREMENTS,
    PYTHON_VERSION,
    X86_64,
    Wheelhouse,
    default_local_dir,
    ensure_published,
)

log = logging.getLogger(__name__)

_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==", re.MULTILINE)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_names(requirements: Path) -> set[str]:
    return {normalized(name) for name in _PIN.findall(requirements.read_text())}


def platforms(arch: str = X86_64) -> list[str]:
    """Every manylinux tag a node with glibc ``GLIBC`` runs, newest first (pip does not infer the older ones);
    manylinux2010 and manylinux1 were never defined for aarch64."""
    major, newest = GLIBC
    tags = [f"manylinux_{major}_{minor}_{arch}" for minor in range(newest, 4, -1)]
    legacy = ("manylinux2014", "manylinux2010", "manylinux1") if arch == X86_64 else ("manylinux2014",)
    return [*tags, *(f"{tag}_{arch}" for tag in legacy)]


def download(bootstrap_dir: Path, dest: Path, arch: str = X86_64) -> None:
    """The pinned wheels of ``arch``'s nodes and the installer, hashes checked, into ``dest``: the primary's
    (TensorFlow included) on x86_64, the lean nodes' on aarch64."""
    requirements = PRIMARY_REQUIREMENTS if arch == X86_64 else NODES_REQUIREMENTS
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--require-hashes",
        "--only-binary=:all:",
        *(argument for tag in platforms(arch) for argument in ("--platform", tag)),
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--abi",
        ABI,
        # backports-strenum declares Requires-Python <3.11, yet ai-edge-litert requires it; the lock pins it
        # and uv installs it, so the wheelhouse must hold it.
        "--ignore-requires-python",
        "--requirement",
        str(bootstrap_dir / requirements),
        "--requirement",
        str(bootstrap_dir / INSTALLER_REQUIREMENTS),
        "--dest",
        str(dest),
    ]
    subprocess.run(command, check=True)


def pack(wheels: list[Path], tar_path: Path) -> None:
    """An uncompressed tar of ``wheels``, sorted and without times or owners, so one lock gives one tar."""
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as archive:
        for wheel in sorted(wheels, key=lambda path: path.name):
            info = archive.gettarinfo(str(wheel), arcname=wheel.name)
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o644
            with wheel.open("rb") as stream:
                archive.addfile(info, stream)


def build(bootstrap_dir: Path = BOOTSTRAP_DIR, local_root: Path | None = None, arch: str = X86_64) -> Wheelhouse:
    """The lock's wheelhouse for ``arch`` on this machine, downloaded and packed unless it already is."""
    wheelhouse = Wheelhouse.of(bootstrap_dir, local_root, arch)
    if wheelhouse.built():
        return wheelhouse
    started = time.monotonic()
    wheelhouse.local_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{wheelhouse.key}.", dir=wheelhouse.local_dir.parent) as temporary:
        wheels_dir, staging = Path(temporary) / "wheels", Path(temporary) / wheelhouse.key
        staging.mkdir()
        download(bootstrap_dir, wheels_dir, arch)
        lean = pinned_names(bootstrap_dir / NODES_REQUIREMENTS) | pinned_names(bootstrap_dir / INSTALLER_REQUIREMENTS)
        wheels = sorted(wheels_dir.glob("*.whl"))
        pack([wheel for wheel in wheels if normalized(wheel.name.split("-")[0]) in lean], staging / NODES_LAYER)
        if COMPILER_LAYER in wheelhouse.layers:
            compiler = [wheel for wheel in wheels if normalized(wheel.name.split("-")[0]) not in lean]
            pack(compiler, staging / COMPILER_LAYER)
        shutil.rmtree(wheelhouse.local_dir, ignore_errors=True)
        staging.rename(wheelhouse.local_dir)
    log.info("wheelhouse %s: %d wheels in %.0f s", wheelhouse.local_dir, len(wheels), time.monotonic() - started)
    return wheelhouse


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Not botocore's "Found credentials in ..." before each publication.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m tools.wheelhouse", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="download and pack the lock's wheels, unless built")
    publish = commands.add_parser("publish", help="build, then upload to s3://BUCKET/artifacts/wheelhouse/<key>/")
    publish.add_argument("--bucket", required=True, help="the pipeline's bucket (the stack's output)")
    publish.add_argument("--region", help="the bucket's region; default: the AWS configuration's")
    publish.add_argument("--endpoint-url", help="an S3 endpoint other than AWS's, e.g. the embedded endpoint")
    parser.add_argument("--dir", type=Path, default=default_local_dir(), help="where builds are kept")
    parser.add_argument("--arch", choices=ARCHES, default=X86_64, help="the nodes' architecture (aarch64: Graviton)")
    args = parser.parse_args(argv)
    try:
        wheelhouse = build(BOOTSTRAP_DIR, args.dir, args.arch)
    except subprocess.CalledProcessError as error:
        print(
            f"wheelhouse: error: pip download failed ({error.returncode}); see its output above, then rerun.",
            file=sys.stderr,
        )
        return 1
    if args.command == "build":
        print(wheelhouse.local_dir)
        return 0
    where = args.endpoint_url or "AWS"
    try:
        s3 = boto3.client("s3", region_name=args.region, endpoint_url=args.endpoint_url)
        print(ensure_published(s3, args.bucket, wheelhouse))
    except EndpointConnectionError:
        print(f"wheelhouse: error: nothing answers at {where}; start it first or fix --endpoint-url", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError, S3UploadFailedError) as error:
        print(f"wheelhouse: error: publishing to s3://{args.bucket} at {where}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
