#!/usr/bin/env bash
# EMR bootstrap action: a Python 3.11 virtualenv holding the Spark jobs' pinned requirements, on every node.
#
#   install_python_deps.sh s3://BUCKET/artifacts/<version>/bootstrap/requirements.txt \
#                          s3://BUCKET/artifacts/<version>/bootstrap/requirements-primary.txt
#
# Lean nodes: the core and task nodes run executors only, which need LiteRT, numpy, pandas, pyarrow,
# pillow and boto3 (requirements.txt). The primary node also runs the driver (client mode), which compiles
# the model with TensorFlow when the model cache misses it: it installs requirements-primary.txt, the
# same pins plus TensorFlow. EMR says which node this is in /mnt/var/lib/info/instance.json ("isMaster":
# true on the primary); FRUITS_PIPELINE_INSTANCE_JSON moves it. Both files come from the project's one
# lock (`make lock`).
#
# EMR 7 (Amazon Linux 2023) runs PySpark with Python 3.9; the cluster's spark-env points PYSPARK_PYTHON
# at this virtualenv (NODE_VENV in plugins/fruits_airflow/cluster.py). The virtualenv and uv's cache live
# on /mnt, EMR's first data volume, not on the 15 GiB root volume; FRUITS_PIPELINE_HOME moves them. AL2023
# ships ensurepip apart from python3.11 (python3.11-pip), so both are installed unless ensurepip already
# works. uv installs exactly the pins of the node's file. Running it again with the same requirements
# changes nothing. Only dnf and the creation of the home folder need root.
set -euo pipefail

readonly HOME_DIR="${FRUITS_PIPELINE_HOME:-/mnt/fruits-pipeline}"
readonly VENV_DIR="$HOME_DIR/venv"
readonly INSTALLER_DIR="$HOME_DIR/installer"
readonly MARKER="$VENV_DIR/.requirements.sha256"
readonly PYTHON=python3.11
readonly UV_VERSION=0.13.8
readonly INSTANCE_JSON="${FRUITS_PIPELINE_INSTANCE_JSON:-/mnt/var/lib/info/instance.json}"
# What the executors import, and the driver's report (matplotlib); the primary compiles with TensorFlow too.
readonly NODE_IMPORTS="import numpy, pandas, pyarrow, PIL, matplotlib, ai_edge_litert, boto3"
readonly PRIMARY_IMPORTS="$NODE_IMPORTS, tensorflow"
# Same filesystem as the virtualenv, so that uv hard-links from its cache instead of copying; a cache
# given in UV_CACHE_DIR (a machine's own, where the node is emulated) is used as it is.
export UV_CACHE_DIR="${UV_CACHE_DIR:-$HOME_DIR/uv-cache}"
export UV_PYTHON_DOWNLOADS=never

WORK_DIR="$(mktemp -d)"
readonly WORK_DIR
trap 'rm -rf "$WORK_DIR"' EXIT

log() {
  echo "[install_python_deps] $*" >&2
}

ensure_python() {
  if ! "$PYTHON" -m ensurepip --version >/dev/null 2>&1; then
    log "installing $PYTHON and python3.11-pip (ensurepip)"
    sudo dnf install -y -q python3.11 python3.11-pip
  fi
}

ensure_home() {
  if [[ ! -d "$HOME_DIR" || ! -w "$HOME_DIR" ]]; then
    sudo install -d -o "$(id -un)" -g "$(id -gn)" "$HOME_DIR"
  fi
}

ensure_uv() {
  if [[ ! -x "$INSTALLER_DIR/bin/uv" ]]; then
    log "installing uv $UV_VERSION into $INSTALLER_DIR"
    "$PYTHON" -m venv --clear "$INSTALLER_DIR"
    "$INSTALLER_DIR/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "uv==$UV_VERSION"
  fi
}

is_primary() {
  if [[ ! -r "$INSTANCE_JSON" ]]; then
    log "cannot tell whether this is the primary node: $INSTANCE_JSON, which EMR writes on every node, is missing"
    exit 1
  fi
  grep -Eq '"isMaster"[[:space:]]*:[[:space:]]*true' "$INSTANCE_JSON"
}

main() {
  if [[ $# -ne 2 ]]; then
    log "usage: $0 NODES_REQUIREMENTS_URI PRIMARY_REQUIREMENTS_URI" \
      "(s3://BUCKET/artifacts/<version>/bootstrap/requirements.txt, .../requirements-primary.txt)"
    exit 2
  fi
  local role="core/task" source="$1" imports="$NODE_IMPORTS"
  if is_primary; then
    role="primary" source="$2" imports="$PRIMARY_IMPORTS"
  fi
  local requirements="$WORK_DIR/requirements.txt"
  aws s3 cp --only-show-errors "$source" "$requirements"

  local wanted
  wanted="$(sha256sum "$requirements" | cut -d ' ' -f 1)"
  if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$wanted" ]]; then
    log "$VENV_DIR already has the $role node's requirements; nothing to do"
    return 0
  fi

  ensure_python
  ensure_home
  ensure_uv
  local uv="$INSTALLER_DIR/bin/uv"
  if [[ ! -x "$VENV_DIR/bin/python" ]]; then
    "$uv" venv --quiet --clear --python "$PYTHON" "$VENV_DIR"
  fi
  log "installing the $role node's $(grep -c '==' "$requirements") pinned packages into $VENV_DIR"
  # --compile-bytecode: every module compiled now (uv writes no .pyc by default), not only those the import
  # check below loads. The executors run as another user than this bootstrap and cannot write the missing
  # ones, so each Python worker would compile them from source again (and where PYTHONDONTWRITEBYTECODE is
  # set, as on the machine that emulates the node, no import writes any).
  "$uv" pip sync --quiet --compile-bytecode --python "$VENV_DIR/bin/python" "$requirements"
  "$VENV_DIR/bin/python" -c "$imports"
  echo "$wanted" >"$MARKER"
  log "done in ${SECONDS}s on the $role node: $("$VENV_DIR/bin/python" --version) in $VENV_DIR ($(du -sh "$VENV_DIR" | cut -f 1))"
}

main "$@"
