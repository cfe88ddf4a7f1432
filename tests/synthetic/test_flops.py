"""The analytic FLOP count against torch's own counter, and the device-peak lookup."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from icl_interp.synthetic.flops import forward_flops, peak_flops, train_step_flops
from icl_interp.synthetic.model import ModelConfig, SyntheticTransformer


@pytest.mark.parametrize("shared", [True, False])
def test_forward_flops_equal_torchs_count(shared: bool) -> None:
    cfg = ModelConfig(
        n_layers=3, d_model=16, n_heads=2, d_mlp=24, n_context=6, n_queries=3, d_y=3,
        shared_layers=shared,
    )  # fmt: skip
    model = SyntheticTransformer(cfg)
    tokens = torch.randn(5, cfg.seq_len, cfg.d_x + cfg.d_y)
    with FlopCounterMode(display=False) as counter:
        output, probes = model.predict_queries(tokens)
    assert counter.get_total_flops() == forward_flops(cfg, 5)
    with FlopCounterMode(display=False) as counter:
        output, probes = model.predict_queries(tokens)
        (output.sum() + probes.sum()).backward()
    measured = counter.get_total_flops()
    assert 0.97 * train_step_flops(cfg, 5) < measured <= train_step_flops(cfg, 5)


def test_paper_table1_costs_about_1e17_flops() -> None:
    total = 12 * 100_000 * train_step_flops(ModelConfig(), 64)
    assert 1.3e17 < total < 1.5e17


def test_peak_lookup() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3") == peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("cpu") is None
