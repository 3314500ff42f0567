#!/usr/bin/env bash
# EMR bootstrap action: a Python 3.11 virtualenv holding the Spark jobs' pinned requirements, on every node,
# installed from the pipeline's bucket alone: no package index is ever asked.
#
#   install_python_deps.sh --region REGION \
#       --wheelhouse x86_64=s3://BUCKET/artifacts/wheelhouse/<key>/ \
#       [--wheelhouse aarch64=s3://BUCKET/artifacts/wheelhouse/<key>/] \
#       --installer-requirements s3://BUCKET/artifacts/<version>/bootstrap/requirements-installer.txt \
#       --requirements s3://BUCKET/artifacts/<version>/bootstrap/requirements.txt \
#       --primary-requirements s3://BUCKET/artifacts/<version>/bootstrap/requirements-primary.txt
#
#   --region                  the bucket's region (the cluster's). Every `aws s3` call names it: an EMR node's
#                             environment names none, and an AWS CLI given none asks the instance metadata
#                             (CLI v2) or falls back to us-east-1 and S3's global endpoint, which a private
#                             subnet's regional S3 gateway endpoint does not serve.
#   --wheelhouse ARCH=URI     the lock's wheelhouse for one architecture (`uname -m`: x86_64, aarch64), once per
#                             architecture the cluster's instance types have; FRUITS_PIPELINE_ARCH overrides
#                             `uname -m` (tests).
#   --installer-requirements  the installer's pins (uv), installed first.
#   --requirements            the lean nodes' pins: the core and task nodes run executors only, which need
#                             LiteRT, numpy, pandas, pyarrow, pillow and boto3.
#   --primary-requirements    the primary's: it also runs the driver (client mode), which compiles the model
#                             with TensorFlow when the model cache misses it; the DAG passes the same pins
#                             plus TensorFlow (requirements-primary.txt), or the lean ones again when it found
#                             the model cached. TensorFlow's pinned tensorflow-cpu has no aarch64 wheel: an
#                             aarch64 primary takes lean pins only, and fails in one line otherwise.
#
# EMR says which node this is in /mnt/var/lib/info/instance.json ("isMaster": true on the primary);
# FRUITS_PIPELINE_INSTANCE_JSON moves it. All files come from the project's one lock (`make lock`).
#
# The wheels come from the node's architecture's wheelhouse (fruits_airflow.wheelhouse, published once per
# lock and architecture by `make publish-wheelhouse`): nodes.tar (the lean wheels and uv), and compiler.tar
# when the node's requirements pin TensorFlow (x86_64 only). pip installs uv, and uv the node's pins, from
# those wheels only (--no-index), each checked against the hashes of the requirements file. A missing or
# corrupt wheelhouse fails the action in one line saying how to publish it; the installers' own output goes
# to $HOME_DIR/install.log.
#
# EMR 7 (Amazon Linux 2023) runs PySpark with Python 3.9; the cluster's spark-env points PYSPARK_PYTHON
# at this virtualenv (NODE_VENV in plugins/fruits_airflow/cluster.py). The virtualenv, the wheels and uv's
# cache live on /mnt, EMR's first data volume, not on the 15 GiB root volume; FRUITS_PIPELINE_HOME moves
# them. AL2023 ships ensurepip apart from python3.11 (python3.11-pip), so both are installed (from the OS
# repositories, which a private subnet reaches through its S3 endpoint) unless ensurepip already works.
# Running it again with the same requirements changes nothing. Only dnf and the creation of the home
# folder need root.
set -euo pipefail

