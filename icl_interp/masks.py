"""Attention masks: the mask-kind registry and the one builder every model in the project uses.

A mask is a boolean tensor ``[q_pos, k_pos]`` with True = the query position may
attend to the key position. Sequences are ``n_context`` context positions
followed by ``n_queries`` query positions. Mask kinds live in ``MASKS``; every
command, report and figure reads its list of masks (and their labels) from there,
so a new kind is one ``register_mask`` call:

- ``causal``: position j attends to i <= j.
- ``prefix``: the first ``n_prefix`` positions attend to each other freely; every
  later position attends causally (prefixLM).

Modifiers that apply to every kind:
- ``isolate_queries=True`` (LSA and synthetic tasks): the last ``n_queries``
  positions each attend to every context position and to nothing else, not even
  themselves; context positions never attend to queries.
- ``sliding_window=w``: additionally forbid pairs further apart than ``w - 1``
  positions (Gemma's local layers), in both directions.

Every mask ``build_mask`` returns lets every position attend to at least one key: a kind
(or a setting) under which some position has none is a ``UserError`` naming the position,
for every command alike (a softmax over no keys is NaN, or silently zero).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from icl_interp.errors import UserError
from icl_interp.registry import Registry

MaskRule = Callable[[Tensor, Tensor, int], Tensor]


@dataclass(frozen=True)
class MaskKind:
    """A kind of attention mask.

    ``rule(q, k, n_prefix)`` says, elementwise over broadcast position grids, which key
    positions ``k`` query position ``q`` may attend to, given the prefix length.
    ``reuses_prefix``: the prefix's keys and values never depend on later positions under
    this mask (prefix rows attend only inside the prefix), so they can be computed once and
    reused for every continuation. ``short`` names the kind in table rows ("PrefixLM").
    """

    name: str
    label: str
    short: str
    rule: MaskRule
    reuses_prefix: bool = True


MASKS: Registry[MaskKind] = Registry("mask kind")


def register_mask(kind: MaskKind) -> MaskKind:
    """Add a mask kind; it appears in every command's ``--masks`` and in every report."""
    MASKS.add(kind.name, kind)
    return kind


def _causal(q: Tensor, k: Tensor, n_prefix: int) -> Tensor:
    return k <= q


def _prefix(q: Tensor, k: Tensor, n_prefix: int) -> Tensor:
    return (k <= q) | ((q < n_prefix) & (k < n_prefix))


register_mask(MaskKind("causal", "causal (each token sees the past)", "CausalLM", _causal))
register_mask(
    MaskKind("prefix", "prefix (bidirectional demonstrations/context)", "PrefixLM", _prefix)
)


def mask_names() -> list[str]:
    """Registered mask kinds in registration order (causal, prefix, then user kinds)."""
    return list(MASKS.registered())


def build_mask(
    kind: str,
    seq_len: int,
    *,
    n_prefix: int = 0,
    n_queries: int = 0,
    isolate_queries: bool = False,
    sliding_window: int | None = None,
    device: torch.device | str | None = None,
) -> Bool[Tensor, "q_pos k_pos"]:
    """Build a ``[seq_len, seq_len]`` boolean mask (True = may attend).

    ``n_prefix`` is the number of leading positions that see each other under
    ``kind="prefix"``; with ``isolate_queries`` and no ``n_prefix`` given, the
    prefix is the whole context (``seq_len - n_queries``).
    """
    rule = MASKS.get(kind).rule
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if not 0 <= n_queries <= seq_len:
        raise ValueError(f"n_queries must be in [0, seq_len={seq_len}], got {n_queries}")
    n_context = seq_len - n_queries
    if isolate_queries and n_prefix == 0:
        n_prefix = n_context
    if not 0 <= n_prefix <= seq_len:
        raise ValueError(f"n_prefix must be in [0, seq_len={seq_len}], got {n_prefix}")
    if isolate_queries and n_prefix > n_context:
        raise ValueError(f"n_prefix={n_prefix} overlaps the {n_queries} isolated queries")
    if sliding_window is not None and sliding_window < 1:
        raise ValueError(f"sliding_window must be >= 1, got {sliding_window}")

    pos = torch.arange(seq_len, device=device)
    q, k = pos[:, None], pos[None, :]
    mask = rule(q, k, n_prefix)
    if not isinstance(mask, Tensor) or mask.shape != (seq_len, seq_len) or mask.dtype != torch.bool:
        what = (
            f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        )
        raise UserError(
            f"mask kind {kind!r}: its rule must return a boolean [q_pos, k_pos] tensor, got {what}"
        )
    if isolate_queries and n_queries > 0:
        is_query_row = q >= n_context
        mask = torch.where(is_query_row, k < n_context, mask & (k < n_context))
    if sliding_window is not None:
        mask = mask & ((q - k).abs() < sliding_window)
    keyless = (~mask.any(-1)).nonzero()
    if len(keyless):
        raise UserError(
            f"mask {kind!r} leaves a position with no key to attend to (position "
            f"{int(keyless[0])} of {seq_len}, n_prefix={n_prefix}); a mask kind must let "
            "every position attend to at least one key"
        )
    return mask


def additive_mask(
    mask: Bool[Tensor, "*batch q_pos k_pos"], dtype: torch.dtype = torch.float32
) -> Float[Tensor, "*batch q_pos k_pos"]:
    """Turn a boolean mask into 0 (allowed) / -inf (forbidden) scores to add."""
    out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return out.masked_fill(~mask, float("-inf"))


def masked_softmax(
    scores: Float[Tensor, "*batch q_pos k_pos"], mask: Bool[Tensor, "*batch q_pos k_pos"]
) -> Float[Tensor, "*batch q_pos k_pos"]:
    """Softmax over keys with forbidden entries exactly 0; rows with no allowed key give 0."""
    masked = scores.masked_fill(~mask, float("-inf"))
    pattern = torch.softmax(masked, dim=-1)
    return torch.nan_to_num(pattern, nan=0.0)
