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

    Distinct inputs (``content_key``) are grouped by the label of their first occurrence; within each
    label a permutation seeded by ``key`` (independent of any experiment seed) sends
    ``round(test_fraction * n_inputs)`` inputs to "test", the rest to "train". Repeated copies of an
    input always land on the same side (MPQA and CR repeat phrases). File order is kept.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    first_label: dict[tuple[tuple[str, str], ...], int] = {}
    for example in examples:
        first_label.setdefault(example.content_key, example.label)
    by_label: dict[int, list[tuple[tuple[str, str], ...]]] = {}
    for content, label in first_label.items():
        by_label.setdefault(label, []).append(content)
    rng = random.Random(f"{HELDOUT_SEED}-{key}")
    test_inputs: set[tuple[tuple[str, str], ...]] = set()
    for label in sorted(by_label):
        contents = by_label[label]
        rng.shuffle(contents)
        test_inputs.update(contents[: round(test_fraction * len(contents))])
    want_test = split == "test"
    return [ex for ex in examples if (ex.content_key in test_inputs) == want_test]