readonly HOME_DIR="${FRUITS_PIPELINE_HOME:-/mnt/fruits-pipeline}"
readonly VENV_DIR="$HOME_DIR/venv"
readonly INSTALLER_DIR="$HOME_DIR/installer"
readonly WHEELS_DIR="$HOME_DIR/wheels"
readonly INSTALL_LOG="$HOME_DIR/install.log"
readonly MARKER="$VENV_DIR/.requirements.sha256"
readonly INSTALLER_MARKER="$INSTALLER_DIR/.requirements.sha256"
readonly PYTHON=python3.11
readonly INSTANCE_JSON="${FRUITS_PIPELINE_INSTANCE_JSON:-/mnt/var/lib/info/instance.json}"
ARCH="${FRUITS_PIPELINE_ARCH:-$(uname -m)}"
readonly ARCH
readonly PUBLISH="make publish-wheelhouse BUCKET=<the pipeline's bucket> ARCH=$ARCH (tools/wheelhouse.py), from a machine with PyPI access"
readonly USAGE="usage: $0 --region REGION --wheelhouse ARCH=s3://BUCKET/artifacts/wheelhouse/<key>/ [--wheelhouse ...] \
--installer-requirements s3://.../requirements-installer.txt --requirements s3://.../requirements.txt \
--primary-requirements s3://.../requirements-primary.txt"
# What the executors import, and the driver's report (matplotlib); a primary that compiles, TensorFlow too.
readonly NODE_IMPORTS="import numpy, pandas, pyarrow, PIL, matplotlib, ai_edge_litert, boto3"
readonly COMPILER_IMPORTS="$NODE_IMPORTS, tensorflow"
# Same filesystem as the virtualenv, so that uv hard-links from its cache instead of copying.
export UV_CACHE_DIR="${UV_CACHE_DIR:-$HOME_DIR/uv-cache}"
export UV_PYTHON_DOWNLOADS=never UV_OFFLINE=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORK_DIR="$(mktemp -d)"
readonly WORK_DIR
trap 'rm -rf "$WORK_DIR" "$WHEELS_DIR"' EXIT

log() {
  echo "[install_python_deps] $*" >&2
}

usage() {
  log "$1; $USAGE"
  exit 2
}

# Every S3 call names the bucket's region (the header says why).
s3_cp() {
  aws s3 cp --only-show-errors --region "$REGION" "$@"
}

# One line naming the wheelhouse and the fix, never an installer's traceback; exits 3.
wheelhouse_unusable() {
  log "the nodes' wheelhouse $1 $2: publish it with $PUBLISH, then rerun (details: $INSTALL_LOG)"
  exit 3
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

# The layer's wheels, from S3 into $WHEELS_DIR.
fetch_layer() {
  local uri="$1"
  if ! s3_cp "$uri" "$WORK_DIR/layer.tar" >>"$INSTALL_LOG" 2>&1; then
    wheelhouse_unusable "$uri" "cannot be downloaded (missing, or not readable by the nodes' role)"
  fi
  if ! tar -xf "$WORK_DIR/layer.tar" -C "$WHEELS_DIR" >>"$INSTALL_LOG" 2>&1; then
    wheelhouse_unusable "$uri" "is corrupt (not a tar of wheels)"
  fi
  rm -f "$WORK_DIR/layer.tar"
}

ensure_uv() {
  local requirements="$1" wanted
  wanted="$(sha256sum "$requirements" | cut -d ' ' -f 1)"
  if [[ -x "$INSTALLER_DIR/bin/uv" && -f "$INSTALLER_MARKER" && "$(cat "$INSTALLER_MARKER")" == "$wanted" ]]; then
    return 0
  fi
  log "installing uv from the wheelhouse into $INSTALLER_DIR"
  "$PYTHON" -m venv --clear "$INSTALLER_DIR"
  if ! "$INSTALLER_DIR/bin/pip" install --quiet --no-cache-dir --no-index --find-links "$WHEELS_DIR" \
    --require-hashes --requirement "$requirements" >>"$INSTALL_LOG" 2>&1; then
    wheelhouse_unusable "$WHEELHOUSE" "has no uv matching $requirements's hashes"
  fi
  echo "$wanted" >"$INSTALLER_MARKER"
}

is_primary() {
  if [[ ! -r "$INSTANCE_JSON" ]]; then
    log "cannot tell whether this is the primary node: $INSTANCE_JSON, which EMR writes on every node, is missing"
    exit 1
  fi
  grep -Eq '"isMaster"[[:space:]]*:[[:space:]]*true' "$INSTANCE_JSON"
}

# Sets REGION, WHEELHOUSE (this architecture's), INSTALLER_URI, NODES_URI and PRIMARY_URI from the options.
parse_options() {
  local wheelhouse="" option value
  REGION="" INSTALLER_URI="" NODES_URI="" PRIMARY_URI=""
  while [[ $# -gt 0 ]]; do
    option="$1"
    [[ $# -ge 2 ]] || usage "$option needs a value"
    value="$2"
    shift 2
    case "$option" in
      --region) REGION="$value" ;;
      --wheelhouse) [[ "${value%%=*}" != "$ARCH" ]] || wheelhouse="${value#*=}" ;;
      --installer-requirements) INSTALLER_URI="$value" ;;
      --requirements) NODES_URI="$value" ;;
      --primary-requirements) PRIMARY_URI="$value" ;;
      *) usage "unknown option $option" ;;
    esac
  done
  [[ -n "$REGION" ]] || usage "missing --region"
  [[ -n "$INSTALLER_URI" ]] || usage "missing --installer-requirements"
  [[ -n "$NODES_URI" ]] || usage "missing --requirements"
  [[ -n "$PRIMARY_URI" ]] || usage "missing --primary-requirements"
  if [[ -z "$wheelhouse" ]]; then
    log "this node is $ARCH, and the cluster request names no $ARCH wheelhouse (--wheelhouse $ARCH=...):" \
      "publish it with $PUBLISH, then rerun"
    exit 3
  fi
  readonly REGION INSTALLER_URI NODES_URI PRIMARY_URI WHEELHOUSE="${wheelhouse%/}"
}

