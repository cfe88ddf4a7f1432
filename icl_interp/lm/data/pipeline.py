"""The one data -> prompts pipeline every pretrained-LM command uses (``make_prompts``).

data set name -> train/test examples (from the chosen source) -> seeded, balanced
demonstrations -> seeded evaluation examples disjoint from them -> token prompts packed into
the model's context. Every adjustment (fewer evaluation examples than asked, ``max_len``
clamped to the model's context, demonstrations dropped by packing) is printed and recorded in
``PromptProvenance.notes``; the provenance (data set spec, source, row counts, a fingerprint
of the examples) goes into each result's JSON so a result says exactly what it was made from.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tqdm.auto import tqdm

from icl_interp.lm.data.examples import Example
from icl_interp.lm.data.prompts import PromptSet, build_prompts, sample_demonstrations, select_eval
from icl_interp.lm.data.specs import DatasetSpec, describe_source, get_dataset, load_examples


def examples_fingerprint(examples: Sequence[Example]) -> str:
    """``sha256:<16 hex>`` of the examples' fields and labels, in order (what the data was)."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.fields, example.label], sort_keys=True).encode())
    return f"sha256:{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class PromptProvenance:
    """Where a ``PromptSet`` came from and what was adjusted on the way (JSON-ready)."""

    dataset: dict[str, Any]
    source: dict[str, str]
    rows: dict[str, int]
    fingerprint: dict[str, str]
    seed: int
    k_requested: int
    k_used: int
    n_test_requested: int
    n_test: int
    max_len: int
    prefix_tokens: int
    notes: list[str] = field(default_factory=list)
    other_k_used: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_prompts(
    tokenizer: Any, dataset: str, **options: Any
) -> tuple[DatasetSpec, PromptSet, PromptProvenance]:
    """Build one run's prompts for ``dataset`` (see ``make_prompt_sets`` for the options)."""
    spec, prompts, _, provenance = make_prompt_sets(tokenizer, dataset, **options)
    return spec, prompts, provenance


def make_prompt_sets(
    tokenizer: Any,
    dataset: str,
    *,
    n_test: int,
    seed: int,
    k: int | None = None,
    max_len: int = 2048,
    context: int | None = None,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    exclude: Sequence[Example] = (),
    other_draw: bool = False,
    eval_split: str = "test",
    log: Callable[[str], Any] = tqdm.write,
) -> tuple[DatasetSpec, PromptSet, PromptSet | None, PromptProvenance]:
    """Build one run's prompts for ``dataset``; ``k=None`` takes the data set's k.

    ``context`` (the model's context length) caps ``max_len``; ``exclude`` keeps further
    examples out of the evaluation set. With ``other_draw``, a second draw B disjoint from A
    (``_demonstrations``), packed to A's ``k_used``, gives the second ``PromptSet`` (same
    queries, which avoid both draws) returned instead of None.
    ``eval_split="train"`` draws the queries from the train split (validation data that never
    touches the test split). Adjustments go to ``log`` and the provenance's ``notes``.
    """
    spec = get_dataset(dataset)
    notes: list[str] = []
    splits = {
        split: load_examples(spec.name, split, data_dir, source=source)
        for split in dict.fromkeys(("train", eval_split))
    }
    k_requested = spec.k if k is None else k
    demonstrations, others = _demonstrations(splits["train"], k_requested, seed, other_draw)
    queries = select_eval(
        splits[eval_split],
        n_test,
        seed=seed,
        exclude=[*demonstrations, *others, *exclude],
        at_most=True,
    )
    if len(queries) < n_test:
        notes.append(
            f"{spec.name}: only {len(queries)} evaluation examples remain after excluding the "
            f"demonstrations; using {len(queries)} instead of {n_test}"
        )
    if context is not None and max_len > context:
        notes.append(f"{spec.name}: max_len {max_len} clamped to the model's context of {context}")
        max_len = context
    prompts = build_prompts(tokenizer, spec, demonstrations, queries, max_len=max_len)
    if prompts.k_used < k_requested:
        notes.append(
            f"{spec.name}: {k_requested} demonstrations do not fit in {max_len} tokens with the "
            f"longest query; packing keeps the first {prompts.k_used}"
        )
    other = None
    if other_draw:
        other = build_prompts(tokenizer, spec, others[: prompts.k_used], queries, max_len=max_len)
        if other.k_used < prompts.k_used:
            notes.append(
                f"{spec.name}: the second demonstration draw packs to {other.k_used} "
                f"demonstrations, not {prompts.k_used}"
            )
    for note in notes:
        log(note)
    provenance = PromptProvenance(
        dataset=spec.to_dict(),
        source={split: describe_source(spec.name, split, data_dir, source) for split in splits},
        rows={split: len(examples) for split, examples in splits.items()},
        fingerprint={split: examples_fingerprint(examples) for split, examples in splits.items()},
        seed=seed,
        k_requested=k_requested,
        k_used=prompts.k_used,
        n_test_requested=n_test,
        n_test=prompts.n_examples,
        max_len=max_len,
        prefix_tokens=int(prompts.prefix_ids.shape[0]),
        notes=notes,
        other_k_used=None if other is None else other.k_used,
    )
    return spec, prompts, other, provenance


def _demonstrations(
    train: Sequence[Example], k: int, seed: int, other_draw: bool
) -> tuple[list[Example], list[Example]]:
    """The demonstrations (draw A) and, with ``other_draw``, a disjoint draw B of the same
    size from the rest of the train split (else empty)."""
    demonstrations = sample_demonstrations(train, k, seed=seed)
    if not other_draw:
        return demonstrations, []
    taken = {example.content_key for example in demonstrations}
    rest = [example for example in train if example.content_key not in taken]
    return demonstrations, sample_demonstrations(rest, k, seed=seed)
