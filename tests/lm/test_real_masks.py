"""Causal and prefix masks on real architectures (tiny random Gemma-3 / Llama / Qwen2; Gemma-3-270M slow).

A 4D mask handed to a HF model replaces HF's own masks, sliding windows included, so the
masks are rebuilt per layer type; these tests check what the attention actually did.
"""

from __future__ import annotations

import pytest
import torch

from icl_interp.lm.arch import attention_mask_for, attention_windows
from icl_interp.lm.capture import run_with_mask
from icl_interp.lm.models import TINY_ARCHS, load_model, tiny_random_model
from icl_interp.masks import build_mask
from tests.helpers import assert_close

N_PREFIX = 10
SEQ_LEN = 16


def _sequence(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 120, (1, SEQ_LEN), generator=generator)
    ids[0, 0] = 2
    return ids


def _record(
    model, ids: torch.Tensor, hook_name: str, mask: str, n_prefix: int
) -> list[torch.Tensor]:
    """``hook_name`` (with ``{layer}``) of every layer for batch row 0, under ``mask``."""
    store: dict[int, torch.Tensor] = {}

    def keep(layer: int):
        def hook(activation: torch.Tensor, hook) -> torch.Tensor:
            store[layer] = activation[0].clone()
            return activation

        return hook

    hooks = [(hook_name.format(layer=layer), keep(layer)) for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        run_with_mask(model, ids, mask=mask, n_prefix=n_prefix, fwd_hooks=hooks)
    return [store[layer] for layer in range(model.cfg.n_layers)]


def _patterns(model, ids: torch.Tensor, mask: str, n_prefix: int) -> list[torch.Tensor]:
    return _record(model, ids, "blocks.{layer}.attn.hook_pattern", mask, n_prefix)


def _block_outputs(model, ids: torch.Tensor, mask: str) -> torch.Tensor:
    return torch.stack(_record(model, ids, "blocks.{layer}.hook_out", mask, N_PREFIX))


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
def test_prefix_mask_lets_demonstrations_see_later_demonstrations(arch: str) -> None:
    """Change a late demonstration token: an early demonstration token's representation
    changes under the prefix mask and stays bit-identical under the causal mask."""
    model = tiny_random_model(arch)
    ids = _sequence()
    changed = ids.clone()
    changed[0, N_PREFIX - 2] = 4 if ids[0, N_PREFIX - 2] != 4 else 5
    early = N_PREFIX - 4  # within the tiny Gemma's window of 4 of the changed token
    for mask, should_change in (("prefix", True), ("causal", False)):
        before = _block_outputs(model, ids, mask)[:, early]
        after = _block_outputs(model, changed, mask)[:, early]
        difference = (before - after).abs().max().item()
        if should_change:
            assert difference > 1e-3, f"{arch}: prefix mask not applied ({difference})"
        else:
            assert difference == 0.0, f"{arch}: causal mask leaked the future ({difference})"


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
@pytest.mark.parametrize("mask", ["causal", "prefix"])
def test_attention_patterns_follow_build_mask_per_layer(arch: str, mask: str) -> None:
    """Every head's pattern is exactly 0 where build_mask (with the layer's window) forbids
    and > 0 where it allows; rows sum to 1."""
    model = tiny_random_model(arch)
    patterns = _patterns(model, _sequence(), mask, N_PREFIX)
    for layer, window in enumerate(attention_windows(model)):
        allowed = build_mask(mask, SEQ_LEN, n_prefix=N_PREFIX, sliding_window=window)
        pattern = patterns[layer]
        assert (pattern[:, ~allowed] == 0).all(), f"layer {layer}: attends where forbidden"
        assert (pattern[:, allowed] > 0).all(), f"layer {layer}: ignores allowed keys"
        assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)), atol=1e-5, what="rows")
    if arch == "gemma3":
        assert attention_windows(model) == [4, None, 4]


def test_causal_mask_reproduces_hf_default_masking() -> None:
    """Our rebuilt causal masks (with sliding windows) equal HF's own masks."""
    model = tiny_random_model("gemma3")
    ids = _sequence()
    with torch.no_grad():
        ours = run_with_mask(model, ids, mask="causal")
        native = model.original_model(input_ids=ids).logits
    assert_close(ours, native, atol=1e-5, what="causal mask vs HF default")


def test_mask_argument_per_layer_type() -> None:
    gemma = attention_mask_for(tiny_random_model("gemma3"), "prefix", 8, n_prefix=5, first_row=5)
    assert isinstance(gemma, dict) and set(gemma) == {"sliding_attention", "full_attention"}
    assert gemma["full_attention"].shape == (1, 1, 3, 8)
    assert torch.isinf(gemma["sliding_attention"][0, 0, 2, :4]).all()
    llama = attention_mask_for(tiny_random_model("llama"), "causal", 6)
    assert isinstance(llama, torch.Tensor) and llama.shape == (1, 1, 6, 6)
    assert torch.equal(llama[0, 0] == 0, build_mask("causal", 6))


@pytest.mark.slow
def test_gemma_masks_past_the_sliding_window() -> None:
    """Gemma-3-270M: 18 layers, window 512 on 15 of them; the prefix mask is really applied
    and the sliding layers forbid keys 512+ positions back, under both masks."""
    model = load_model("gemma-3-270m")
    windows = attention_windows(model)
    seq_len, n_prefix = 530, 520
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (1, seq_len), generator=generator)
    ids[0, 0] = model.tokenizer.bos_token_id
    sliding = windows.index(512)
    full = windows.index(None)
    for mask in ("causal", "prefix"):
        patterns = _patterns(model, ids, mask, n_prefix)
        for layer in (sliding, full):
            allowed = build_mask(mask, seq_len, n_prefix=n_prefix, sliding_window=windows[layer])
            assert (patterns[layer][:, ~allowed] == 0).all()
        assert (patterns[sliding][:, -1, :18] == 0).all()
        assert (patterns[full][:, -1, :18] > 0).all()
    prefix_rows = _patterns(model, ids, "prefix", n_prefix)[full][:, 5, 6:n_prefix]
    assert (prefix_rows > 0).all()
