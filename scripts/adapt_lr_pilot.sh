#!/usr/bin/env bash
# The learning-rate rule of the adapt-table cpu preset, fixed before any held-out result was seen:
# adapt seed 0 with each objective at every lr of the grid (the preset's other settings), and
# choose the lr with the lowest validation loss averaged over the two objectives, on episodes from
# the mixture data sets' test splits (never a held-out data set); ties -> smaller lr.
# (The grid had 1e-3 too; it was dropped for time before any pilot result was seen.)
# Two one-thread processes (one per objective) share the 2 cores. Rerunning resumes.
#   bash scripts/adapt_lr_pilot.sh [out_dir]     (default runs/adapt_lr_pilot)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/adapt_lr_pilot}
grid=(1e-4 3e-4)
common=(--steps 100 --warmup 10 --queries 8 --val-episodes 16 --eval-every 50
        --data-dir ../shared/data --threads 1)
mkdir -p "$out"
for objective in prefix causal; do
  (for lr in "${grid[@]}"; do
     OMP_NUM_THREADS=1 .venv/bin/icl-interp adapt --objective "$objective" --lr "$lr" "${common[@]}" \
       --out "$out/${objective}_lr$lr" > "$out/${objective}_lr$lr.log" 2>&1
   done) &
done
wait
.venv/bin/python - "$out" "${grid[@]}" <<'PY'
import json, sys
from pathlib import Path
out, grid = Path(sys.argv[1]), sys.argv[2:]
rows = []
for lr in grid:
    losses = {o: json.loads((out / f"{o}_lr{lr}" / "adapt_card.json").read_text())["validation"][-1]
              for o in ("prefix", "causal")}
    mean = sum(v["val_loss"] for v in losses.values()) / 2
    rows.append((mean, float(lr)))
    print(f"lr {lr}: " + ", ".join(f"{o} val loss {v['val_loss']:.3f} acc {v['val_acc']:.3f}"
                                   for o, v in losses.items()) + f"; mean loss {mean:.3f}")
print(f"chosen lr: {min(rows)[1]:g}")
PY
