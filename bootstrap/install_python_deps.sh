#!/usr/bin/env bash
# EMR bootstrap action: a Python 3.11 virtualenv holding the Spark jobs' pinned requirements, on every node.
#
#   install_python_deps.sh s3://BUCKET/artifacts/<version>/bootstrap/requirements.txt
#
# EMR 7 (Amazon Linux 2023) runs PySpark with Python 3.9; the cluster's spark-env points PYSPARK_PYTHON
# at this virtualenv (NODE_VENV in plugins/fruits_airflow/cluster.py). The virtualenv (TensorFlow
# included) and uv's cache live on /mnt, EMR's first data volume, not on the 15 GiB root volume;
# FRUITS_PIPELINE_HOME moves them. AL2023 ships ensurepip apart from python3.11 (python3.11-pip), so
# both are installed unless ensurepip already works. uv installs exactly the pins of the project's lock.
# Running it again with the same requirements changes nothing. Only dnf and the creation of the home
# folder need root.
set -euo pipefail

readonly HOME_DIR="${FRUITS_PIPELINE_HOME:-/mnt/fruits-pipeline}"
readonly VENV_DIR="$HOME_DIR/venv"
readonly INSTALLER_DIR="$HOME_DIR/installer"
readonly MARKER="$VENV_DIR/.requirements.sha256"
readonly PYTHON=python3.11
readonly UV_VERSION=0.13.8
readonly JOB_IMPORTS="import numpy, pandas, pyarrow, PIL, matplotlib, tensorflow, ai_edge_litert, boto3"
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

main() {
  if [[ $# -ne 1 ]]; then
    log "usage: $0 s3://BUCKET/artifacts/<version>/bootstrap/requirements.txt"
    exit 2
  fi
  local requirements="$WORK_DIR/requirements.txt"
  aws s3 cp --only-show-errors "$1" "$requirements"

  local wanted
  wanted="$(sha256sum "$requirements" | cut -d ' ' -f 1)"
  if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$wanted" ]]; then
    log "$VENV_DIR already has these requirements; nothing to do"
    return 0
  fi

  ensure_python
  ensure_home
  ensure_uv
  local uv="$INSTALLER_DIR/bin/uv"
  if [[ ! -x "$VENV_DIR/bin/python" ]]; then
    "$uv" venv --quiet --clear --python "$PYTHON" "$VENV_DIR"
  fi
  log "installing $(grep -c '==' "$requirements") pinned packages into $VENV_DIR"
  "$uv" pip sync --quiet --python "$VENV_DIR/bin/python" "$requirements"
  "$VENV_DIR/bin/python" -c "$JOB_IMPORTS"
  echo "$wanted" >"$MARKER"
  log "done in ${SECONDS}s: $("$VENV_DIR/bin/python" --version) in $VENV_DIR ($(du -sh "$VENV_DIR" | cut -f 1))"
}

main "$@"
