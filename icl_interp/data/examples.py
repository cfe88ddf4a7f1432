"""The `Example` record, text clean-up, and the fixed held-out split for single-pool data sets."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

HELDOUT_SEED = "icl_interp-heldout-v1"


@dataclass(frozen=True)
class Example:
    """One labelled example: ``fields`` fill the template (``{"text": ...}``), ``label`` indexes the label words.

    Examples are hashable and compare by content, so the same sentence read twice is the same example.
    Treat ``fields`` as read-only.
    """

    fields: Mapping[str, str]
    label: int

    def __post_init__(self) -> None:
        if not self.fields:
            raise ValueError("an Example needs at least one field")
        if isinstance(self.label, bool) or not isinstance(self.label, int) or self.label < 0:
            raise ValueError(f"label must be a non-negative int, got {self.label!r}")
        object.__setattr__(self, "fields", dict(self.fields))

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.fields.items())), self.label))

    @property
    def content_key(self) -> tuple[tuple[str, str], ...]:
        """The example's inputs without its label (used to keep evaluation disjoint from demonstrations)."""
        return tuple(sorted(self.fields.items()))


def clean_text(text: str) -> str:
    """Collapse every whitespace run (tabs, newlines, HTML ``<br />``) into one space and strip the ends.

    Demonstrations are separated by a newline, so no field may contain one.
    """
    if "<br" in text:
        text = text.replace("<br />", " ").replace("<br/>", " ")
    return " ".join(text.split())


def heldout_split(
    examples: Sequence[Example], split: str, *, test_fraction: float, key: str
) -> list[Example]:
    """Fixed, stratified train/test split of one pool of examples.

    Within each label a permutation seeded by ``key`` (independent of any experiment seed) puts
    ``round(test_fraction * n_label)`` examples in "test" and the rest in "train". File order is kept.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    by_label: dict[int, list[int]] = {}
    for index, example in enumerate(examples):
        by_label.setdefault(example.label, []).append(index)
    rng = random.Random(f"{HELDOUT_SEED}-{key}")
    test_indices: set[int] = set()
    for label in sorted(by_label):
        indices = list(by_label[label])
        rng.shuffle(indices)
        test_indices.update(indices[: round(test_fraction * len(indices))])
    want_test = split == "test"
    return [ex for i, ex in enumerate(examples) if (i in test_indices) == want_test]
