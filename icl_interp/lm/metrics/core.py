"""The metric registry, the ``Conditions`` a metric reads, and the per-layer metric table.

A ``Metric`` carries what reports need: its ``label`` (column and panel titles), how the
summary reduces its layer axis (``over_layers``), which captures it ``uses`` (a metric that
does not read the finetuned model, ``ft``, is computed and stored once per ICL mask, with
method ``none``) and, for a control, the metric it is the ``baseline_for`` (drawn in that
metric's panel). Summary tables and per-layer figures are built from the registry alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from icl_interp.errors import UserError
from icl_interp.lm.record import Capture
from icl_interp.registry import Registry

OVER_LAYERS: tuple[str, ...] = ("mean", "last")
CAPTURES: tuple[str, ...] = (
    "zsl",
    "icl",
    "ft",
    "icl_other",
    "ft_other",
    "icl_shuffled",
    "ft_shuffled",
)
FINETUNED: frozenset[str] = frozenset({"ft", "ft_other", "ft_shuffled"})
DEFAULT_USES: tuple[str, ...] = ("zsl", "icl", "ft")
NO_METHOD = "none"


@dataclass(frozen=True)
class Conditions:
    """The captures one comparison needs, for the same test examples in the same order.

    ``ft`` is the finetuned (GD or LCGD) model's zero-shot capture (None when only metrics
    that do not read it are computed); ``seed`` drives any randomness a metric needs (e.g.
    the random SimAOU baselines). The reference captures isolate what depends on the
    demonstrations: ``icl_other`` / ``ft_other`` are ICL and the same finetuning on a disjoint
    demonstration draw B, ``icl_shuffled`` / ``ft_shuffled`` on A's inputs with their labels
    permuted (None where the comparison has none).
    """

    zsl: Capture
    icl: Capture
    ft: Capture | None = None
    seed: int = 0
    icl_other: Capture | None = None
    ft_other: Capture | None = None
    icl_shuffled: Capture | None = None
    ft_shuffled: Capture | None = None

    def __post_init__(self) -> None:
        reference = self.zsl
        others = [
            (name, getattr(self, name)) for name in CAPTURES[1:] if getattr(self, name) is not None
        ]
        for name, capture in others:
            if capture.attn_out.shape != reference.attn_out.shape:
                raise ValueError(
                    f"{name} capture has attn_out shape {tuple(capture.attn_out.shape)}, "
                    f"zsl has {tuple(reference.attn_out.shape)}: captures must cover the same "
                    "examples and layers"
                )
            if not torch.equal(capture.labels, reference.labels):
                raise ValueError(f"{name} capture's labels differ from zsl's: examples misaligned")
            if len(capture.attn_logits) != len(reference.attn_logits) or any(
                a.shape != b.shape
                for a, b in zip(capture.attn_logits, reference.attn_logits, strict=True)
            ):
                raise ValueError(
                    f"{name} capture's attention logits do not cover the same query tokens as zsl's"
                )

    @property
    def n_layers(self) -> int:
        return int(self.zsl.attn_out.shape[1])

    def available(self) -> frozenset[str]:
        """The names (of ``CAPTURES``) of the captures this comparison holds."""
        return frozenset(name for name in CAPTURES if getattr(self, name) is not None)


MetricFn = Callable[[Conditions], Float[Tensor, " layer"]]


@dataclass(frozen=True)
class Metric:
    """A registered metric: its function and what reports need to know about it."""

    name: str
    fn: MetricFn
    label: str
    over_layers: str = "mean"
    uses: frozenset[str] = frozenset(DEFAULT_USES)
    baseline_for: str | None = None

    def __post_init__(self) -> None:
        if self.over_layers not in OVER_LAYERS:
            raise ValueError(f"over_layers must be one of {OVER_LAYERS}, got {self.over_layers!r}")
        if not self.uses or not self.uses <= set(CAPTURES):
            raise ValueError(f"uses must be a non-empty subset of {CAPTURES}, got {set(self.uses)}")

    @property
    def per_method(self) -> bool:
        """Whether the metric reads a finetuned model (one value per compared method)."""
        return bool(self.uses & FINETUNED)

    def applies_to(self, conditions: Conditions) -> bool:
        """Whether ``conditions`` holds every capture the metric reads."""
        return self.uses <= conditions.available()

    def __call__(self, conditions: Conditions) -> Float[Tensor, " layer"]:
        missing = sorted(self.uses - conditions.available())
        if missing:
            raise ValueError(f"metric {self.name!r} needs the captures {', '.join(missing)}")
        values = self.fn(conditions)
        must = (
            f"a metric must return a float tensor of shape [layer] = ({conditions.n_layers},), "
            "one value per layer"
        )
        if not isinstance(values, torch.Tensor):
            raise UserError(f"metric {self.name!r} returned a {type(values).__name__}; {must}")
        if values.shape != (conditions.n_layers,) or not values.is_floating_point():
            raise UserError(
                f"metric {self.name!r} returned a {values.dtype} tensor of shape "
                f"{tuple(values.shape)}; {must}"
            )
        return values


METRICS: Registry[Metric] = Registry("metric")


def register_metric(
    name: str,
    *,
    label: str | None = None,
    over_layers: str = "mean",
    uses: Sequence[str] = DEFAULT_USES,
    baseline_for: str | None = None,
) -> Callable[[MetricFn], MetricFn]:
    """Decorator: register ``fn`` as metric ``name`` (see ``Metric``); returns ``fn``."""

    def decorator(fn: MetricFn) -> MetricFn:
        METRICS.add(
            name,
            Metric(
                name=name,
                fn=fn,
                label=label or name,
                over_layers=over_layers,
                uses=frozenset(uses),
                baseline_for=baseline_for,
            ),
        )
        return fn

    return decorator


def metric_names() -> list[str]:
    """Registered metrics in registration order (the order of summary columns and panels)."""
    return METRICS.registered()


def compute_metrics(conditions: Conditions, names: Sequence[str] | None = None) -> pd.DataFrame:
    """A tidy table with columns ``metric, layer, value`` (one row per metric x layer) of the
    metrics ``names`` (default: all) whose captures ``conditions`` holds; the others are left
    out (a demonstration-specific metric has no value for a comparison without draw B)."""
    rows = []
    for name in names if names is not None else metric_names():
        metric = METRICS.get(name)
        if not metric.applies_to(conditions):
            continue
        values = metric(conditions)
        rows += [
            {"metric": name, "layer": layer, "value": float(v)}
            for layer, v in enumerate(values.tolist())
        ]
    return pd.DataFrame(rows, columns=["metric", "layer", "value"])
