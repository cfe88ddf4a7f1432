"""Named training scales for ``icl-interp synthetic``: the paper's recipe, a 2-core CPU one, a test one.

Each preset overrides fields of ``TrainConfig`` (``model`` overrides ``ModelConfig``);
task, mask kind and layer sharing are filled in per run.

- ``paper``: section 5.2 / appendix D.2 (100,000 steps of a 24-layer model: a GPU job).
- ``cpu``: 4 layers of width 32 (2 heads, FFN 128), batch 64, lr 2e-3 (20x the paper's:
  it trains for 1% of the paper's steps), 1,024 steps on fresh sequences (a new batch
  every step, 65,536 sequences in all, about the paper's 64k pool; the paper reuses a
  fixed pool for 100 epochs). Chosen by pilots on a validation draw (README section 2).
- ``tiny``: for tests.
"""

from __future__ import annotations

from typing import Any

from icl_interp.registry import Registry

PRESETS: Registry[dict[str, Any]] = Registry("preset")

PRESETS.add(
    "paper",
    {
        "model": {"n_layers": 24, "d_model": 128, "n_heads": 2, "d_mlp": 512},
        "n_train": 64_000,
        "n_eval": 64,
        "epochs": 100,
        "batch_size": 64,
    },
)
PRESETS.add(
    "cpu",
    {
        "model": {"n_layers": 4, "d_model": 32, "n_heads": 2, "d_mlp": 128},
        "n_train": 4_096,
        "n_eval": 64,
        "epochs": 16,
        "batch_size": 64,
        "lr": 2e-3,
        "fresh_data": True,
    },
)
PRESETS.add(
    "tiny",
    {
        "model": {"n_layers": 2, "d_model": 16, "n_heads": 2, "d_mlp": 32},
        "n_train": 128,
        "n_eval": 16,
        "epochs": 2,
        "batch_size": 32,
    },
)
