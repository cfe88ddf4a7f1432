"""Activation patching of the residual stream: read it at (layer, position) of one prompt,
write it into another prompt's forward.

The residual stream "at layer l" is the output of block l (hook ``blocks.{l}.hook_out``, the
one ``icl_interp.lm.capture`` records as ``resid``). Both directions go through the bridge's
hooks around one HF forward (:func:`icl_interp.lm.capture.run_with_mask`), so there is one code
path for every architecture family, under any registered mask kind::

    source = read_residuals(model, icl_ids[None], mask="prefix", n_prefix=len(prefix))
    logits = run_patched(model, zero_shot_ids[None], [Patch(layer=6, position=-1,
                         value=source[:, 6])])

A patch replaces the residual of every batch row at ``position`` after block ``layer``;
blocks above it read the patched value, positions before it are untouched under causal and
prefix masks when ``position`` is after the prefix.

``patched_last_logits(model, ids, layers, values)`` is the fast form for many patches of one
causal prompt's last position: the keys and values of the earlier positions do not depend on
such a patch, so they are computed once and every patch costs one forward of the last token
(one batch row per patch) instead of a forward of the whole prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from icl_interp.errors import UserError
from icl_interp.lm.arch import attention_mask_for
from icl_interp.lm.capture import batched_cache, prefix_cache, run_with_mask


def resid_hook(layer: int) -> str:
    """The hook whose output is the residual stream after block ``layer``."""
    return f"blocks.{layer}.hook_out"


@dataclass(frozen=True)
class Patch:
    """Write ``value`` (one row per batch row) into the residual after block ``layer`` at
    ``position`` (negative counts from the end)."""

    layer: int
    position: int
    value: Float[Tensor, "batch d_model"]


def _check_layer(model: Any, layer: int) -> None:
    n_layers = model.cfg.n_layers
    if not 0 <= layer < n_layers:
        raise UserError(f"layer must be in 0..{n_layers - 1} for this model, got {layer}")


def _check_position(position: int, seq_len: int) -> None:
    if not -seq_len <= position < seq_len:
        raise UserError(f"position {position} is outside a {seq_len}-token prompt")


def read_residuals(
    model: Any,
    input_ids: Int[Tensor, "batch pos"],
    *,
    position: int = -1,
    mask: str = "causal",
    n_prefix: int = 0,
) -> Float[Tensor, "batch layer d_model"]:
    """The residual after every block at ``position`` (one forward; detached, model dtype and
    device)."""
    seq_len = input_ids.shape[1]
    _check_position(position, seq_len)
    kept: dict[int, Tensor] = {}

    def keep(layer: int) -> Callable[..., Tensor]:
        def hook(activation: Tensor, hook: Any) -> Tensor:
            kept[layer] = activation[:, position].detach().clone()
            return activation

        return hook

    hooks = [(resid_hook(layer), keep(layer)) for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        run_with_mask(model, input_ids, mask=mask, n_prefix=n_prefix, fwd_hooks=hooks)
    missing = [layer for layer in range(model.cfg.n_layers) if layer not in kept]
    if missing:
        raise RuntimeError(f"residual hooks did not fire at layers {missing}")
    return torch.stack([kept[layer] for layer in range(model.cfg.n_layers)], dim=1)


def run_patched(
    model: Any,
    input_ids: Int[Tensor, "batch pos"],
    patches: Sequence[Patch],
    *,
    mask: str = "causal",
    n_prefix: int = 0,
) -> Float[Tensor, "batch pos vocab"]:
    """The logits of one forward of ``input_ids`` with every patch written in (no grad)."""
    batch, seq_len = input_ids.shape
    hooks = []
    for patch in patches:
        _check_layer(model, patch.layer)
        _check_position(patch.position, seq_len)
        if patch.value.shape != (batch, model.cfg.d_model):
            raise UserError(
                f"a patch value must have shape [{batch}, {model.cfg.d_model}] (batch, d_model), "
                f"got {list(patch.value.shape)}"
            )
        hooks.append((resid_hook(patch.layer), _writer(slice(None), patch.position, patch.value)))
    with torch.no_grad():
        return run_with_mask(model, input_ids, mask=mask, n_prefix=n_prefix, fwd_hooks=hooks)


def _writer(rows: Tensor | slice, position: int, value: Tensor) -> Callable[..., Tensor]:
    """A hook writing ``value`` into the residual of batch ``rows`` at ``position``."""

    def hook(activation: Tensor, hook: Any) -> Tensor:
        patched = activation.clone()
        where = rows.to(activation.device) if isinstance(rows, Tensor) else rows
        patched[where, position] = value.to(activation.device, activation.dtype)
        return patched

    return hook


def patched_last_logits(
    model: Any,
    input_ids: Int[Tensor, " pos"],
    layers: Sequence[int],
    values: Float[Tensor, "row d_model"],
) -> Float[Tensor, "row vocab"]:
    """The last position's logits of the causal prompt ``input_ids``, one row per patch: row r
    has the residual after block ``layers[r]`` at the last position replaced by ``values[r]``.
    The earlier positions' keys/values are computed once and reused (they do not depend on a
    patch of the last position); equal to ``run_patched`` per patch up to float rounding."""
    if len(layers) != values.shape[0] or values.shape[1:] != (model.cfg.d_model,):
        raise UserError(
            f"values must have shape [{len(layers)}, {model.cfg.d_model}] (one row per layer), "
            f"got {list(values.shape)}"
        )
    for layer in set(layers):
        _check_layer(model, layer)
    seq_len = input_ids.shape[0]
    device = input_ids.device
    rows = len(layers)
    row_layers = torch.tensor(list(layers), device=values.device)
    hooks = [
        (resid_hook(layer), _writer(row_layers == layer, -1, values[row_layers == layer]))
        for layer in sorted(set(layers))
    ]
    cache = (
        batched_cache(prefix_cache(model, input_ids[:-1], "causal"), rows) if seq_len > 1 else None
    )
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        output = model.original_model(
            input_ids=input_ids[-1:].expand(rows, 1),
            attention_mask=attention_mask_for(
                model, "causal", seq_len, first_row=seq_len - 1, device=device
            ),
            position_ids=torch.tensor([[seq_len - 1]], device=device),
            past_key_values=cache,
            use_cache=cache is not None,
        )
    return output.logits[:, -1]
