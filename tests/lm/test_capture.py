"""Capture: shapes, prefix-reuse equality with the full forward, pre-mask attention logits, logit lens."""

from __future__ import annotations

import pytest
import torch

from icl_interp.errors import UserError
from icl_interp.lm.arch import attention_windows
from icl_interp.lm.capture import capture, capture_condition, run_with_mask
from icl_interp.lm.conditions import ZERO_SHOT, icl
from icl_interp.lm.data import Example, build_prompts, get_dataset
from icl_interp.lm.models import tiny_random_model
from icl_interp.lm.record import Capture
from icl_interp.masks import build_mask
from tests.helpers import assert_close

LABEL_IDS = torch.tensor([40, 41])
QUERY_LENGTHS = (3, 6, 2, 7, 4)


def _inputs(prefix_len: int = 14) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    prefix = torch.cat(
        [torch.tensor([2]), torch.randint(4, 120, (prefix_len - 1,), generator=generator)]
    )
    queries = [torch.randint(4, 120, (n,), generator=generator) for n in QUERY_LENGTHS]
    labels = torch.tensor([0, 1, 0, 1, 1])
    return prefix, queries, labels


def _fields(result: Capture) -> dict[str, torch.Tensor]:
    return {
        "resid": result.resid,
        "attn_out": result.attn_out,
        "label_logits": result.label_logits,
        "layer_label_logits": result.layer_label_logits,
        **{f"attn_logits[{e}]": logits for e, logits in enumerate(result.attn_logits)},
    }


def test_capture_shapes_and_storage() -> None:
    model = tiny_random_model("gemma3")
    prefix, queries, labels = _inputs()
    result = capture(model, prefix, queries, labels, LABEL_IDS, batch_size=2)
    n_layers, d_model, n_heads = model.cfg.n_layers, model.cfg.d_model, model.cfg.n_heads
    assert result.resid.shape == (5, n_layers, d_model)
    assert result.attn_out.shape == (5, n_layers, d_model)
    assert [tuple(x.shape) for x in result.attn_logits] == [
        (n_layers, n_heads, n) for n in QUERY_LENGTHS
    ]
    assert result.label_logits.shape == (5, 2)
    assert result.layer_label_logits.shape == (5, n_layers, 2)
    assert torch.equal(result.labels, labels)
    for name, tensor in _fields(result).items():
        assert tensor.device.type == "cpu" and tensor.dtype == torch.float32, name
        assert not tensor.requires_grad and torch.isfinite(tensor).all(), name
    assert_close(result.label_logits, result.layer_label_logits[:, -1], atol=0.0, what="last layer")
    assert result.meta["mask"] == "causal" and result.meta["n_prefix_tokens"] == len(prefix)
    limited = capture(model, prefix, queries, labels, LABEL_IDS, limit=2)
    assert limited.resid.shape[0] == 2 and len(limited.attn_logits) == 2
    assert_close(limited.resid, result.resid[:2], atol=1e-5, what="limit keeps the first examples")


@pytest.mark.parametrize("arch", ["gemma3", "llama", "gpt2"])
@pytest.mark.parametrize("mask", ["causal", "prefix"])
def test_prefix_reuse_equals_full_forward(arch: str, mask: str) -> None:
    """Cached prefix + batched padded queries == one full forward per example (< 1e-4).

    The tiny Gemma-3 has sliding window 4, far shorter than the 16-21 token prompts; GPT-2
    has learned absolute positions and no rotary embeddings.
    """
    model = tiny_random_model(arch)
    prefix, queries, labels = _inputs()
    reused = capture(model, prefix, queries, labels, LABEL_IDS, mask=mask, batch_size=3)
    full = capture(model, prefix, queries, labels, LABEL_IDS, mask=mask, reuse_prefix=False)
    full_fields = _fields(full)
    for name, value in _fields(reused).items():
        assert_close(value, full_fields[name], atol=1e-4, what=f"{arch}/{mask} {name}")


