#!/usr/bin/env bash
# Install into .venv and run the main job (icl-interp compare on embedded defaults): Gemma-3-270M
# on MR, 24 test examples, every method and control, both masks; k=16 demonstrations (half the
# data set's 32, which analyses/icl_gd_report.py uses) and one attention-heatmap example keep it
# to about 7 minutes on 2 cores (every method and control,
# the LCGD floor and the label-shuffled control included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install
.venv/bin/icl-interp compare --k 16 --heatmap-examples 1 "$@"
