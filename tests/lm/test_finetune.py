"""Finetuning: SGD on K/V (GD), layer-causal GD (gradient isolation), untrained baseline."""

from __future__ import annotations

import copy

import pytest
import torch

import icl_interp.lm.finetune as finetune_module
from icl_interp.errors import UserError
from icl_interp.lm.finetune import (
    FinetuneConfig,
    demo_loss,
    finetune,
    layer_losses,
    lm_loss,
    resolve_compute_dtype,
    trainable_parameters,
    untrained_baseline,
)
from icl_interp.lm.models import tiny_random_model
from tests.helpers import assert_close


@pytest.fixture(scope="module")
def gemma() -> torch.nn.Module:
    return tiny_random_model("gemma3", seed=0)


@pytest.fixture(scope="module")
def gpt2() -> torch.nn.Module:
    """GPT-2 fuses q, k and v in one matrix (c_attn) and has no rotary embeddings."""
    return tiny_random_model("gpt2", seed=0)


@pytest.fixture(scope="module")
def qwen() -> torch.nn.Module:
    """Qwen2 has biases on its q/k/v projections."""
    return tiny_random_model("qwen2", seed=0)


def demos(model: torch.nn.Module, n: int = 3) -> list[torch.Tensor]:
    bos = model.tokenizer.bos_token_id
    generator = torch.Generator().manual_seed(7)
    return [
        torch.cat([torch.tensor([bos]), torch.randint(5, 40, (4 + i,), generator=generator)])
        for i in range(n)
    ]


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    return {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}


@pytest.mark.parametrize(
    ("arch", "params", "method"),
    [("gemma", "kv", "gd"), ("gemma", "kv", "lcgd"), ("qwen", "kv", "lcgd"), ("gemma", "v", "gd")],
)
def test_only_the_chosen_group_changes_and_the_input_model_is_untouched(
    request: pytest.FixtureRequest, arch: str, params: str, method: str
) -> None:
    model = request.getfixturevalue(arch)
    before = snapshot(model)
    tuned = finetune(model, demos(model), method=method, lr=0.1, params=params)
    assert changed(model, before) == set(), "finetune modified the model passed in"
    group = {id(p) for p in trainable_parameters(tuned, params)}
    expected = {name for name, p in tuned.named_parameters() if id(p) in group}
    suffixes = {"kv": ("k_proj", "v_proj"), "v": ("v_proj",)}[params]
    assert expected and all(
        name.split("._original_component.")[-2].endswith(suffixes) for name in expected
    )
    if arch == "qwen":
        assert any(name.endswith("bias") for name in expected), "biases belong to the group"
    assert changed(tuned, before) == expected
    assert not any(p.requires_grad for p in tuned.parameters())


def test_gd_is_one_plain_sgd_step_per_demonstration_on_mean_token_nll(gemma) -> None:
    ids = demos(gemma, 1)[0]
    reference = copy.deepcopy(gemma)
    group = trainable_parameters(reference, "kv")
    for p in reference.parameters():
        p.requires_grad_(False)
    for p in group:
        p.requires_grad_(True)
    logits = reference(ids[None])
    log_probs = torch.log_softmax(logits[0, :-1], dim=-1)
    nll = -log_probs[torch.arange(len(ids) - 1), ids[1:]].mean()
    grads = torch.autograd.grad(nll, group)
    lr = 0.05
    tuned = finetune(gemma, [ids], method="gd", lr=lr, params="kv")
    for p_tuned, p_ref, g in zip(trainable_parameters(tuned, "kv"), group, grads, strict=True):
        assert_close(p_tuned, p_ref.detach() - lr * g, atol=1e-7, what="W - lr * grad")


def test_lcgd_gradient_isolation(gemma) -> None:
    """No layer's loss has a gradient w.r.t. an earlier (or later) layer's parameters."""
    model = copy.deepcopy(gemma)
    for p in model.parameters():
        p.requires_grad_(False)
    per_layer = [
        list(model.blocks[i].attn.k.parameters()) + list(model.blocks[i].attn.v.parameters())
        for i in range(len(model.blocks))
    ]
    for group in per_layer:
        for p in group:
            p.requires_grad_(True)
    losses = list(layer_losses(model, demos(model, 1)[0][None]))
    assert len(losses) == len(model.blocks) == 3
    for loss_layer, loss in enumerate(losses):
        for param_layer, group in enumerate(per_layer):
            grads = torch.autograd.grad(loss, group, allow_unused=True, retain_graph=True)
            if param_layer == loss_layer:
                assert all(g is not None and g.abs().sum() > 0 for g in grads)
            else:
                assert all(g is None or torch.count_nonzero(g) == 0 for g in grads), (
                    f"layer {loss_layer}'s loss reaches layer {param_layer}'s parameters"
                )


