"""Prompt attention: the last position's row over the whole prompt, its layout and summaries.

tiny-gemma3 has sliding window 4 on layers 0 and 2, far shorter than its MR prompts, so both
masks forbid keys there; layer 1 is global.
"""

from __future__ import annotations

import pytest
import torch

from icl_interp.lm.arch import attention_windows
from icl_interp.lm.attention import (
    PROMPT_ATTENTION_COLUMNS,
    attention_table,
    demonstration_mass,
    prompt_attention,
    prompt_layout,
)
from icl_interp.lm.capture import capture_condition, run_with_mask
from icl_interp.lm.conditions import ZERO_SHOT, icl
from icl_interp.lm.data import make_prompts
from icl_interp.lm.models import tiny_random_model
from icl_interp.masks import build_mask
from tests.helpers import assert_close


@pytest.fixture(scope="module")
def model_and_prompts() -> tuple[object, object]:
    model = tiny_random_model("gemma3")
    _, prompts, _ = make_prompts(
        model.tokenizer, "mr", n_test=2, seed=0, k=3, source="package", log=lambda _: None
    )
    return model, prompts


def test_layout_follows_the_prompt_set(model_and_prompts: tuple) -> None:
    _, prompts = model_and_prompts
    layout = prompt_layout(prompts, 1, demonstrations=True)
    assert layout.token_ids == prompts.icl_ids(1).tolist()
    assert layout.segment[0] == "bos" and layout.n_prefix == len(prompts.prefix_ids)
    assert layout.segment.count("query") == len(prompts.query_ids[1])
    labels = [i for i, role in enumerate(layout.role) if role == "label"]
    assert [layout.demo[i] for i in labels] == list(range(prompts.k_used))
    expected = [int(prompts.label_token_ids[d.label]) for d in prompts.demonstrations]
    assert [layout.token_ids[i] for i in labels] == expected
    for demo, ids in enumerate(prompts.demo_ids):
        inputs = [
            i
            for i, (d, r) in enumerate(zip(layout.demo, layout.role, strict=True))
            if d == demo and r != "separator"
        ]
        assert [layout.token_ids[i] for i in inputs] == ids[1:].tolist(), "input + label token"
    zsl = prompt_layout(prompts, 0, demonstrations=False)
    assert zsl.token_ids == prompts.zsl_ids(0).tolist()
    assert set(zsl.segment) == {"bos", "query"} and zsl.query_position[1:] == list(
        range(len(prompts.query_ids[0]))
    )


@pytest.mark.parametrize("mask", ["causal", "prefix"])
def test_rows_sum_to_one_over_allowed_keys_and_are_zero_where_forbidden(
    model_and_prompts: tuple, mask: str
) -> None:
    model, prompts = model_and_prompts
    rows = prompt_attention(model, prompts, icl(mask), examples=2)
    windows = attention_windows(model)
    n_forbidden = 0
    for (example, layer, head), row in rows.groupby(["example", "layer", "head"]):
        layout = prompt_layout(prompts, int(example), demonstrations=True)
        allowed = build_mask(
            mask, len(layout), n_prefix=layout.n_prefix, sliding_window=windows[layer]
        )[-1].numpy()
        row = row.sort_values("position")
        assert (row["allowed"].to_numpy() == allowed).all()
        prob = row["prob"].to_numpy()
        assert (prob[~allowed] == 0).all(), f"layer {layer} head {head}: forbidden key read"
        assert prob[allowed].sum() == pytest.approx(1.0, abs=1e-5)
        n_forbidden += int((~allowed).sum())
    assert n_forbidden > 0, "the sliding window must forbid keys, or the test proves nothing"


def test_logits_are_pre_mask_and_match_capture_and_the_model(model_and_prompts: tuple) -> None:
    """Over the query's tokens the logits equal ``capture``'s attn_logits; at allowed keys they
    equal the model's own (post-mask) ``hook_attn_scores``."""
    model, prompts = model_and_prompts
    condition = icl("prefix")
    rows = prompt_attention(model, prompts, condition, examples=1)
    captured = capture_condition(model, prompts, condition, limit=1).attn_logits[0]
    query = rows[rows["query_position"] >= 0].sort_values(["layer", "head", "query_position"])
    assert_close(
        torch.tensor(query["logit"].to_numpy()).reshape(captured.shape).float(),
        captured,
        atol=1e-4,
        what="query logits vs capture",
    )
    scores: dict[int, torch.Tensor] = {}

    def keep(layer: int):
        def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
            scores[layer] = activation[0, :, -1].detach()
            return activation

        return hook

    layout = prompt_layout(prompts, 0, demonstrations=True)
    run_with_mask(
        model,
        torch.tensor([layout.token_ids]),
        mask="prefix",
        n_prefix=layout.n_prefix,
        fwd_hooks=[(f"blocks.{layer}.attn.hook_attn_scores", keep(layer)) for layer in range(3)],
    )
    table = rows.sort_values(["layer", "head", "position"])
    logits = torch.tensor(table["logit"].to_numpy()).reshape(3, -1, len(layout)).float()
    allowed = torch.tensor(table["allowed"].to_numpy()).reshape(logits.shape)
    model_scores = torch.stack([scores[layer] for layer in range(3)]).float()
    assert torch.isinf(model_scores[~allowed]).all(), "the model's scores are post-mask"
    assert_close(logits[allowed], model_scores[allowed], atol=1e-4, what="allowed keys")
    assert torch.isfinite(logits).all()


def test_table_and_demonstration_mass(model_and_prompts: tuple) -> None:
    model, prompts = model_and_prompts
    frames = [prompt_attention(model, prompts, ZERO_SHOT, 1)]
    frames += [prompt_attention(model, prompts, icl(m), 1) for m in ("causal", "prefix")]
    table = attention_table(frames, model="tiny-gemma3", data="mr", seed=0)
    assert list(table.columns) == PROMPT_ATTENTION_COLUMNS
    assert not table.isna().any().any()
    which = demonstration_mass(table, layer=1)
    assert (which["readable"] == 1).all(), "layer 1 of tiny-gemma3 is global"
    assert demonstration_mass(table, layer=0).loc["bos", "readable"] == 0, "window 4"
    assert list(which.index) == ["bos", *(f"demo_{i}" for i in range(3)), "query"]
    assert which[["icl_causal", "icl_prefix"]].sum().to_numpy() == pytest.approx(1.0, abs=1e-5)
    assert which.loc["demo_0", "icl_causal on label"] <= which.loc["demo_0", "icl_causal"]
    assert which.loc["demo_0", "label token"].strip("▁ ") in {"Negative", "Positive"}
