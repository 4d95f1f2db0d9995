#!/usr/bin/env bash
# Baseline (d) of serve_load.py: MLServer with its MLflow runtime, as MLServer's docs show.
#
# The registered MLflow model (the pyfunc folder) served over the Open Inference Protocol
# (POST /v2/models/adult-income/infer) with MLServer's adaptive batching, from a virtualenv
# of MLServer's own, created on first use: MLServer and its MLflow runtime pinned, plus the
# model's own requirements.txt (the MLflow, torch, pandas and numpy it was saved with), as a
# user installs a model's environment. pip resolves them without a clash, but two of the
# model's packages break MLServer 1.7.1 at run time, so this does what its users do:
# - pandas 3 (the model was saved with 3.1.1): text columns are pandas' new ``str`` dtype,
#   which MLServer's pandas codec cannot encode (KeyError 'O' in ``to_datatype`` on every
#   answer): pandas 2.3.3 instead, the model's other pins kept;
# - uvloop 0.22 (Oct 2025) breaks its inference workers ("There is no current event loop",
#   SeldonIO/MLServer issue 2286, fix unreleased): uvloop 0.21.0.
#
# Usage:
#   serve_mlserver.sh --install                       create the virtualenv only
#   serve_mlserver.sh MODEL_DIR HTTP_PORT GRPC_PORT METRICS_PORT [MAX_BATCH_SIZE] [MAX_BATCH_TIME_S]
# Environment: MLSERVER_VENV (default /tmp/mlserver-venv), MODEL_REQUIREMENTS (a
# requirements.txt; default MODEL_DIR/requirements.txt), MLSERVER_WORKERS (parallel
# inference workers; default 1, MLServer's own default).
set -euo pipefail

MLSERVER_VERSION=1.7.1
VENV=${MLSERVER_VENV:-/tmp/mlserver-venv}

install() {
  local requirements=$1 pins
  pins=$(mktemp)
  grep -v -i '^pandas' "$requirements" >"$pins"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "mlserver==$MLSERVER_VERSION" "mlserver-mlflow==$MLSERVER_VERSION" "uvloop==0.21.0" \
    "pandas==2.3.3" -r "$pins"
  rm -f "$pins"
}

if [ "${1:-}" = "--install" ]; then
  shift
  [ -x "$VENV/bin/mlserver" ] || install "${MODEL_REQUIREMENTS:?MODEL_REQUIREMENTS=requirements.txt}"
  exit 0
fi

model_dir=$1 http_port=$2 grpc_port=$3 metrics_port=$4
max_batch_size=${5:-64} max_batch_time=${6:-0.005}
[ -x "$VENV/bin/mlserver" ] || install "${MODEL_REQUIREMENTS:-$model_dir/requirements.txt}"

folder=$(mktemp -d /tmp/mlserver-models-XXXXXX)
trap 'rm -rf "$folder"' EXIT
cat >"$folder/settings.json" <<EOF
{"host": "127.0.0.1", "http_port": $http_port, "grpc_port": $grpc_port,
 "metrics_port": $metrics_port, "parallel_workers": ${MLSERVER_WORKERS:-1}}
EOF
cat >"$folder/model-settings.json" <<EOF
{"name": "adult-income", "implementation": "mlserver_mlflow.MLflowRuntime",
 "parameters": {"uri": "$model_dir"},
 "max_batch_size": $max_batch_size, "max_batch_time": $max_batch_time}
EOF
cd "$folder"
"$VENV/bin/mlserver" start "$folder" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server; rm -rf "$folder"' EXIT TERM INT
wait $server
