"""Where the query reads in the prompt: the last position's attention over the whole prompt.

``prompt_layout(prompts, example, demonstrations=...)`` says what every position of a prompt is
(BOS, which demonstration and which part of it: input, label token, separator, or the query),
from the ``PromptSet``'s own token ids (nothing is re-tokenized). ``prompt_attention(model,
prompts, condition, examples)`` runs one full forward per example under the condition's mask
(``run_with_mask``: per-layer masks, sliding windows included) and keeps, per layer and head,
only the last position's row:

- ``prob``: the model's own attention probabilities (``hook_pattern``), exactly 0 where the
  mask (or a sliding window) forbids the key;
- ``logit``: the scaled q.k score **before mask and softmax** (soft-capped where the model
  does), computed as ``capture`` computes ``attn_logits``, so it is finite at every position
  and equals the model's ``hook_attn_scores`` wherever the key is allowed;
- ``allowed``: whether the layer's mask lets the last position read the key.

Under both registered masks the last position is a query position and reads causally, so the
keys it may read are the same; what differs between masks is how the demonstrations were
encoded. ``attention_table`` tidies rows of several conditions into one frame
(``PROMPT_ATTENTION_COLUMNS``); ``segment_mass`` and ``demonstration_mass`` sum probabilities per
segment, the numbers the figures and the explorer notebook show.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from icl_interp.lm.arch import adapter, attention_logits
from icl_interp.lm.capture import run_with_mask
from icl_interp.lm.conditions import Condition
from icl_interp.masks import build_mask

KEY_COLUMNS = ["model", "data", "seed"]
PROMPT_ATTENTION_COLUMNS = [
    *KEY_COLUMNS,
    "example",
    "condition",
    "layer",
    "head",
    "position",
    "token",
    "segment",
    "demo",
    "role",
    "is_label",
    "query_position",
    "allowed",
    "prob",
    "logit",
]
ROLES = ("bos", "input", "label", "separator", "query")


@dataclass(frozen=True)
class PromptLayout:
    """Per position of one prompt: token id, segment (``bos``, ``demo_<i>``, ``query``),
    demonstration index (-1 outside demonstrations), role (``ROLES``), and the position within
    the query (-1 before it)."""

    token_ids: list[int]
    segment: list[str]
    demo: list[int]
    role: list[str]
    query_position: list[int]

    @property
    def n_prefix(self) -> int:
        return self.query_position.index(0)

    def __len__(self) -> int:
        return len(self.token_ids)


def prompt_layout(prompts: Any, example: int, *, demonstrations: bool) -> PromptLayout:
    """The layout of ``prompts.icl_ids(example)`` (or ``zsl_ids`` without demonstrations).

    Demonstration boundaries come from ``prompts.demo_ids`` (``[bos] + input + label``) and the
    prefix: each demonstration occupies ``len(demo_ids[i]) - 1`` tokens then the separator, whose
    length is what remains of the prefix, shared equally; the label token is checked against
    ``prompts.label_token_ids``.
    """
    prefix = prompts.prefix_ids.tolist() if demonstrations else [prompts.bos_id]
    query = prompts.query_ids[example].tolist()
    segment, demo, role = ["bos"], [-1], ["bos"]
    if demonstrations and prompts.k_used:
        bodies = [len(ids) - 1 for ids in prompts.demo_ids]
        separator, extra = divmod(len(prefix) - 1 - sum(bodies), prompts.k_used)
        if extra or separator < 0:
            raise ValueError(
                f"prefix of {len(prefix)} tokens does not split into {prompts.k_used} "
                "demonstrations + separators"
            )
        for index, body in enumerate(bodies):
            label_at = len(segment) + body - 1
            expected = int(prompts.label_token_ids[prompts.demonstrations[index].label])
            if prefix[label_at] != expected:
                raise ValueError(
                    f"demonstration {index}: token {prefix[label_at]} at position {label_at} "
                    f"is not its label token {expected}"
                )
            segment += [f"demo_{index}"] * (body + separator)
            demo += [index] * (body + separator)
            role += ["input"] * (body - 1) + ["label"] + ["separator"] * separator
    n_prefix = len(segment)
    segment += ["query"] * len(query)
    demo += [-1] * len(query)
    role += ["query"] * len(query)
    return PromptLayout(
        token_ids=prefix + query,
        segment=segment,
        demo=demo,
        role=role,
        query_position=[-1] * n_prefix + list(range(len(query))),
    )


class _LastRowRecorder:
    """Hooks keeping, per layer, the last position's attention probabilities and its q and
    the keys (for pre-mask logits)."""

    def __init__(self, model: Any) -> None:
        architecture = adapter(model)
        self.n_layers = model.cfg.n_layers
        self.values: dict[str, list[Tensor | None]] = {
            name: [None] * self.n_layers for name in ("prob", "q", "k")
        }
        self.hooks: list[tuple[str, Callable[..., Any]]] = []
        for layer in range(self.n_layers):
            self.hooks += [
                (f"blocks.{layer}.attn.hook_pattern", self._keep("prob", layer, last=True)),
                (f"blocks.{layer}.{architecture.q_hook}", self._keep("q", layer, last=True)),
                (f"blocks.{layer}.{architecture.k_hook}", self._keep("k", layer, last=False)),
            ]

    def _keep(self, name: str, layer: int, *, last: bool) -> Callable[..., Tensor]:
        def hook(activation: Tensor, hook: Any) -> Tensor:
            if name == "prob":  # [batch, head, q_pos, k_pos]
                kept = activation[:, :, -1, :]
            else:  # [batch, pos, head, d_head]
                kept = activation[:, -1] if last else activation
            self.values[name][layer] = kept.detach().float()
            return activation

        return hook

    def stacked(self, name: str) -> Tensor:
        missing = [layer for layer, value in enumerate(self.values[name]) if value is None]
        if missing:
            raise RuntimeError(
                f"attention hooks for {name!r} did not fire at layers {missing} "
                "(the model must run eager attention to expose hook_pattern)"
            )
        return torch.stack(self.values[name], dim=1)  # type: ignore[arg-type]


def last_row_attention(
    model: Any, layout: PromptLayout, mask: str
) -> tuple[Float[Tensor, "layer head key"], Float[Tensor, "layer head key"]]:
    """(probabilities, pre-mask logits) of the last position over every key of one prompt
    run under ``mask`` (prefix = the demonstrations); CPU, float32, detached."""
    device = torch.device(model.cfg.device)
    input_ids = torch.tensor([layout.token_ids], dtype=torch.long, device=device)
    recorder = _LastRowRecorder(model)
    with torch.no_grad():
        run_with_mask(
            model, input_ids, mask=mask, n_prefix=layout.n_prefix, fwd_hooks=recorder.hooks
        )
    probs = recorder.stacked("prob")[0]
    logits = attention_logits(model, recorder.stacked("q"), recorder.stacked("k"))[0]
    return probs.cpu(), logits.float().cpu()


def allowed_keys(model: Any, layout: PromptLayout, mask: str) -> np.ndarray:
    """``[layer, key]``: may the last position read the key at this layer (``build_mask`` with
    the layer's sliding window)?"""
    seq_len = len(layout)
    rows = [
        build_mask(mask, seq_len, n_prefix=layout.n_prefix, sliding_window=window)[-1]
        for window in adapter(model).windows(model)
    ]
    return torch.stack(rows).numpy()


def prompt_attention(
    model: Any,
    prompts: Any,
    condition: Condition,
    examples: int,
    *,
    tokenizer: Any = None,
    name: str | None = None,
) -> pd.DataFrame:
    """The last position's attention over the whole prompt for the first ``examples`` test
    examples under ``condition`` (a finetuned model: pass it with ``ZERO_SHOT`` and a ``name``
    such as ``"gd"``); one row per example x layer x head x position, columns
    ``PROMPT_ATTENTION_COLUMNS`` without the model/data/seed keys."""
    tokenizer = model.tokenizer if tokenizer is None else tokenizer
    frames = []
    for example in range(min(examples, prompts.n_examples)):
        layout = prompt_layout(prompts, example, demonstrations=condition.demonstrations)
        probs, logits = last_row_attention(model, layout, condition.mask)
        allowed = allowed_keys(model, layout, condition.mask)
        n_layers, n_heads, n_keys = probs.shape
        per_key = {
            "position": np.arange(n_keys),
            "token": np.array(tokenizer.convert_ids_to_tokens(layout.token_ids), dtype=object),
            "segment": np.array(layout.segment, dtype=object),
            "demo": np.array(layout.demo),
            "role": np.array(layout.role, dtype=object),
            "is_label": np.array(layout.role, dtype=object) == "label",
            "query_position": np.array(layout.query_position),
        }
        frame = pd.DataFrame({key: np.tile(v, n_layers * n_heads) for key, v in per_key.items()})
        frame.insert(0, "head", np.tile(np.repeat(np.arange(n_heads), n_keys), n_layers))
        frame.insert(0, "layer", np.repeat(np.arange(n_layers), n_heads * n_keys))
        frame.insert(0, "condition", name or condition.name)
        frame.insert(0, "example", example)
        frame["allowed"] = np.repeat(allowed, n_heads, axis=0).reshape(-1)
        frame["prob"] = probs.reshape(-1).numpy()
        frame["logit"] = logits.reshape(-1).numpy()
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def attention_table(frames: Sequence[pd.DataFrame], **keys: Any) -> pd.DataFrame:
    """Concatenate ``prompt_attention`` frames and add ``keys`` (model, data, seed) in front."""
    table = pd.concat(list(frames), ignore_index=True).assign(**keys)
    return table[[*keys, *(c for c in PROMPT_ATTENTION_COLUMNS if c not in keys)]]


class PromptAttentionCollector:
    """Collects ``prompt_attention`` of the base model's conditions and finetuned models as
    ``compare`` captures them (``add`` is its ``on_model`` callback); ``table(**keys)`` is the
    unit's ``.prompt_attention.csv``. The untrained scope is skipped."""

    def __init__(self, prompts: Any, examples: int) -> None:
        self.prompts, self.examples = prompts, examples
        self.frames: list[pd.DataFrame] = []
        self.seconds = 0.0

    def add(self, scope: str, name: str, model: Any, condition: Condition) -> None:
        if scope != "base" or self.examples < 1:
            return
        started = time.perf_counter()
        self.frames.append(
            prompt_attention(model, self.prompts, condition, self.examples, name=name)
        )
        self.seconds = round(self.seconds + time.perf_counter() - started, 1)

    def table(self, **keys: Any) -> pd.DataFrame:
        if not self.frames:
            return pd.DataFrame(columns=PROMPT_ATTENTION_COLUMNS)
        return attention_table(self.frames, **keys)


def read_prompt_attention(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``prompt_attention.csv`` (token strings stay strings, even "nan" or "None")."""
    return pd.read_csv(
        path,
        keep_default_na=False,
        na_values={"prob": ["nan"], "logit": ["nan"]},
        dtype={"token": str, "segment": str, "role": str, "condition": str, "model": str},
    )


# --------------------------------------------------------------------------- summaries


def segment_mass(table: pd.DataFrame, by: Sequence[str] = ("segment",)) -> pd.DataFrame:
    """Attention probability summed over the positions of each group ``by`` (e.g. segment,
    role), per model x data x seed x example x condition x layer x head."""
    keys = [c for c in (*KEY_COLUMNS, "example", "condition", "layer", "head") if c in table]
    return table.groupby([*keys, *by], as_index=False, sort=False)["prob"].sum()


def demonstration_mass(
    table: pd.DataFrame, layer: int, conditions: Sequence[str] | None = None
) -> pd.DataFrame:
    """Which demonstrations the query reads at ``layer``: per demonstration (plus BOS and the
    query itself), the attention mass of the last position (mean over heads and examples),
    one column per condition (default: every condition with demonstrations), the part of it
    on the demonstration's label token, the label token itself, and ``readable``: the fraction
    of the segment's keys the layer lets the last position read (0 = outside the sliding window;
    the same under every registered mask)."""
    rows = table[table["layer"] == layer]
    with_demos = rows.groupby("condition", sort=False)["demo"].max() >= 0
    chosen = list(conditions) if conditions is not None else list(with_demos[with_demos].index)
    rows = rows[rows["condition"].isin(chosen)]
    mass = segment_mass(rows, by=("segment",))
    per_head = mass.groupby(["condition", "segment"], sort=False)["prob"].mean()
    wide = per_head.unstack("condition")[chosen]
    order = ["bos", *sorted((s for s in wide.index if s.startswith("demo_")), key=_demo_index)]
    wide = wide.reindex([*order, "query"])
    labels = rows[rows["is_label"]].drop_duplicates("segment").set_index("segment")["token"]
    label_mass = segment_mass(rows[rows["is_label"]], by=("segment",))
    label_share = label_mass.groupby(["condition", "segment"], sort=False)["prob"].mean()
    for condition in chosen:
        wide[f"{condition} on label"] = label_share.get(condition, pd.Series(dtype=float))
    readable = rows[rows["condition"] == chosen[0]].groupby("segment")["allowed"].mean()
    wide.insert(0, "readable", readable.reindex(wide.index))
    wide.insert(0, "label token", labels.reindex(wide.index).fillna(""))
    wide.columns.name = None
    wide.index.name = f"layer {layer}"
    return wide


def _demo_index(segment: str) -> int:
    return int(segment.removeprefix("demo_"))
