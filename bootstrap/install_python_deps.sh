#!/usr/bin/env bash
# EMR bootstrap action: a Python 3.11 virtualenv holding the Spark jobs' pinned requirements, on every node.
#
#   install_python_deps.sh s3://BUCKET/artifacts/<version>/bootstrap/requirements.txt
#
# EMR 7 runs PySpark with Python 3.9; the cluster's spark-env points PYSPARK_PYTHON at this virtualenv
# (NODE_VENV in plugins/fruits_airflow/cluster.py). The install uses uv, like `make install`, so the
# nodes get exactly the pins of the project's lock. Running it again with the same requirements
# changes nothing.
set -euo pipefail

readonly HOME_DIR="${FRUITS_PIPELINE_HOME:-/opt/fruits-pipeline}"
readonly VENV_DIR="$HOME_DIR/venv"
readonly INSTALLER_DIR="$HOME_DIR/installer"
readonly MARKER="$VENV_DIR/.requirements.sha256"
readonly PYTHON=python3.11
readonly UV_VERSION=0.13.8
readonly JOB_IMPORTS="import numpy, pandas, pyarrow, PIL, matplotlib, tensorflow, ai_edge_litert"

WORK_DIR="$(mktemp -d)"
readonly WORK_DIR
trap 'rm -rf "$WORK_DIR"' EXIT

log() {
  echo "[install_python_deps] $*" >&2
}

ensure_python() {
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    log "installing $PYTHON"
    sudo dnf install -y -q python3.11 python3.11-pip
  fi
}

ensure_uv() {
  if [[ ! -x "$INSTALLER_DIR/bin/uv" ]]; then
    log "installing uv $UV_VERSION into $INSTALLER_DIR"
    sudo "$PYTHON" -m venv "$INSTALLER_DIR"
    sudo "$INSTALLER_DIR/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
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
  ensure_uv
  if [[ ! -x "$VENV_DIR/bin/python" ]]; then
    sudo "$PYTHON" -m venv "$VENV_DIR"
  fi
  log "installing $(grep -c '==' "$requirements") pinned packages into $VENV_DIR"
  sudo "$INSTALLER_DIR/bin/uv" pip sync --quiet --python "$VENV_DIR/bin/python" "$requirements"
  "$VENV_DIR/bin/python" -c "$JOB_IMPORTS"
  echo "$wanted" | sudo tee "$MARKER" >/dev/null
  log "done: $("$VENV_DIR/bin/python" --version) in $VENV_DIR"
}

main "$@"