def test_lcgd_losses_are_logit_lens_losses_and_the_last_one_is_the_model_loss(gemma) -> None:
    ids = demos(gemma, 1)[0][None]
    with torch.no_grad():
        logits, cache = gemma.run_with_cache(ids)
        losses = list(layer_losses(gemma, ids))
        for layer, loss in enumerate(losses):
            lens = gemma.unembed(gemma.ln_final(cache[f"blocks.{layer}.hook_out"]))
            assert_close(loss, lm_loss(lens, ids), atol=1e-6, what=f"layer {layer} loss")
        assert_close(losses[-1], lm_loss(logits, ids), atol=1e-6, what="last layer = model loss")


def test_lcgd_and_gd_agree_on_the_last_layer_and_differ_below(gemma) -> None:
    """The last block's gradient never passes through a detach, so one step of both matches there."""
    ids = demos(gemma, 1)
    gd = trainable_parameters(finetune(gemma, ids, method="gd", lr=0.1), "kv")
    lcgd = trainable_parameters(finetune(gemma, ids, method="lcgd", lr=0.1), "kv")
    before = trainable_parameters(gemma, "kv")
    # groups are [k0, v0, k1, v1, k2, v2] (weights only: Gemma has no biases)
    for a, b in zip(gd[-2:], lcgd[-2:], strict=True):
        assert_close(a, b, atol=1e-7, what="last layer update")
    for a, b, w in zip(gd[:-2], lcgd[:-2], before[:-2], strict=True):
        assert not torch.allclose(a - w, b - w, atol=1e-6), "lower layers should get other updates"


def summed_layer_loss(model: torch.nn.Module, ids: list[torch.Tensor]) -> float:
    with torch.no_grad():
        return sum(float(sum(layer_losses(model, x[None]))) for x in ids)


def test_each_method_lowers_its_own_objective_on_the_demonstrations(gemma) -> None:
    ids = demos(gemma, 4)
    gd = finetune(gemma, ids, method="gd", lr=0.5, params="attn")
    assert demo_loss(gd, ids) < demo_loss(gemma, ids) - 1e-3
    lcgd = finetune(gemma, ids, method="lcgd", lr=0.5, params="attn")
    assert summed_layer_loss(lcgd, ids) < summed_layer_loss(gemma, ids) - 1e-3


@pytest.mark.parametrize("method", ["gd", "lcgd"])
def test_non_finite_loss_is_a_user_error_naming_the_step(gemma, method: str) -> None:
    broken = copy.deepcopy(gemma)
    with torch.no_grad():
        broken.blocks[0].attn.v.weight[0, 0] = float("nan")
    with pytest.raises(UserError, match=r"step 1 \(demonstration 0\).*lower learning rate"):
        finetune(broken, demos(gemma), method=method, lr=0.1)


def test_bad_settings_are_user_errors(gemma) -> None:
    with pytest.raises(UserError, match="valid methods: gd, lcgd"):
        FinetuneConfig(method="adam")
    with pytest.raises(UserError, match="valid groups: v, kv, attn, all"):
        finetune(gemma, demos(gemma), params="qk")
    with pytest.raises(UserError, match="positive finite"):
        finetune(gemma, demos(gemma), lr=-1.0)
    with pytest.raises(UserError, match="no demonstrations"):
        finetune(gemma, [], lr=0.1)


def test_untrained_baseline_redraws_attention_and_mlp_only(gemma) -> None:
    before = snapshot(gemma)
    untrained = untrained_baseline(gemma, seed=1)
    assert changed(gemma, before) == set()
    redrawn = changed(untrained, before)
    for name in before:
        is_linear = any(f".{part}." in name for part in ("self_attn", "mlp")) and "_proj" in name
        assert (name in redrawn) == is_linear, name
    weights = torch.cat(
        [p.detach().flatten() for n, p in untrained.named_parameters() if n in redrawn]
    )
    std = untrained.original_model.config.initializer_range
    assert abs(float(weights.std()) - std) < 0.1 * std
    assert changed(untrained_baseline(gemma, seed=1), snapshot(untrained)) == set()
    assert changed(untrained_baseline(gemma, seed=2), snapshot(untrained)) == redrawn


@pytest.mark.parametrize("method", ["gd", "lcgd"])
def test_bfloat16_forward_gives_nearly_the_float32_update(gemma, method: str) -> None:
    ids = demos(gemma, 2)
    before = torch.cat([p.flatten() for p in trainable_parameters(gemma, "kv")]).detach()

    def update(dtype: str) -> torch.Tensor:
        tuned = finetune(gemma, ids, method=method, lr=0.1, compute_dtype=dtype)
        return torch.cat([p.flatten() for p in trainable_parameters(tuned, "kv")]) - before

    exact, fast = update("float32"), update("bfloat16")
    cosine = torch.nn.functional.cosine_similarity(exact, fast, dim=0)
    assert cosine > 0.99, f"bf16 update direction off: cos {float(cosine):.4f}"
    assert abs(float(fast.norm() / exact.norm()) - 1) < 0.05


