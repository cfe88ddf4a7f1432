#!/usr/bin/env bash
# Install into .venv and run the main job (icl-interp compare on embedded defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install
.venv/bin/icl-interp compare "$@"
