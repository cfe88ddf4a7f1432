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


DEMONSTRATION_SETS: tuple[str, ...] = ("same", "other", "shuffled")


@dataclass(frozen=True)
class Method:
    """What ICL on demonstrations A is compared with: the zero-shot capture of a model finetuned
    with ``finetune`` ("gd" | "lcgd"), or, with ``finetune=None``, ICL under the same mask.
    ``demonstrations`` says on which set: "same" (A), "other" (a disjoint draw B) or
    "shuffled" (A' = A with permuted labels); with ``untrained``, ZSL, ICL and finetuning all
    run in the untrained model."""

    name: str
    label: str
    finetune: str | None
    untrained: bool = False
    demonstrations: str = "same"
    short: str = ""  # the headline's column name (at most 7 characters; default: the name)

    def __post_init__(self) -> None:
        if len(self.short) > 7:
            raise ValueError(f"short must be at most 7 characters, got {self.short!r}")
        if self.demonstrations not in DEMONSTRATION_SETS:
            raise ValueError(
                f"demonstrations must be one of {DEMONSTRATION_SETS}, got {self.demonstrations!r}"
            )

    @property
    def column(self) -> str:
        """The headline's column name: ``short``, else the name cut to 7 characters."""
        return self.short or self.name[:7]

    @property
    def scope(self) -> str:
        """Which captures the comparison reads: "base", "untrained", "other" (set B) or
        "shuffled" (set A')."""
        if self.untrained:
            return "untrained"
        return "base" if self.demonstrations == "same" else self.demonstrations


METHODS: Registry[Method] = Registry("method")
for _method in (
    Method("gd", "GD", "gd", short="GD"),
    Method("lcgd", "LCGD", "lcgd", short="LCGD"),
    Method("untrained", "untrained", "gd", untrained=True, short="untr."),
    Method("mismatched", "GD other demos", "gd", demonstrations="other", short="floor"),
    Method("mismatched_lcgd", "LCGD other demos", "lcgd", demonstrations="other", short="LCfloor"),
    Method("icl_vs_icl", "ICL other demos", None, demonstrations="other", short="ceiling"),
    Method("shuffled_gd", "GD shuffled labels", "gd", demonstrations="shuffled", short="shufGD"),
    Method(
        "shuffled_lcgd", "LCGD shuffled labels", "lcgd", demonstrations="shuffled", short="shufLC"
    ),
    Method("icl_shuffled", "ICL shuffled labels", None, demonstrations="shuffled", short="shufICL"),
):
    METHODS.add(_method.name, _method)

DEFAULT_METHODS: tuple[str, ...] = ("gd", "lcgd", "untrained")


def method_names() -> list[str]:
    """Registered methods in registration order."""
    return METHODS.registered()
