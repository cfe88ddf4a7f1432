"""Model FLOPs of a synthetic-model training step, counted analytically, and device peaks for MFU.

A forward pass costs 2 FLOPs per multiply-add of every matrix product: read-in, per
layer Q/K/V/O projections, q.k scores, pattern.v and the two MLP matrices, then the
read-out and the per-layer probes on the query positions (masked score entries count:
the kernels compute them). A training step counts 3 forward passes (backward = 2x
forward), the usual MFU convention; LayerNorm, softmax, GELU and AdamW are not
counted. ``tests/synthetic/test_flops.py`` checks the forward count against
``torch.utils.flop_counter``.
"""

from __future__ import annotations

from icl_interp.synthetic.model import ModelConfig

# Dense bf16 tensor-core peaks (FLOP/s, no sparsity) from the vendors' data sheets,
# matched against ``torch.cuda.get_device_name()``; the first match wins.
PEAK_BF16_FLOPS: dict[str, float] = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
}


def forward_flops(cfg: ModelConfig, batch: int) -> int:
    """FLOPs of one forward pass (``predict_queries``) over ``batch`` sequences."""
    pos, d, heads = cfg.seq_len, cfg.d_model, cfg.n_heads
    d_token = cfg.d_x + cfg.d_y
    per_layer = (
        4 * pos * d * heads * cfg.d_head  # Q, K, V, O projections
        + 2 * heads * pos * pos * cfg.d_head  # scores and pattern.v
        + 2 * pos * d * cfg.d_mlp  # MLP in and out
    )
    readouts = (1 + cfg.n_layers) * cfg.n_queries * d * cfg.d_y
    return 2 * batch * (pos * d_token * d + cfg.n_layers * per_layer + readouts)


def train_step_flops(cfg: ModelConfig, batch: int) -> int:
    """Model FLOPs of one training step: 3 forward passes."""
    return 3 * forward_flops(cfg, batch)


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak of the named device, or None when it is not in ``PEAK_BF16_FLOPS``."""
    for name, peak in PEAK_BF16_FLOPS.items():
        if name in device_name:
            return peak
    return None
