"""Demonstration sampling, evaluation sets, and token-level prompts (``build_prompts`` -> ``PromptSet``).

Token layout (pieces are tokenized separately and concatenated, so a query's tokens are the same in
every condition):
    demonstration i:  tok(format(demo_i)) + [label token] + tok(separator)
    prefix_ids:       [bos] + demonstration 1 + ... + demonstration k_used
    query_ids[e]:     tok(format(query_e))                      (no label word)
    ZSL input:        [bos] + query_ids[e];  ICL input: prefix_ids + query_ids[e]
    demo_ids[i]:      [bos] + tok(format(demo_i)) + [label token]   (finetuning sequences)
The label word is always the single token checked by ``label_token_ids``, so demonstrations carry
exactly the token that is scored at the query.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate

import torch
from jaxtyping import Int
from torch import Tensor

from icl_interp.errors import UserError
from icl_interp.lm.data.examples import Example
from icl_interp.lm.data.specs import DatasetSpec


def distinct_inputs(examples: Iterable[Example]) -> list[Example]:
    """The first example of every distinct input (``content_key``), in order."""
    seen: set[tuple[tuple[str, str], ...]] = set()
    unique = []
    for example in examples:
        if example.content_key not in seen:
            seen.add(example.content_key)
            unique.append(example)
    return unique


def sample_demonstrations(
    examples: Sequence[Example], k: int, seed: int, balanced: bool = True
) -> list[Example]:
    """``k`` examples with distinct inputs drawn with ``seed``, in a seeded random order.

    balanced=True gives every label present in ``examples`` floor(k / n_labels) demonstrations and
    hands the remainder to randomly chosen labels; a label with too few examples gives all it has and
    the shortfall goes to the other labels (so k is always met when the pool has k distinct inputs).
    """
    if k < 0:
        raise UserError(f"k must be >= 0, got {k}")
    pool = distinct_inputs(examples)
    if k > len(pool):
        raise UserError(
            f"asked for k={k} demonstrations but the pool has only {len(pool)} distinct examples"
        )
    rng = random.Random(seed)
    if not balanced:
        return rng.sample(pool, k)
    by_label: dict[int, list[Example]] = {}
    for example in pool:
        by_label.setdefault(example.label, []).append(example)
    labels = sorted(by_label)
    quota = _balanced_quota({label: len(by_label[label]) for label in labels}, k, rng)
    chosen = [ex for label in labels for ex in rng.sample(by_label[label], quota[label])]
    rng.shuffle(chosen)
    return chosen


def permute_labels(demonstrations: Sequence[Example], seed: int) -> list[Example]:
    """The demonstrations in the same order with their labels permuted among them (seeded).

    The label counts are kept (a balanced set stays balanced). Positions are sorted by label
    (ties in a seeded random order) and each takes the label ``m`` places further on, ``m`` the
    largest label count: no demonstration keeps its label unless one label holds more than half
    of them, and then as few as possible do.
    """
    rng = random.Random(seed)
    order = sorted(
        range(len(demonstrations)), key=lambda i: (demonstrations[i].label, rng.random())
    )
    labels = [demonstrations[i].label for i in order]
    if not labels:
        return []
    shift = max(labels.count(label) for label in set(labels))
    new_label = {
        position: labels[(rank + shift) % len(labels)] for rank, position in enumerate(order)
    }
    return [
        Example(fields=example.fields, label=new_label[i])
        for i, example in enumerate(demonstrations)
    ]


def _balanced_quota(available: dict[int, int], k: int, rng: random.Random) -> dict[int, int]:
    quota = dict.fromkeys(available, 0)
    remaining = k
    while remaining > 0:
        open_labels = [label for label in available if quota[label] < available[label]]
        share, extra = divmod(remaining, len(open_labels))
        lucky = set(rng.sample(open_labels, extra))
        for label in open_labels:
            quota[label] += min(share + (label in lucky), available[label] - quota[label])
        remaining = k - sum(quota.values())
    return quota


def select_eval(
    examples: Sequence[Example],
    n: int | None,
    seed: int,
    exclude: Iterable[Example] = (),
    *,
    at_most: bool = False,
) -> list[Example]:
    """``n`` evaluation examples drawn with ``seed`` (all of them when ``n`` is None), in a seeded order.

    Examples whose inputs equal those of any example in ``exclude`` (the demonstrations) are never
    chosen, whatever their label, so evaluation is disjoint from the demonstrations; repeated inputs
    count once (the first copy's label). Asking for more than remain is an error, unless
    ``at_most`` (then all that remain are returned).
    """
    excluded = {example.content_key for example in exclude}
    pool = [ex for ex in distinct_inputs(examples) if ex.content_key not in excluded]
    if n is None or (at_most and n > len(pool)):
        n = len(pool)
    if n < 0:
        raise UserError(f"number of evaluation examples must be >= 0, got {n}")
    if n > len(pool):
        raise UserError(
            f"asked for {n} evaluation examples but only {len(pool)} remain after excluding the demonstrations"
        )
    return random.Random(seed).sample(pool, n)


def filter_by_length(
    tokenizer, spec: DatasetSpec, examples: Sequence[Example], max_tokens: int
) -> list[Example]:
    """The examples whose input (template filled, no label word) is at most ``max_tokens`` tokens.

    For data sets with very long inputs (IMDB), so that every query fits the model context.
    """
    if max_tokens < 1:
        raise UserError(f"max_tokens must be >= 1, got {max_tokens}")
    lengths = [len(ids) for ids in _token_ids(tokenizer, [spec.format(ex) for ex in examples])]
    return [ex for ex, length in zip(examples, lengths, strict=True) if length <= max_tokens]


def _token_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def _describe_tokens(tokenizer, ids: Sequence[int]) -> str:
    return f"{list(ids)} = {tokenizer.convert_ids_to_tokens(list(ids))}"


def label_token_ids(tokenizer, label_words: Sequence[str]) -> Int[Tensor, " label"]:
    """The single token of each label word; UserError listing every word that is not one distinct known token."""
    problems = []
    ids = []
    unk = getattr(tokenizer, "unk_token_id", None)
    for word, word_ids in zip(label_words, _token_ids(tokenizer, label_words), strict=True):
        if len(word_ids) != 1:
            problems.append(
                f"{word!r} -> {len(word_ids)} tokens {_describe_tokens(tokenizer, word_ids)}"
            )
        elif unk is not None and word_ids[0] == unk:
            problems.append(
                f"{word!r} -> the unknown token {_describe_tokens(tokenizer, word_ids)}"
            )
        else:
            ids.append(word_ids[0])
    if problems:
        raise UserError(
            "label words must each be one token of this tokenizer: "
            + "; ".join(problems)
            + " (choose other label words, e.g. lower case or a synonym)"
        )
    if len(set(ids)) != len(ids):
        raise UserError(f"label words {list(label_words)} share tokens: {ids}")
    return torch.tensor(ids, dtype=torch.long)


def bos_token_id(tokenizer) -> int:
    """The tokenizer's BOS id; tokenizers without one (GPT-2 style) start documents with EOS."""
    for name in ("bos_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    raise UserError("the tokenizer has neither a BOS nor an EOS token to start prompts with")


@dataclass(frozen=True)
class PromptSet:
    """Token ids for one run: shared demonstration prefix, per-query ids, labels and label tokens.

    ``demonstrations`` are the ones actually used (the first ``k_used`` of those requested, in order);
    ``demo_ids`` are their finetuning sequences. ``query_ids`` and ``demo_ids`` vary in length.
    """

    prefix_ids: Int[Tensor, " prefix"]
    query_ids: list[Int[Tensor, " _q"]]
    labels: Int[Tensor, " example"]
    label_token_ids: Int[Tensor, " label"]
    demo_ids: list[Int[Tensor, " _tok"]]
    bos_id: int
    k_requested: int
    k_used: int
    max_len: int | None
    demonstrations: tuple[Example, ...]
    queries: tuple[Example, ...]

    def __post_init__(self) -> None:
        if len(self.query_ids) != len(self.labels) or len(self.queries) != len(self.labels):
            raise ValueError("query_ids, queries and labels must have one entry per example")
        if len(self.demo_ids) != self.k_used or len(self.demonstrations) != self.k_used:
            raise ValueError("demo_ids and demonstrations must have k_used entries")

    @property
    def n_examples(self) -> int:
        return len(self.query_ids)

    def zsl_ids(self, index: int) -> Int[Tensor, " seq"]:
        """[bos] + query tokens of example ``index``."""
        return torch.cat([torch.tensor([self.bos_id], dtype=torch.long), self.query_ids[index]])

    def icl_ids(self, index: int) -> Int[Tensor, " seq"]:
        """prefix + query tokens of example ``index``."""
        return torch.cat([self.prefix_ids, self.query_ids[index]])


def _ids(values: Sequence[int]) -> Int[Tensor, " n"]:
    return torch.tensor(list(values), dtype=torch.long)


def build_prompts(
    tokenizer,
    spec: DatasetSpec,
    demonstrations: Sequence[Example],
    queries: Sequence[Example],
    max_len: int | None,
) -> PromptSet:
    """Tokenize demonstrations and queries for ``spec`` and pack them into ``max_len`` tokens.

    Packing drops demonstrations from the end until len(prefix) + len(longest query) <= max_len
    (``k_used`` records how many remain; ``max_len=None`` packs nothing). If even [bos] + the longest
    query does not fit, it is a UserError naming that example. ``tokenizer`` is any Hugging Face
    tokenizer (called as ``tokenizer(texts, add_special_tokens=False)``).
    """
    if max_len is not None and max_len < 2:
        raise UserError(f"max_len must be >= 2, got {max_len}")
    if not queries:
        raise UserError("build_prompts needs at least one query")
    label_ids = label_token_ids(tokenizer, spec.label_words)
    bos = bos_token_id(tokenizer)
    demo_inputs = _token_ids(tokenizer, [spec.format(ex) for ex in demonstrations])
    query_inputs = _token_ids(tokenizer, [spec.format(ex) for ex in queries])
    separator = _token_ids(tokenizer, [spec.separator])[0]
    for index, ids in enumerate(query_inputs):
        if not ids:
            raise UserError(f"query {index} tokenizes to nothing: {spec.format(queries[index])!r}")

    longest = max(range(len(queries)), key=lambda i: len(query_inputs[i]))
    k_used = len(demonstrations)
    if max_len is not None:
        if 1 + len(query_inputs[longest]) > max_len:
            raise UserError(
                f"{spec.name} query {longest} needs {1 + len(query_inputs[longest])} tokens with no "
                f"demonstrations, more than max_len={max_len}: {spec.format(queries[longest])[:100]!r}...; "
                "raise max_len or drop long examples with filter_by_length"
            )
        budget = max_len - 1 - len(query_inputs[longest])
        prefix_lengths = accumulate(len(ids) + 1 + len(separator) for ids in demo_inputs)
        k_used = sum(1 for length in prefix_lengths if length <= budget)

    prefix = [bos]
    demo_ids = []
    for ex, ids in zip(demonstrations[:k_used], demo_inputs[:k_used], strict=True):
        label_token = int(label_ids[ex.label])
        prefix += ids + [label_token] + separator
        demo_ids.append(_ids([bos, *ids, label_token]))
    return PromptSet(
        prefix_ids=_ids(prefix),
        query_ids=[_ids(ids) for ids in query_inputs],
        labels=_ids([ex.label for ex in queries]),
        label_token_ids=label_ids,
        demo_ids=demo_ids,
        bos_id=bos,
        k_requested=len(demonstrations),
        k_used=k_used,
        max_len=max_len,
        demonstrations=tuple(demonstrations[:k_used]),
        queries=tuple(queries),
    )


def with_permuted_labels(tokenizer, spec: DatasetSpec, prompts: PromptSet, seed: int) -> PromptSet:
    """``prompts`` with its demonstrations' labels permuted (``permute_labels``): the same
    inputs, queries and packing, so every difference from ``prompts`` is the labels'."""
    shuffled = permute_labels(prompts.demonstrations, seed)
    return build_prompts(tokenizer, spec, shuffled, prompts.queries, max_len=prompts.max_len)