main() {
  parse_options "$@"
  local role="core/task" source="$NODES_URI"
  if is_primary; then
    role="primary" source="$PRIMARY_URI"
  fi
  local requirements="$WORK_DIR/requirements.txt" installer="$WORK_DIR/requirements-installer.txt"
  s3_cp "$source" "$requirements"
  s3_cp "$INSTALLER_URI" "$installer"

  local wanted imports="$NODE_IMPORTS" layers=(nodes.tar)
  wanted="$(cat "$requirements" "$installer" | sha256sum | cut -d ' ' -f 1)"
  if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$wanted" ]]; then
    log "$VENV_DIR already has the $role node's requirements; nothing to do"
    return 0
  fi
  if grep -Eq '^tensorflow(-cpu)?==' "$requirements"; then
    if [[ "$ARCH" != x86_64 ]]; then
      log "this $ARCH $role node's requirements $source pin TensorFlow, which the lock pins as tensorflow-cpu," \
        "whose wheels are x86_64 only: cache the run's model first (a run with an x86_64 primary compiles it)," \
        "or make the primary x86_64"
      exit 3
    fi
    imports="$COMPILER_IMPORTS" layers+=(compiler.tar)
  fi

  ensure_python
  ensure_home
  : >"$INSTALL_LOG"
  rm -rf "$WHEELS_DIR" && mkdir -p "$WHEELS_DIR"
  local layer started="$SECONDS"
  for layer in "${layers[@]}"; do
    fetch_layer "$WHEELHOUSE/$layer"
  done
  log "fetched $(du -sm "$WHEELS_DIR" | cut -f 1) MB of wheels (${layers[*]}) in $((SECONDS - started))s"
  ensure_uv "$installer"
  local uv="$INSTALLER_DIR/bin/uv"
  if [[ ! -x "$VENV_DIR/bin/python" ]]; then
    "$uv" venv --quiet --clear --python "$PYTHON" "$VENV_DIR"
  fi
  log "installing the $role node's $(grep -c '==' "$requirements") pinned packages into $VENV_DIR" \
    "from $WHEELHOUSE (${layers[*]})"
  # --compile-bytecode: every module compiled now (uv writes no .pyc by default), not only those the import
  # check below loads. The executors run as another user than this bootstrap and cannot write the missing
  # ones, so each Python worker would compile them from source again (and where PYTHONDONTWRITEBYTECODE is
  # set, as on the machine that emulates the node, no import writes any).
  if ! "$uv" pip sync --quiet --compile-bytecode --offline --no-index --find-links "$WHEELS_DIR" --require-hashes \
    --python "$VENV_DIR/bin/python" "$requirements" >>"$INSTALL_LOG" 2>&1; then
    wheelhouse_unusable "$WHEELHOUSE" "does not hold the wheels of $source with their hashes"
  fi
  "$VENV_DIR/bin/python" -c "$imports"
  echo "$wanted" >"$MARKER"
  log "done in ${SECONDS}s on the $role node: $("$VENV_DIR/bin/python" --version) in $VENV_DIR ($(du -sh "$VENV_DIR" | cut -f 1))"
}

main "$@"
