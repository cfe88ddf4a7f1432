"""ICL episodes for adaptation: ``[bos] + k demonstrations`` then ``queries`` query + answer
segments from a registered data set's train split (``EpisodeStream``). Episode ``i`` of seed ``s``
is a pure function of ``(s, i)``, so every objective sees the same episodes in the same order and
a resumed run sees exactly what an uninterrupted one would."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from icl_interp.errors import UserError


@dataclass(frozen=True)
class Episode:
    """One training sequence: token ids, their position ids, their segment (0 for ``[bos] +
    demonstrations``, ``j`` for query ``j``), the prefix length and the loss positions (position
    ``p`` predicts token ``ids[p + 1]``; the last ``n_queries`` are the queries' answers)."""

    ids: Int[Tensor, " seq"]
    positions: Int[Tensor, " seq"]
    segments: Int[Tensor, " seq"]
    n_prefix: int
    loss_positions: Int[Tensor, " n_loss"]
    dataset: str
    k_used: int
    n_queries: int

    @property
    def targets(self) -> Int[Tensor, " n_loss"]:
        return self.ids[self.loss_positions + 1]

    @property
    def answer_positions(self) -> Int[Tensor, " n_queries"]:
        return self.loss_positions[-self.n_queries :]


@dataclass
class EpisodeStream:
    """Episodes of a mixture, episode ``i`` a pure function of ``(seed, split, i)``.

    Each episode picks a data set uniformly, draws ``k`` label-balanced demonstrations and
    ``queries`` queries with other inputs from that data set's ``split`` pool, and packs them so
    that the demonstrations plus the longest query fit ``max_len`` tokens (demonstrations
    dropped from the end; ``k_used`` says how many remain).
    """

    tokenizer: Any
    mixture: tuple[str, ...]
    k: int
    max_len: int
    seed: int
    queries: int = 1
    loss_on: str = "answer"
    split: str = "train"
    data_dir: str | None = None
    source: str = "auto"
    pools: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from icl_interp.lm.data import get_dataset, label_token_ids, load_examples

        self.specs = {name: get_dataset(name) for name in self.mixture}
        for name, spec in self.specs.items():
            label_token_ids(self.tokenizer, spec.label_words)
            if name not in self.pools:
                self.pools[name] = load_examples(
                    name, self.split, self.data_dir, source=self.source
                )
            if len(self.pools[name]) < self.k + self.queries:
                raise UserError(
                    f"{name} {self.split} split has {len(self.pools[name])} examples; an episode "
                    f"needs k + queries = {self.k + self.queries}"
                )

    def __getitem__(self, index: int) -> Episode:
        from icl_interp.lm.data import build_prompts, sample_demonstrations, select_eval

        rng = random.Random(f"icl_interp-adapt-{self.split}-{self.seed}-{index}")
        name = self.mixture[rng.randrange(len(self.mixture))]
        spec, pool = self.specs[name], self.pools[name]
        demos = sample_demonstrations(pool, self.k, seed=rng.randrange(2**31))
        queries = select_eval(pool, self.queries, seed=rng.randrange(2**31), exclude=demos)
        prompts = build_prompts(self.tokenizer, spec, demos, queries, max_len=self.max_len - 1)
        n_prefix = len(prompts.prefix_ids)
        pieces, positions, segments, answers = (
            [prompts.prefix_ids],
            [torch.arange(n_prefix)],
            [torch.zeros(n_prefix, dtype=torch.long)],
            [],
        )
        start = n_prefix
        for j, (query, label) in enumerate(zip(prompts.query_ids, prompts.labels, strict=True)):
            segment = torch.cat([query, prompts.label_token_ids[label : label + 1]])
            pieces.append(segment)
            positions.append(torch.arange(n_prefix, n_prefix + len(segment)))
            segments.append(torch.full((len(segment),), j + 1, dtype=torch.long))
            start += len(segment)
            answers.append(start - 2)
        loss_positions = answers
        if self.loss_on == "labels" and prompts.k_used:
            # prefix = [bos] + sum(input_i + [label_i] + separator); demo_ids[i] = [bos] + input_i + [label_i]
            inputs = [len(demo) - 2 for demo in prompts.demo_ids]
            separator = (n_prefix - 1 - sum(n + 1 for n in inputs)) // prompts.k_used
            label_positions, at = [], 1
            for n in inputs:
                label_positions.append(at + n)
                at += n + 1 + separator
            loss_positions = [p - 1 for p in label_positions] + answers
        return Episode(
            ids=torch.cat(pieces),
            positions=torch.cat(positions),
            segments=torch.cat(segments),
            n_prefix=n_prefix,
            loss_positions=torch.tensor(loss_positions, dtype=torch.long),
            dataset=name,
            k_used=prompts.k_used,
            n_queries=len(answers),
        )
