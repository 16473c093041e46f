#!/usr/bin/env bash
# The GPU check in one command (at most 8 minutes on one H200): benchmarks/gpu_check.py does the work.
#   benchmarks/gpu_check.sh             on a CUDA machine: every part; results in $OUT (default ./gpu_check_out)
#   benchmarks/gpu_check.sh --dry-run   anywhere (CI): the CUDA parts are skipped and say so
# Wheels in .whl/ (benchmarks/gpu_wheels.sh downloads them here, for the device's Python 3.12) are installed into
# /tmp/site first; otherwise the machine's own packages are used and their versions recorded in the report.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
# the wheels are built for the device's Python 3.12: installed only for a real run under a Python 3.12
if [[ " $* " != *" --dry-run "* ]] && ls .whl/*.whl >/dev/null 2>&1 \
    && "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_NVML_BASED_CUDA_CHECK=1  # is_available() without initialising CUDA: jobs run in forked children
exec timeout 470 "$PY" -m benchmarks.gpu_check "$@"
