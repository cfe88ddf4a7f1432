"""Per-layer capture at each example's last query position (what the metrics need, nothing more).

``capture(model, prefix_ids, query_ids, labels, label_token_ids, mask=...)`` runs every
query after a shared prefix (``[bos]`` for zero-shot, ``[bos] + demonstrations`` for
ICL) under a causal or prefix mask and records, per layer, only the last query position:
residual stream, attention output, pre-softmax attention logits to the query's own tokens,
and logit-lens label logits. With ``reuse_prefix`` (default) the prefix's keys and values
are computed once, under the chosen mask, and reused for every query; queries then run in
right-padded batches. ``capture_condition(model, prompts, condition)`` runs a ``Condition``
(zero-shot, or ICL under a mask kind) of a ``PromptSet``.

Masks are rebuilt for every layer from ``icl_interp.masks.build_mask`` with the layer's
sliding window (``icl_interp.lm.arch``): a 4D mask handed to a HF model replaces HF's own
masks, sliding windows included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from icl_interp.errors import UserError
from icl_interp.lm.arch import adapter, attention_logits, attention_mask_for, logit_lens
from icl_interp.lm.conditions import Condition
from icl_interp.lm.record import Capture
from icl_interp.masks import MASKS
from icl_interp.progress import progress as progress_bar

# --------------------------------------------------------------------------- masks


def run_with_mask(
    model: Any,
    input_ids: Int[Tensor, "batch pos"],
    *,
    mask: str,
    n_prefix: int = 0,
    fwd_hooks: Sequence[tuple[str, Callable[..., Any]]] = (),
) -> Float[Tensor, "batch pos vocab"]:
    """One full forward of ``input_ids`` under ``mask`` (prefix = first ``n_prefix`` tokens)."""
    seq_len = input_ids.shape[1]
    device = input_ids.device
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        output = model.original_model(
            input_ids=input_ids,
            attention_mask=attention_mask_for(
                model, mask, seq_len, n_prefix=n_prefix, device=device
            ),
            position_ids=torch.arange(seq_len, device=device)[None],
            use_cache=False,
        )
    return output.logits


# --------------------------------------------------------------------------- capture


class _LastPositionRecorder:
    """Forward hooks keeping, per layer, only the last query position and the query's keys."""

    def __init__(self, model: Any) -> None:
        self.n_layers = model.cfg.n_layers
        architecture = adapter(model)
        self.attn_hook = architecture.attn_out_hook
        self.hooks: list[tuple[str, Callable[..., Any]]] = []
        for layer in range(self.n_layers):
            self.hooks += [
                (f"blocks.{layer}.hook_out", self._store("resid", layer)),
                (f"blocks.{layer}.{self.attn_hook}", self._store("attn_out", layer)),
                (f"blocks.{layer}.{architecture.q_hook}", self._store("q", layer)),
                (f"blocks.{layer}.{architecture.k_hook}", self._store_keys(layer)),
            ]
        self.last: Tensor = torch.zeros(0, dtype=torch.long)
        self.key_start = 0
        self.key_len = 0
        self.values: dict[str, list[Tensor | None]] = {}

    def start(self, last: Int[Tensor, " batch"], key_start: int, key_len: int) -> None:
        self.last, self.key_start, self.key_len = last, key_start, key_len
        self.values = {name: [None] * self.n_layers for name in ("resid", "attn_out", "q", "k")}

    def _store(self, name: str, layer: int) -> Callable[..., Tensor]:
        def hook(activation: Tensor, hook: Any) -> Tensor:
            rows = torch.arange(activation.shape[0], device=activation.device)
            self.values[name][layer] = activation[rows, self.last].detach()
            return activation

        return hook

    def _store_keys(self, layer: int) -> Callable[..., Tensor]:
        def hook(activation: Tensor, hook: Any) -> Tensor:
            end = self.key_start + self.key_len
            self.values["k"][layer] = activation[:, self.key_start : end].detach()
            return activation

        return hook

    def stacked(self, name: str) -> Tensor:
        missing = [layer for layer, value in enumerate(self.values[name]) if value is None]
        if missing:
            raise RuntimeError(f"hooks for {name!r} did not fire at layers {missing}")
        return torch.stack(self.values[name], dim=1)  # type: ignore[arg-type]


