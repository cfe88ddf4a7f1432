"""What a pretrained-LM analysis runs and compares: conditions (prompt + mask) and methods.

A ``Condition`` is one way of running a test query: zero-shot (``[bos] + query``) or in-context
(demonstrations + query) under one registered mask kind. The ICL conditions are derived from
``icl_interp.masks.MASKS``, so a newly registered mask kind is a new ICL condition everywhere
(captures, tables, figures, help text) without further edits.

A ``Method`` is what ICL on demonstration set A is compared with in ``icl-interp compare``: a
model finetuned on A (``gd``, ``lcgd``); the whole comparison repeated inside an untrained model
(``untrained``); or a control drawn on a disjoint demonstration set B of the same size and task
(docs/definitions.md, "Controls"): GD on B (``mismatched``, the floor: similarity that is not about these
demonstrations) and ICL on B under the same mask (``icl_vs_icl``, the ceiling a perfectly
ICL-like update could reach). A new method is one ``METHODS.add``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from icl_interp.masks import MASKS, mask_names
from icl_interp.registry import Registry


@dataclass(frozen=True)
class Condition:
    """How a query is run: with or without the demonstrations, under mask kind ``mask``."""

    name: str
    label: str
    mask: str
    demonstrations: bool


ZERO_SHOT = Condition("zsl", "zero-shot", "causal", demonstrations=False)


def icl(mask: str) -> Condition:
    """The in-context condition under mask kind ``mask`` (a ``UserError`` if unknown)."""
    MASKS.get(mask)
    return Condition(f"icl_{mask}", f"ICL, {mask} mask", mask, demonstrations=True)


def conditions(masks: Sequence[str] | None = None) -> list[Condition]:
    """Zero-shot, then ICL under each of ``masks`` (default: every registered mask kind)."""
    return [ZERO_SHOT, *(icl(mask) for mask in (mask_names() if masks is None else masks))]


@dataclass(frozen=True)
class Method:
    """What ICL on demonstrations A is compared with: the zero-shot capture of a model finetuned
    with ``finetune`` ("gd" | "lcgd"), or, with ``finetune=None``, ICL under the same mask.
    ``demonstrations`` says on which set: "same" (A) or "other" (a disjoint draw B);
    with ``untrained``, ZSL, ICL and finetuning all run in the untrained model."""

    name: str
    label: str
    finetune: str | None
    untrained: bool = False
    demonstrations: str = "same"

    @property
    def scope(self) -> str:
        """Which captures the comparison reads: "base", "untrained" or "other" (set B)."""
        if self.untrained:
            return "untrained"
        return "other" if self.demonstrations == "other" else "base"


METHODS: Registry[Method] = Registry("method")
for _method in (
    Method("gd", "GD", "gd"),
    Method("lcgd", "LCGD", "lcgd"),
    Method("untrained", "untrained", "gd", untrained=True),
    Method("mismatched", "GD other demos", "gd", demonstrations="other"),
    Method("icl_vs_icl", "ICL other demos", None, demonstrations="other"),
):
    METHODS.add(_method.name, _method)

DEFAULT_METHODS: tuple[str, ...] = ("gd", "lcgd", "untrained")


def method_names() -> list[str]:
    """Registered methods in registration order."""
    return METHODS.registered()
