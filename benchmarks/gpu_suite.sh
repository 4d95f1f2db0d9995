#!/usr/bin/env bash
# `make bench-gpu`: every GPU and 16-CPU case of the benchmarks, sized to finish within about
# 5 minutes of device time (a lent GPU node: one H100 or H200, 16 CPUs; see
# ../shared/gpu/README.md). Writes $OUT/<benchmark>-gpu-<device>.json (device: h100, h200...),
# each case's log under $OUT/logs/, and $OUT/gpu_suite-<device>.json with every case's exit
# code and seconds. A case that fails or passes its time limit does not stop the others.
#
# On the GPU machine (nothing can be downloaded there): build the bundle here first
# (`bash ../shared/gpu/make-bundle.sh`, writes the git-ignored .gpu/), let .gpu travel with the
# run, and run `bash benchmarks/gpu_suite.sh`: it unpacks .gpu/site.tar.xz into /tmp/site and
# puts it and the repository on PYTHONPATH (Ray's workers inherit it).
#
# Here, to check that the suite runs before it meets a GPU (tiny sizes, CPU only):
#   SUITE_DEVICE=cpu SUITE_QUICK=1 OUT=/tmp/suite flock -s /work/notes/cpu.lock bash benchmarks/gpu_suite.sh
#
# Knobs (environment): SUITE_DEVICE (cuda | cpu), SUITE_QUICK (1: each benchmark's --quick),
# SUITE_ONLY (names to run, e.g. "train serve"), SUITE_PYTHON, SUITE_LIMIT_<NAME> (seconds of
# one case: TRAIN, SERVE, TUNE, DATA), SUITE_ARGS_<NAME> (replace a case's size arguments).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEVICE=${SUITE_DEVICE:-cuda}
QUICK=${SUITE_QUICK:-0}
OUT=${OUT:-$ROOT/.gpu-out}
mkdir -p "$OUT/logs"
if [ -n "${SUITE_PYTHON:-}" ]; then PY=$SUITE_PYTHON
elif [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python
else PY=python3; fi
started=$(date +%s)

# Ray, MLflow, Optuna and the rest travel as one bundle; unpack it where they are missing.
if ! "$PY" -c "import ray, mlflow" 2>/dev/null; then
  if [ ! -f .gpu/site.tar.xz ]; then
    echo "gpu_suite: no Ray here and no .gpu/site.tar.xz (bash ../shared/gpu/make-bundle.sh)" >&2
    exit 2
  fi
  tar -xJf .gpu/site.tar.xz -C /tmp
  export PYTHONPATH=/tmp/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi
# serve_load drives its load with wrk (Debian's), which the GPU image lacks: carry it in .gpu
#   mkdir -p .gpu/bin .gpu/lib && cp /usr/bin/wrk .gpu/bin/ \
#     && cp /lib/x86_64-linux-gnu/libluajit-5.1.so.2 .gpu/lib/
if ! command -v wrk > /dev/null && [ -x .gpu/bin/wrk ]; then
  export PATH=$ROOT/.gpu/bin:$PATH
  export LD_LIBRARY_PATH=$ROOT/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
echo "gpu_suite: python ready after $(( $(date +%s) - started )) s"

if [ "$DEVICE" = cuda ]; then
  NAME=$("$PY" -c "
import re, torch
name = torch.cuda.get_device_name(0).lower()
found = re.search(r'\b([a-z]{1,2}\d{2,4})\b', name.replace('nvidia', ''))
print(found.group(1) if found else 'gpu')") || { echo "gpu_suite: no CUDA device" >&2; exit 2; }
  WORKERS=$(nproc)
else
  NAME=cpu
  WORKERS=$(nproc)
fi
if [ "$QUICK" = 1 ]; then Q=(--quick); else Q=(); fi

# Each case's arguments: the device or the 16 CPUs, and sizes that keep it within its limit.
if [ "$QUICK" = 1 ]; then
  TRAIN=(--startup-reps 0)
  SERVE=()
  TUNE=(--workers "$WORKERS")
  DATA=()
else
  # Sizes guessed without a GPU at hand (first lent node: read each case's seconds in
  # gpu_suite-<device>.json and move them; SUITE_ARGS_* override). Train: 1M rows x 2 epochs,
  # 5 rounds of the plain loop, resident and streaming ingest.
  TRAIN=(--rows 1000000 --epochs 2 --rounds 5 --startup-reps 0)
  SERVE=()
  TUNE=(--workers "$WORKERS" --seeds 0 1 2 --trials 16 --epochs 3 --overhead-repeats 1)
  DATA=(--sizes 30000000 --no-stream)
fi
[ -n "${SUITE_ARGS_TRAIN:-}" ] && read -r -a TRAIN <<< "$SUITE_ARGS_TRAIN"
[ -n "${SUITE_ARGS_SERVE:-}" ] && read -r -a SERVE <<< "$SUITE_ARGS_SERVE"
[ -n "${SUITE_ARGS_TUNE:-}" ] && read -r -a TUNE <<< "$SUITE_ARGS_TUNE"
[ -n "${SUITE_ARGS_DATA:-}" ] && read -r -a DATA <<< "$SUITE_ARGS_DATA"

STATUS=()
run_case() {  # run_case NAME LIMIT_S ARGV...: one benchmark, its log, its exit and seconds
  local name=$1 limit=$2; shift 2
  case " ${SUITE_ONLY:-train serve tune data} " in *" $name "*) ;; *) return 0 ;; esac
  local began=$(date +%s) rc
  echo "gpu_suite: $name (limit ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
  rc=$?
  local took=$(( $(date +%s) - began ))
  echo "gpu_suite: $name exit $rc after ${took} s (total $(( $(date +%s) - started )) s)"
  if [ "$rc" != 0 ]; then
    tail -n 15 "$OUT/logs/$name.log"
    # A case killed at its limit may leave its Ray behind; on the lent node nothing else runs
    # Ray (never here: other sessions share this machine's Ray processes).
    [ "$DEVICE" = cuda ] && "$PY" -m ray.scripts.scripts stop --force > /dev/null 2>&1
  fi
  STATUS+=("{\"case\": \"$name\", \"exit\": $rc, \"seconds\": $took, \"limit_s\": $limit}")
}