def prefix_cache(
    model: Any, prefix_ids: Int[Tensor, " prefix"], mask: str
) -> list[tuple[Tensor, Tensor]]:
    """Keys and values of every layer for the prefix, computed under ``mask``."""
    from transformers import DynamicCache

    length = prefix_ids.shape[0]
    cache = DynamicCache()
    model.original_model.base_model(
        input_ids=prefix_ids[None],
        attention_mask=attention_mask_for(
            model, mask, length, n_prefix=length, device=prefix_ids.device
        ),
        position_ids=torch.arange(length, device=prefix_ids.device)[None],
        past_key_values=cache,
        use_cache=True,
    )
    if cache.get_seq_length() != length:  # a transformers / transformer-lens pair that drops it
        raise RuntimeError(
            "the model did not fill the key/value cache it was passed; install the transformers "
            "version pyproject.toml allows"
        )
    return [(layer.keys, layer.values) for layer in cache.layers]  # type: ignore[union-attr,misc]


def batched_cache(prefix_kv: list[tuple[Tensor, Tensor]], batch: int) -> Any:
    """A fresh cache holding the prefix for ``batch`` rows (HF caches grow in place)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (keys, values) in enumerate(prefix_kv):
        cache.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), layer)
    return cache


def _check_inputs(
    model: Any,
    prefix_ids: Tensor,
    query_ids: Sequence[Tensor],
    labels: Tensor,
    label_token_ids: Tensor,
) -> None:
    """Token ids within the vocabulary and labels within the label set, or a one-line error."""
    from icl_interp.lm.models import check_token_ids

    check_token_ids(model, prefix_ids, "prefix_ids")
    for i, ids in enumerate(query_ids):
        check_token_ids(model, ids, f"query_ids[{i}]")
    check_token_ids(model, label_token_ids, "label_token_ids")
    if labels.dtype.is_floating_point:
        raise UserError("labels must be integer indices into label_token_ids")
    n_labels = len(label_token_ids)
    outside = ((labels < 0) | (labels >= n_labels)).nonzero()
    if len(outside):
        i = int(outside[0])
        raise UserError(
            f"labels[{i}] = {int(labels[i])} is outside the label set 0..{n_labels - 1} "
            f"({n_labels} label tokens)"
        )


def _examples_to_run(
    model: Any,
    prefix_ids: Tensor,
    query_ids: Sequence[Tensor],
    labels: Tensor,
    label_token_ids: Tensor,
    batch_size: int,
    limit: int | None,
) -> int:
    """How many examples ``capture`` runs, after checking its arguments."""
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be >= 1, got {limit}")
    if len(query_ids) != len(labels):
        raise ValueError(f"{len(query_ids)} queries but {len(labels)} labels")
    if prefix_ids.ndim != 1 or prefix_ids.shape[0] < 1:
        raise ValueError("prefix_ids must be a non-empty 1D tensor starting with BOS")
    n_examples = len(query_ids) if limit is None else min(limit, len(query_ids))
    if any(len(ids) == 0 for ids in query_ids[:n_examples]):
        raise ValueError("every query needs at least one token")
    _check_inputs(model, prefix_ids, query_ids[:n_examples], labels, label_token_ids)
    return n_examples


def _forward_batch(
    model: Any,
    recorder: Any,
    prefix_ids: Tensor,
    prefix_kv: Any,
    queries: list[Tensor],
    mask: str,
    label_token_ids: Tensor,
) -> list[dict[str, Tensor]]:
    """One right-padded batch of queries after the prefix (its cached K/V, or the prefix's
    tokens in front of each query); per query, what ``capture`` records."""
    device = prefix_ids.device
    n_prefix = prefix_ids.shape[0]
    lengths = [len(ids) for ids in queries]
    width = max(lengths)
    padded = torch.full((len(queries), width), int(prefix_ids[0]), dtype=torch.long)
    for row, ids in enumerate(queries):
        padded[row, : lengths[row]] = ids
    padded = padded.to(device)
    if prefix_kv is not None:
        offset = 0
        input_ids = padded
        cache = batched_cache(prefix_kv, len(queries))
    else:
        offset = n_prefix
        input_ids = torch.cat([prefix_ids[None].expand(len(queries), -1), padded], dim=1)
        cache = None
    seq_len = n_prefix + width
    last = torch.tensor(lengths, device=device) - 1 + offset
    recorder.start(last, key_start=offset, key_len=width)
    model.original_model.base_model(
        input_ids=input_ids,
        attention_mask=attention_mask_for(
            model, mask, seq_len, n_prefix=n_prefix, first_row=n_prefix - offset, device=device
        ),
        position_ids=torch.arange(n_prefix - offset, seq_len, device=device)[None],
        past_key_values=cache,
        use_cache=cache is not None,
    )
    resid = recorder.stacked("resid")
    logits = attention_logits(model, recorder.stacked("q"), recorder.stacked("k")).float()
    lens = logit_lens(model, resid, label_token_ids).cpu()
    resid, attn_out = resid.float().cpu(), recorder.stacked("attn_out").float().cpu()
    logits = logits.cpu()
    return [
        {
            "resid": resid[row],
            "attn_out": attn_out[row],
            "attn_logits": logits[row, :, :, : lengths[row]],
            "lens": lens[row],
        }
        for row in range(len(queries))
    ]


def capture(
    model: Any,
    prefix_ids: Int[Tensor, " prefix"],
    query_ids: Sequence[Int[Tensor, " _q"]],
    labels: Int[Tensor, " example"],
    label_token_ids: Int[Tensor, " label"],
    *,
    mask: str = "causal",
    reuse_prefix: bool = True,
    limit: int | None = None,
    batch_size: int = 8,
    desc: str = "capture",
) -> Capture:
    """Run ``prefix + query`` for each query and record the last position of every layer.

    ``prefix_ids`` starts with BOS (``[bos]`` alone is zero-shot). Under ``mask="prefix"``
    the prefix tokens attend to each other bidirectionally; query tokens are causal. With
    ``reuse_prefix`` the prefix's keys/values are computed once (under ``mask``) and
    queries run in right-padded batches of ``batch_size``; without it, one full forward
    per example. Both give the same numbers (to float error). The unembedding itself is
    never run: label logits are the final norm + label rows of the unembedding applied to
    the last block's output, which equals the model's own logits.
    """
    if reuse_prefix and not MASKS.get(mask).reuses_prefix:
        reuse_prefix = False
    n_examples = _examples_to_run(
        model, prefix_ids, query_ids, labels, label_token_ids, batch_size, limit
    )
    device = torch.device(model.cfg.device)
    prefix_ids = prefix_ids.to(device)
    n_prefix = prefix_ids.shape[0]
    recorder = _LastPositionRecorder(model)
    order = sorted(range(n_examples), key=lambda e: len(query_ids[e]))
    if not reuse_prefix:
        batch_size = 1
    batches = [order[start : start + batch_size] for start in range(0, n_examples, batch_size)]
    per_example: dict[int, dict[str, Tensor]] = {}

    with torch.no_grad():
        prefix_kv = prefix_cache(model, prefix_ids, mask) if reuse_prefix else None
    with torch.no_grad(), model.hooks(fwd_hooks=recorder.hooks):
        progress = progress_bar(total=n_examples, desc=desc, unit="example", leave=False)
        for batch in batches:
            rows = _forward_batch(
                model, recorder, prefix_ids, prefix_kv, [query_ids[e] for e in batch], mask,
                label_token_ids,
            )  # fmt: skip
            per_example.update(zip(batch, rows, strict=True))
            progress.update(len(batch))
        progress.close()

    def gather(name: str) -> Tensor:
        return torch.stack([per_example[e][name] for e in range(n_examples)])

    layer_label_logits = gather("lens")
    return Capture(
        resid=gather("resid"),
        attn_out=gather("attn_out"),
        attn_logits=[per_example[e]["attn_logits"].clone() for e in range(n_examples)],
        label_logits=layer_label_logits[:, -1].clone(),
        layer_label_logits=layer_label_logits,
        labels=labels[:n_examples].clone().cpu(),
        meta={
            "mask": mask,
            "reuse_prefix": reuse_prefix,
            "n_prefix_tokens": n_prefix,
            "attn_out_hook": f"blocks.{{layer}}.{recorder.attn_hook}",
            "attention_windows": adapter(model).windows(model),
            "label_token_ids": label_token_ids.tolist(),
        },
    )


def capture_condition(model: Any, prompts: Any, condition: Condition, **options: Any) -> Capture:
    """Capture ``condition`` (``icl_interp.lm.conditions``) on a ``PromptSet``
    (``icl_interp.lm.data.make_prompts``): ``[bos] + query`` for zero-shot (pass a finetuned or
    re-initialised model to capture it zero-shot), demonstrations + query under the
    condition's mask for ICL. ``options`` go to ``capture``."""
    if condition.demonstrations:
        prefix_ids = prompts.prefix_ids
    else:
        prefix_ids = torch.tensor([prompts.bos_id], dtype=torch.long)
    options.setdefault("desc", condition.name)
    result = capture(
        model,
        prefix_ids,
        prompts.query_ids,
        prompts.labels,
        prompts.label_token_ids,
        mask=condition.mask,
        **options,
    )
    result.meta.update(
        condition=condition.name, k_used=prompts.k_used if condition.demonstrations else 0
    )
    return result