@pytest.mark.parametrize("arch", ["gemma3", "gpt2"])
@pytest.mark.parametrize("mask", ["causal", "prefix"])
def test_against_an_independent_full_forward(arch: str, mask: str) -> None:
    """Label logits match the model's own logits; attention logits match hook_attn_scores
    wherever the mask allows the key, and stay finite (pre-mask) where the window forbids it."""
    model = tiny_random_model(arch)
    prefix, queries, labels = _inputs()
    result = capture(model, prefix, queries, labels, LABEL_IDS, mask=mask, batch_size=2)
    n_layers = model.cfg.n_layers
    scores: dict[int, torch.Tensor] = {}
    for e in (1, 3):
        ids = torch.cat([prefix, queries[e]])[None]
        scores.clear()

        def keep(activation: torch.Tensor, hook, layer: int) -> torch.Tensor:
            scores[layer] = activation[0, :, -1, len(prefix) :].clone()
            return activation

        hooks = [
            (
                f"blocks.{layer}.attn.hook_attn_scores",
                lambda a, hook, layer=layer: keep(a, hook, layer),
            )
            for layer in range(n_layers)
        ]
        with torch.no_grad():
            logits = run_with_mask(model, ids, mask=mask, n_prefix=len(prefix), fwd_hooks=hooks)
        assert_close(result.label_logits[e], logits[0, -1, LABEL_IDS], atol=1e-5, what="logits")
        seq_len = ids.shape[1]
        for layer, window in enumerate(attention_windows(model)):
            allowed = build_mask(mask, seq_len, n_prefix=len(prefix), sliding_window=window)
            allowed = allowed[-1, len(prefix) :]
            captured = result.attn_logits[e][layer]
            assert_close(
                captured[:, allowed], scores[layer][:, allowed], atol=1e-5, what=f"layer {layer}"
            )
            assert torch.isfinite(captured).all()
        if arch == "gemma3":
            assert (~build_mask(mask, seq_len, sliding_window=4)[-1, len(prefix) :]).any()


def test_logit_lens_by_hand() -> None:
    """layer_label_logits[e, l] = W_U[labels] @ RMSNorm(resid[e, l]) computed from raw weights."""
    model = tiny_random_model("llama")
    prefix, queries, labels = _inputs()
    result = capture(model, prefix, queries, labels, LABEL_IDS)
    hf = model.original_model
    norm = hf.model.norm
    resid = result.resid
    normed = resid * torch.rsqrt(resid.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    expected = (normed * norm.weight.detach()) @ hf.lm_head.weight.detach()[LABEL_IDS].T
    assert_close(result.layer_label_logits, expected, atol=1e-5, what="logit lens")


def test_zero_shot_conditions_and_prompt_sets() -> None:
    model = tiny_random_model("gemma3")
    spec = get_dataset("mr")
    texts = ["a good film", "a bad movie", "it was great", "boring and dull", "fun story"]
    examples = [
        Example({"text": t}, label) for t, label in zip(texts, [1, 0, 1, 0, 1], strict=True)
    ]
    prompts = build_prompts(model.tokenizer, spec, examples[:3], examples[3:], max_len=None)
    zsl = capture_condition(model, prompts, ZERO_SHOT)
    bos_only = capture(
        model,
        torch.tensor([prompts.bos_id]),
        prompts.query_ids,
        prompts.labels,
        prompts.label_token_ids,
    )
    assert_close(zsl.resid, bos_only.resid, atol=0.0, what="zsl = [bos] + query")
    assert zsl.meta["condition"] == "zsl" and zsl.meta["k_used"] == 0
    icl_causal = capture_condition(model, prompts, icl("causal"))
    icl_prefix = capture_condition(model, prompts, icl("prefix"))
    assert icl_prefix.meta["mask"] == "prefix" and icl_causal.meta["k_used"] == 3
    assert (icl_causal.resid - icl_prefix.resid).abs().max() > 1e-4
    assert (icl_causal.resid - zsl.resid).abs().max() > 1e-4
    with pytest.raises(UserError, match="causal, prefix"):
        icl("full")
    with pytest.raises(UserError, match="causal, prefix"):
        capture(
            model,
            prompts.prefix_ids,
            prompts.query_ids,
            prompts.labels,
            prompts.label_token_ids,
            mask="full",
        )


@pytest.mark.parametrize("arch", ["gemma3", "llama"])
def test_attention_output_is_the_o_proj_output(arch: str) -> None:
    """attn_out = the HF attention module's output projection at the last query token
    (for Gemma: before its post-attention norm)."""
    model = tiny_random_model(arch)
    prefix, queries, labels = _inputs()
    result = capture(model, prefix, queries, labels, LABEL_IDS, batch_size=2)
    layers = model.original_model.model.layers
    outputs: dict[int, torch.Tensor] = {}
    handles = [
        layer.self_attn.o_proj.register_forward_hook(
            lambda module, args, output, i=i: outputs.__setitem__(i, output[0, -1].clone())
        )
        for i, layer in enumerate(layers)
    ]
    try:
        with torch.no_grad():
            model.original_model(torch.cat([prefix, queries[3]])[None])
    finally:
        for handle in handles:
            handle.remove()
    expected = torch.stack([outputs[i] for i in range(len(layers))])
    assert_close(result.attn_out[3], expected, atol=1e-5, what="o_proj output")


def test_a_model_that_does_not_fill_the_cache_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers 5.24 with transformer-lens 4.3 gave NaN captures silently: now one error."""
    from transformers import DynamicCache

    monkeypatch.setattr(DynamicCache, "update", lambda self, keys, values, *a, **k: (keys, values))
    prefix, queries, labels = _inputs()
    with pytest.raises(RuntimeError, match="did not fill the key/value cache"):
        capture(tiny_random_model("gpt2"), prefix, queries, labels, LABEL_IDS)
