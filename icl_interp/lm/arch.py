"""One adapter per architecture family: everything model-specific that generic code asks about.

Capture, finetuning and the masks never look at a model's class; they call ``adapter(model)``
and use what it answers:

- ``q_hook`` / ``k_hook``: the hook (under ``blocks.{layer}.``) whose per-head queries and keys
  are the ones scored, after rotary embeddings where the family has them;
- ``scaling(model, layer)``, ``attn_softcap(model)``, ``final_softcap(model)``: how q.k and the
  output logits are scaled and soft-capped;
- ``windows(model)`` / ``layer_types(model)``: per layer, the sliding window and layer type
  (models with windowed layers take one 4D mask per layer type);
- ``projection_parameters(block, name)``: the trainable tensors of projection ``q|k|v|o``
  (``projection_modules(model)``: the modules themselves, what LoRA wraps);
- ``reinit_modules(block)``: the weight matrices the untrained baseline re-draws.

``logit_lens(model, resid, token_ids)`` (final norm + unembedding, soft-capped) is the one
logit lens of the package, shared by capture and layer-causal GD; ``attention_logits`` the one
reading of pre-softmax scores, and ``attention_mask_for(model, kind, seq_len, ...)`` the one
builder of the 4D masks handed to the HF model (per layer type where windows differ), shared
by capture, patching and adaptation. A new family is one
``register_architecture(Architecture(...))`` naming its HF ``model_type`` values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from icl_interp.errors import UserError
from icl_interp.masks import MASKS, additive_mask, build_mask
from icl_interp.registry import Registry


def _module_scaling(model: Any, layer: int) -> float:
    return float(model.blocks[layer].attn.original_component.scaling)


def _config_value(name: str) -> Callable[[Any], float | None]:
    def read(model: Any) -> float | None:
        value = getattr(model.original_model.config, name, None)
        return None if value is None else float(value)

    return read


def _no_value(model: Any) -> None:
    return None


def _split_projection(block: Any, name: str) -> list[nn.Parameter]:
    """The bridge's ``attn.q|k|v|o`` parameters (for fused q/k/v, e.g. GPT-2's ``c_attn``,
    transformer-lens splits the matrix into views that the forward pass uses)."""
    module = getattr(block.attn, name, None)
    if module is None:
        raise UserError(
            f"this model's attention has no separate {name!r} projection; use --params all"
        )
    return list(module.parameters())


def _linear_modules(block: Any) -> list[nn.Module]:
    return [
        module
        for part in (block.attn, block.mlp)
        for module in part.modules()
        if isinstance(module, nn.Linear)
    ]


@dataclass(frozen=True)
class Architecture:
    """What generic code needs to know about one family of HF causal LMs (see module doc)."""

    name: str
    model_types: tuple[str, ...]
    q_hook: str = "attn.hook_rot_q"
    k_hook: str = "attn.hook_rot_k"
    attn_out_hook: str = "attn.hook_out"
    scaling: Callable[[Any, int], float] = _module_scaling
    attn_softcap: Callable[[Any], float | None] = field(
        default_factory=lambda: _config_value("attn_logit_softcapping")
    )
    final_softcap: Callable[[Any], float | None] = field(
        default_factory=lambda: _config_value("final_logit_softcapping")
    )
    projection_parameters: Callable[[Any, str], list[nn.Parameter]] = _split_projection
    reinit_modules: Callable[[Any], list[nn.Module]] = _linear_modules

    def windows(self, model: Any) -> list[int | None]:
        """Per layer, the sliding window HF applies there (``None`` = full attention)."""
        return [
            getattr(block.attn.original_component, "sliding_window", None) for block in model.blocks
        ]

    def layer_types(self, model: Any) -> list[str] | None:
        """Per layer, the HF layer type (``None`` if the config has no ``layer_types``)."""
        return getattr(model.original_model.config, "layer_types", None)


ARCHITECTURES: Registry[Architecture] = Registry("architecture")


def register_architecture(architecture: Architecture) -> Architecture:
    ARCHITECTURES.add(architecture.name, architecture)
    return architecture


# --------------------------------------------------------------------------- GPT-2 family


def _gpt2_scaling(model: Any, layer: int) -> float:
    module = model.blocks[layer].attn.original_component
    scaling = float(module.scaling) if module.scale_attn_weights else 1.0
    if module.scale_attn_by_inverse_layer_idx:
        scaling /= float(layer + 1)
    return scaling


def _gpt2_reinit(block: Any) -> list[nn.Module]:
    """Linear and Conv1D weights, except the fused ``c_attn`` whose q/k/v views come first."""
    from transformers.pytorch_utils import Conv1D

    fused = block.attn.qkv.original_component
    return [
        module
        for part in (block.attn, block.mlp)
        for module in part.modules()
        if isinstance(module, Conv1D | nn.Linear) and module is not fused
    ]


register_architecture(
    Architecture(
        "rotary",
        ("gemma3", "gemma3_text", "gemma2", "llama", "qwen2", "qwen3", "mistral", "phi3"),
    )
)
register_architecture(
    Architecture(
        "gpt2",
        ("gpt2",),
        q_hook="attn.hook_q",
        k_hook="attn.hook_k",
        scaling=_gpt2_scaling,
        attn_softcap=_no_value,
        final_softcap=_no_value,
        reinit_modules=_gpt2_reinit,
    )
)


def adapter(model: Any) -> Architecture:
    """The ``Architecture`` of a ``TransformerBridge`` (by its HF config's ``model_type``)."""
    model_type = getattr(model.original_model.config, "model_type", None)
    for name in ARCHITECTURES.registered():
        architecture = ARCHITECTURES.get(name)
        if model_type in architecture.model_types:
            return architecture
    known = sorted(t for n in ARCHITECTURES.registered() for t in ARCHITECTURES.get(n).model_types)
    raise UserError(
        f"model type {model_type!r} has no architecture adapter (supported: {', '.join(known)}); "
        "register one with icl_interp.lm.arch.register_architecture"
    )


def attention_windows(model: Any) -> list[int | None]:
    """Per layer, the sliding window HF applies there (``None`` = full attention)."""
    return adapter(model).windows(model)


def attention_mask_for(
    model: Any,
    kind: str,
    seq_len: int,
    *,
    n_prefix: int = 0,
    first_row: int = 0,
    device: torch.device | str | None = None,
) -> Tensor | dict[str, Tensor]:
    """The additive mask(s) to pass to ``model`` for rows ``first_row..seq_len-1``.

    Shape ``[1, 1, seq_len - first_row, seq_len]`` (``first_row`` > 0 when the first
    positions come from a cache). Models with sliding-window layers get a dict
    ``{layer_type: mask}`` (Gemma-3 and Qwen2 accept it), each with its own window;
    others one tensor.
    """
    MASKS.get(kind)

    def one(window: int | None) -> Tensor:
        allowed = build_mask(kind, seq_len, n_prefix=n_prefix, sliding_window=window, device=device)
        return additive_mask(allowed[first_row:])[None, None]

    architecture = adapter(model)
    windows = architecture.windows(model)
    if all(window is None for window in windows):
        return one(None)
    layer_types = architecture.layer_types(model)
    if layer_types is None or len(layer_types) != len(windows):
        raise UserError(
            f"{type(model.original_model).__name__} has sliding-window layers but no "
            "per-layer-type masks; it is not supported"
        )
    window_of: dict[str, int | None] = {}
    for layer_type, window in zip(layer_types, windows, strict=True):
        if window_of.setdefault(layer_type, window) != window:
            raise UserError(f"layers of type {layer_type!r} have different sliding windows")
    return {layer_type: one(window) for layer_type, window in window_of.items()}


def projection_parameters(model: Any, projections: Sequence[str]) -> list[nn.Parameter]:
    """The parameters of projections ``q|k|v|o`` of every layer, in layer order."""
    architecture = adapter(model)
    return [
        parameter
        for block in model.blocks
        for name in projections
        for parameter in architecture.projection_parameters(block, name)
    ]


def projection_modules(model: Any) -> list[nn.Module]:
    """Every layer's q/k/v/o projection as the torch module the forward pass calls (a
    ``Linear``, or GPT-2's ``Conv1D`` / the split views of its fused q/k/v), in layer order:
    what LoRA wraps."""
    return [
        getattr(block.attn, name).original_component
        for block in model.blocks
        for name in ("q", "k", "v", "o")
        if getattr(block.attn, name, None) is not None
    ]


def attention_logits(
    model: Any,
    q_last: Float[Tensor, "batch layer head d_head"],
    keys: Float[Tensor, "batch layer key kv_head d_head"],
) -> Float[Tensor, "batch layer head key"]:
    """Per layer and head, the query's scaled q.k with every key (plus the model's logit
    soft-capping, if any), before any mask; grouped kv heads are repeated to the q heads.
    Shared by capture and the attention analyses."""
    n_heads, n_kv_heads = q_last.shape[2], keys.shape[3]
    keys = keys.repeat_interleave(n_heads // n_kv_heads, dim=3)
    scores = torch.einsum("blhd,blkhd->blhk", q_last, keys)
    architecture = adapter(model)
    scaling = torch.tensor(
        [architecture.scaling(model, layer) for layer in range(len(model.blocks))],
        dtype=scores.dtype,
    )
    scores = scores * scaling.to(scores.device)[None, :, None, None]
    softcap = architecture.attn_softcap(model)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    return scores


def logit_lens(
    model: Any,
    resid: Float[Tensor, "*batch d_model"],
    token_ids: Int[Tensor, " token"] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Float[Tensor, "*batch token"]:
    """A residual-stream state through the final norm and the unembedding (rows ``token_ids``,
    or the whole vocabulary), soft-capped as the model does; float32.

    The product runs in ``dtype``; a frozen unembedding is cast once per model and dtype.
    For the last block's output this equals the model's own logits.
    """
    unembed = model.unembed.original_component
    weight = unembedding_weight(model, dtype)
    bias = getattr(unembed, "bias", None)
    if token_ids is not None:
        rows = token_ids.to(weight.device)
        weight = weight[rows]
        bias = None if bias is None else bias[rows]
    logits = F.linear(
        model.ln_final(resid).to(dtype), weight, None if bias is None else bias.to(dtype)
    ).float()
    softcap = adapter(model).final_softcap(model)
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def unembedding_weight(model: Any, dtype: torch.dtype) -> Tensor:
    """The unembedding in ``dtype``; a frozen one is cast once per model and dtype."""
    weight = model.unembed.original_component.weight
    if weight.dtype == dtype or weight.requires_grad:
        return weight.to(dtype)
    cached = getattr(model, "_icl_interp_unembedding", None)
    if cached is None or cached.dtype != dtype or cached.shape != weight.shape:
        cached = weight.detach().to(dtype)
        object.__setattr__(model, "_icl_interp_unembedding", cached)
    return cached


def forget_cast_unembedding(model: Any) -> None:
    """Drop the cached cast of the unembedding (after the weights may have changed)."""
    object.__setattr__(model, "_icl_interp_unembedding", None)
