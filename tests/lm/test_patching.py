"""Residual-stream patching on the four tiny families: patching a prompt's own residual back
changes nothing, a patch takes effect, and at the last block a patched last position gives
the source prompt's next-token logits (final norm and unembedding act per position)."""

from __future__ import annotations

import pytest
import torch

from icl_interp.errors import UserError
from icl_interp.lm.capture import run_with_mask
from icl_interp.lm.models import TINY_ARCHS, tiny_random_model
from icl_interp.lm.patching import Patch, patched_last_logits, read_residuals, run_patched
from tests.helpers import assert_close

ARCHS = list(TINY_ARCHS)


def _prompts() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    first = torch.cat([torch.tensor([2]), torch.randint(4, 120, (9,), generator=generator)])
    second = torch.cat([torch.tensor([2]), torch.randint(4, 120, (12,), generator=generator)])
    return first[None], second[None]


def test_the_four_tiny_families_are_covered() -> None:
    assert len(ARCHS) == 4 and {"gemma3", "llama", "qwen2", "gpt2"} == set(ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mask", ["causal", "prefix"])
def test_own_residual_patched_back_changes_nothing(arch: str, mask: str) -> None:
    model = tiny_random_model(arch)
    ids, _ = _prompts()
    n_prefix = 6 if mask == "prefix" else 0
    with torch.no_grad():
        clean = run_with_mask(model, ids, mask=mask, n_prefix=n_prefix)
    for position in (-1, 3):
        resid = read_residuals(model, ids, position=position, mask=mask, n_prefix=n_prefix)
        for layer in range(model.cfg.n_layers):
            patched = run_patched(
                model,
                ids,
                [Patch(layer, position, resid[:, layer])],
                mask=mask,
                n_prefix=n_prefix,
            )
            assert_close(patched, clean, atol=1e-6, what=f"{arch}/{mask} layer {layer}")


@pytest.mark.parametrize("arch", ARCHS)
def test_other_prompts_residual_at_the_last_block_gives_its_logits(arch: str) -> None:
    model = tiny_random_model(arch)
    target, source = _prompts()
    last = model.cfg.n_layers - 1
    with torch.no_grad():
        target_logits = run_with_mask(model, target, mask="causal")
        source_logits = run_with_mask(model, source, mask="causal")
    resid = read_residuals(model, source)
    patched = run_patched(model, target, [Patch(last, -1, resid[:, last])])
    assert_close(patched[:, -1], source_logits[:, -1], atol=1e-5, what=f"{arch} last position")
    assert_close(patched[:, :-1], target_logits[:, :-1], atol=0.0, what=f"{arch} earlier")
    early = run_patched(model, target, [Patch(0, -1, resid[:, 0])])
    assert (early[:, -1] - target_logits[:, -1]).abs().max() > 1e-3, "a patch must take effect"


@pytest.mark.parametrize("arch", ARCHS)
def test_last_position_patches_with_reused_keys_equal_full_patched_forwards(arch: str) -> None:
    """``patched_last_logits``: one batched forward of the last token over the earlier
    positions' cached keys/values gives each patch's full ``run_patched`` logits."""
    model = tiny_random_model(arch)
    target, source = _prompts()
    resid = read_residuals(model, source)[0]
    layers = [layer for layer in range(model.cfg.n_layers) for _ in range(2)]
    values = torch.stack(
        [resid[layer] * (1 + copy) for layer, copy in zip(layers, [0, 1] * 3, strict=True)]
    )
    fast = patched_last_logits(model, target[0], layers, values)
    for row, (layer, value) in enumerate(zip(layers, values, strict=True)):
        full = run_patched(model, target, [Patch(layer, -1, value[None])])[0, -1]
        assert_close(fast[row], full, atol=1e-5, what=f"{arch} layer {layer} row {row}")
    with pytest.raises(UserError, match="one row per layer"):
        patched_last_logits(model, target[0], layers[:-1], values)


def test_bad_patches_are_user_errors() -> None:
    model = tiny_random_model("llama")
    ids, _ = _prompts()
    value = torch.zeros(1, model.cfg.d_model)
    with pytest.raises(UserError, match="layer must be in"):
        run_patched(model, ids, [Patch(model.cfg.n_layers, -1, value)])
    with pytest.raises(UserError, match="position"):
        run_patched(model, ids, [Patch(0, 50, value)])
    with pytest.raises(UserError, match="shape"):
        run_patched(model, ids, [Patch(0, -1, torch.zeros(2, model.cfg.d_model))])


def test_read_residuals_is_what_capture_records() -> None:
    from icl_interp.lm.capture import capture

    model = tiny_random_model("gemma3")
    ids, _ = _prompts()
    prefix, query = ids[0, :6], ids[0, 6:]
    recorded = capture(model, prefix, [query], torch.tensor([0]), torch.tensor([40, 41]))
    assert_close(read_residuals(model, ids), recorded.resid, atol=1e-5, what="resid")
