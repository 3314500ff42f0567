"""The nodes' wheelhouse: every wheel the bootstrap action installs, from the pipeline's bucket, never an index.

The lock's exports (bootstrap/requirements*.txt) pin each package with its files' hashes. The wheelhouse
holds, for one lock and one platform (CPython 3.11 manylinux, as on EMR 7's Amazon Linux 2023, on x86_64
or on Graviton's aarch64), the exact wheels of those pins, in uncompressed tars (wheels are compressed
already):

    s3://BUCKET/artifacts/wheelhouse/<key>/nodes.tar      the lean nodes' wheels, and the installer (uv)
    s3://BUCKET/artifacts/wheelhouse/<key>/compiler.tar   what the primary adds to compile the model (TensorFlow)

``<key>`` is a hash of the three requirements files and the platform: a new lock or another architecture
is a new wheelhouse, and a node never installs a wheel its lock does not pin (the installers check every
wheel's hash against the requirements file staged with the run's artifacts). The aarch64 wheelhouse has
no compiler layer: the lock's ``tensorflow-cpu`` has x86_64 wheels only, so an aarch64 node never gets
TensorFlow (a Graviton primary runs only with the model cached). ``tools/wheelhouse.py`` builds one per
lock and architecture from PyPI (``make install`` builds x86_64's into ``default_local_dir()``), the only
step that reaches the index; ``ensure_published`` uploads a local build that the bucket lacks, or says how
to publish one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from botocore.client import BaseClient

from fruits_airflow.paths import ARTIFACTS_PREFIX
from fruits_airflow.s3_objects import head, same_content, upload_file

log = logging.getLogger(__name__)

WHEELHOUSE_PREFIX = f"{ARTIFACTS_PREFIX}wheelhouse/"
# The nodes' platform: EMR 7 runs Amazon Linux 2023 (glibc 2.34), and the bootstrap's Python 3.11, on x86_64
# or, on Graviton instance types, aarch64 (``uname -m``, which the bootstrap picks its wheelhouse by).
PYTHON_VERSION = "3.11"
ABI = "cp311"
GLIBC = (2, 34)
X86_64, AARCH64 = "x86_64", "aarch64"
ARCHES = (X86_64, AARCH64)
NODES_LAYER, COMPILER_LAYER = "nodes.tar", "compiler.tar"
LAYERS = (NODES_LAYER, COMPILER_LAYER)
# tensorflow-cpu, which the primary compiles with, has x86_64 wheels only.
ARCH_LAYERS = {X86_64: LAYERS, AARCH64: (NODES_LAYER,)}
# The lock's exports the wheelhouse is built from, in the order the key hashes them.
INSTALLER_REQUIREMENTS = "requirements-installer.txt"
NODES_REQUIREMENTS = "requirements.txt"
PRIMARY_REQUIREMENTS = "requirements-primary.txt"
REQUIREMENTS = (INSTALLER_REQUIREMENTS, NODES_REQUIREMENTS, PRIMARY_REQUIREMENTS)
# Bumped when the layout (layers, what each holds) changes.
LAYOUT_VERSION = 1
WHEELHOUSE_DIR_ENV = "FRUITS_WHEELHOUSE_DIR"
PUBLISH_COMMAND = "make publish-wheelhouse BUCKET={bucket}"


def platform(arch: str = X86_64) -> str:
    """The wheels' tag of ``arch``'s nodes: ``cp311-manylinux_2_34_x86_64`` or ``..._aarch64``."""
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r}: one of {', '.join(ARCHES)}")
    return f"{ABI}-manylinux_{GLIBC[0]}_{GLIBC[1]}_{arch}"


def publish_command(bucket: str, arch: str = X86_64) -> str:
    """The make command that publishes ``arch``'s wheelhouse (x86_64's needs no ARCH)."""
    command = PUBLISH_COMMAND.format(bucket=bucket)
    return command if arch == X86_64 else f"{command} ARCH={arch}"


class WheelhouseMissingError(Exception):
    """The bucket lacks the lock's wheelhouse and no local build can be uploaded; the message says how."""


def wheelhouse_key(bootstrap_dir: Path, arch: str = X86_64) -> str:
    """The content key of the lock's wheelhouse for ``arch``: its requirements files and the platform (x86_64's
    is the key it had before there was another architecture, so that published wheelhouses stay valid)."""
    digest = hashlib.sha256(f"{platform(arch)} v{LAYOUT_VERSION}".encode())
    for name in REQUIREMENTS:
        digest.update(name.encode())
        digest.update((bootstrap_dir / name).read_bytes())
    return digest.hexdigest()[:16]


def default_local_dir() -> Path:
    """Where builds are kept on this machine: ``$FRUITS_WHEELHOUSE_DIR``, else the user's cache folder."""
    explicit = os.environ.get(WHEELHOUSE_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fruits-pipeline" / "wheelhouse"


@dataclass(frozen=True)
class Wheelhouse:
    """One lock's wheelhouse.

    :param key: its content key (``wheelhouse_key``).
    :param local_dir: the folder of its local build, ``<local root>/<key>/``, which may not exist.
    :param arch: the nodes' architecture, ``x86_64`` or ``aarch64``.
    """

    key: str
    local_dir: Path
    arch: str = X86_64

    @classmethod
    def of(cls, bootstrap_dir: Path, local_root: Path | None = None, arch: str = X86_64) -> Wheelhouse:
        key = wheelhouse_key(bootstrap_dir, arch)
        return cls(key, (local_root or default_local_dir()) / key, arch)

    @property
    def layers(self) -> tuple[str, ...]:
        return ARCH_LAYERS[self.arch]

    @property
    def prefix(self) -> str:
        return f"{WHEELHOUSE_PREFIX}{self.key}/"

    def uri(self, bucket: str) -> str:
        """``s3://bucket/artifacts/wheelhouse/<key>/``, the bootstrap action's first argument."""
        return f"s3://{bucket}/{self.prefix}"

    def built(self) -> bool:
        return all((self.local_dir / layer).is_file() for layer in self.layers)


def ensure_published(s3_client: BaseClient, bucket: str, wheelhouse: Wheelhouse) -> str:
    """Make sure the bucket holds ``wheelhouse``: upload the local build's layers it lacks (or holds other
    bytes of); returns the wheelhouse's URI.

    :raises WheelhouseMissingError: when a layer is missing from the bucket and there is no local build.
    """
    uploaded = 0
    for layer in wheelhouse.layers:
        key = f"{wheelhouse.prefix}{layer}"
        remote = head(s3_client, bucket, key)
        local = wheelhouse.local_dir / layer
        if not wheelhouse.built():
            if remote is None:
                raise WheelhouseMissingError(
                    f"The {wheelhouse.arch} nodes' wheelhouse s3://{bucket}/{key} is missing: publish it once, from "
                    f"a machine with PyPI access and this lock, with `{publish_command(bucket, wheelhouse.arch)}`."
                )
            continue
        if remote is not None and same_content(local, local.stat().st_size, *remote):
            continue
        log.info(
            "Uploading the wheelhouse's %s (%.0f MB) to s3://%s/%s", layer, local.stat().st_size / 1e6, bucket, key
        )
        upload_file(s3_client, local, bucket, key)
        uploaded += 1
    log.info(
        "%s nodes' wheelhouse %s: %d of %d layer(s) uploaded",
        wheelhouse.arch,
        wheelhouse.uri(bucket),
        uploaded,
        len(wheelhouse.layers),
    )
    return wheelhouse.uri(bucket)