# Limits: the device's 5 minutes, shared; --quick runs on the CPU take about 2 minutes each.
if [ "$QUICK" = 1 ]; then L=(400 400 400 400); else L=(110 70 50 50); fi
run_case train "${SUITE_LIMIT_TRAIN:-${L[0]}}" "$PY" benchmarks/train_throughput.py \
  --device "$DEVICE" "${Q[@]}" "${TRAIN[@]}" --out "$OUT/train_throughput-gpu-$NAME.json"
run_case serve "${SUITE_LIMIT_SERVE:-${L[1]}}" "$PY" benchmarks/serve_load.py \
  --device "$DEVICE" "${Q[@]}" "${SERVE[@]}" --out "$OUT/serve_load-gpu-$NAME.json"
run_case tune "${SUITE_LIMIT_TUNE:-${L[2]}}" "$PY" benchmarks/tune_efficiency.py \
  "${Q[@]}" "${TUNE[@]}" --out "$OUT/tune_efficiency-gpu-$NAME.json"
run_case data "${SUITE_LIMIT_DATA:-${L[3]}}" "$PY" benchmarks/data_prep.py \
  "${Q[@]}" "${DATA[@]}" --out "$OUT/data_prep-gpu-$NAME.json"

total=$(( $(date +%s) - started ))
{
  echo "{\"device\": \"$NAME\", \"quick\": $QUICK, \"seconds\": $total, \"cases\": ["
  (IFS=,; echo "${STATUS[*]:-}")
  echo "]}"
} > "$OUT/gpu_suite-$NAME.json"
echo "gpu_suite: done in ${total} s; results in $OUT"
failed=0
for entry in "${STATUS[@]:-}"; do [[ "$entry" == *'"exit": 0,'* ]] || [ -z "$entry" ] || failed=1; done
exit $failed
