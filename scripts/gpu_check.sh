#!/usr/bin/env bash
# The prepared GPU check of issue 24 (docs/gpu.md): CUDA-only tests, layers/compare/adapt/
# adapt-table on a tiny model on CUDA vs CPU, and the 12 Table-1 synthetic models trained
# batched at paper scale for the rest of a 9-minute budget, with MFU. Everything lands in
# one folder: $OUT if set, else the argument.
#   bash scripts/gpu_check.sh [--dry-run] [OUT] [--budget-minutes M] [--data-dir DIR]
# --dry-run runs every step on CPU at tiny sizes (tests/analyses/test_gpu_check.py runs it).
# Python: $PYTHON, else .venv/bin/python, else python3 (it needs this package's dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-}
if [[ -z $python ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  TQDM_DISABLE=1 MPLBACKEND=Agg
args=("$@")
if [[ -n ${OUT:-} ]]; then args=("$OUT" "$@"); fi
exec "$python" analyses/gpu_check.py "${args[@]}"