def test_lcgd_update_does_not_depend_on_how_layers_are_chunked(
    gemma, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One unembedding product for all layers == one per layer (LOGIT_ROWS=1)."""
    ids = demos(gemma, 2)
    fused = trainable_parameters(finetune(gemma, ids, method="lcgd", lr=0.1), "kv")
    monkeypatch.setattr(finetune_module, "LOGIT_ROWS", 1)
    per_layer = trainable_parameters(finetune(gemma, ids, method="lcgd", lr=0.1), "kv")
    for a, b in zip(fused, per_layer, strict=True):
        assert_close(a, b, atol=1e-6, what="chunked LCGD update")


def test_auto_compute_dtype_is_bfloat16_only_where_the_cpu_has_it() -> None:
    assert resolve_compute_dtype("float32") == "float32"
    assert resolve_compute_dtype("bfloat16") == "bfloat16"
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert resolve_compute_dtype("auto", "cpu") == ("bfloat16" if native else "float32")


@pytest.mark.parametrize("method", ["gd", "lcgd"])
def test_fused_qkv_trains_only_the_key_and_value_projections(gpt2, method: str) -> None:
    """On GPT-2 (q, k, v fused in c_attn; the bridge splits it into the views its forward
    uses), params="kv" changes the k and v projections and the model's output, never q or o."""
    before = snapshot(gpt2)
    ids = demos(gpt2)
    tuned = finetune(gpt2, ids, method=method, lr=0.1, params="kv")
    assert changed(gpt2, before) == set()
    for layer in range(gpt2.cfg.n_layers):
        new, old = tuned.blocks[layer].attn, gpt2.blocks[layer].attn
        for name in ("q", "o"):
            for p_new, p_old in zip(
                getattr(new, name).parameters(), getattr(old, name).parameters(), strict=True
            ):
                assert torch.equal(p_new, p_old), f"layer {layer} {name} changed"
        for name in ("k", "v"):
            weight_new = getattr(new, name).original_component.weight
            assert not torch.equal(weight_new, getattr(old, name).original_component.weight)
    with torch.no_grad():
        assert not torch.allclose(tuned(ids[0][None]), gpt2(ids[0][None]))


def test_untrained_gpt2_redraws_attention_and_mlp_weights(gpt2) -> None:
    """GPT-2's Conv1D weights (o, MLP) are re-drawn as well as the split q/k/v; norms kept."""
    untrained = untrained_baseline(gpt2, seed=1)
    new, old = untrained.blocks[0], gpt2.blocks[0]
    for name in ("q", "k", "v", "o"):
        module = getattr(new.attn, name).original_component
        assert not torch.equal(module.weight, getattr(old.attn, name).original_component.weight)
        assert torch.count_nonzero(module.bias) == 0
    for module_new, module_old in zip(new.mlp.modules(), old.mlp.modules(), strict=True):
        if hasattr(module_new, "weight") and not hasattr(module_new, "original_component"):
            assert not torch.equal(module_new.weight, module_old.weight)
    for p_new, p_old in zip(new.ln1.parameters(), old.ln1.parameters(), strict=True):
        assert torch.equal(p_new, p_old)


@pytest.mark.parametrize("name", ["gemma", "gpt2", "qwen"])
def test_lcgd_hand_formed_gradient_equals_autograd(
    name: str, request: pytest.FixtureRequest
) -> None:
    """LCGD's cross-entropy gradient, formed in place in the logits, equals autograd's gradient
    of the summed logit-lens losses, parameter by parameter, and so do the losses."""
    model = copy.deepcopy(request.getfixturevalue(name))
    for p in model.parameters():
        p.requires_grad_(False)
    trained = trainable_parameters(model, "kv")
    for p in trained:
        p.requires_grad_(True)
    ids = demos(model, 2)[1][None]

    def gradients(step: object) -> tuple[torch.Tensor, list[torch.Tensor]]:
        for p in trained:
            p.grad = None
        loss = step()
        return loss, [p.grad.clone() for p in trained]

    def by_autograd() -> torch.Tensor:
        losses = layer_losses(model, ids)
        losses.sum().backward()
        return losses.detach().sum()

    by_hand = gradients(
        lambda: finetune_module._lcgd_step_loss(
            model, ids, torch.float32, finetune_module._LogitsScratch()
        )
    )
    reference = gradients(by_autograd)
    assert_close(by_hand[0], reference[0], atol=1e-5, what="summed loss")
    for a, b in zip(by_hand[1], reference[1], strict=True):
        assert_close(a, b, atol=1e-6, what="gradient")
        assert b.abs().sum() > 0
