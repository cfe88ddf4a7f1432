"""Metrics registry: ICL vs finetuning similarity and accuracy, per layer, over ``Capture`` objects.

A metric is one decorated function of a ``Conditions`` (the ZSL, ICL and finetuned captures of
the same test examples) returning one value per layer, averaged over test examples::

    @register_metric("my_metric", label="My metric")
    def my_metric(c: Conditions) -> Float[Tensor, " layer"]:
        \"\"\"Formula here.\"\"\"
        ...

``over_layers`` says how the summary table reduces the layer axis ("mean", or "last" for
metrics whose last layer is the model's own output); ``uses`` which captures it reads;
``baseline_for`` which metric's panel a control belongs in. Every table, summary and figure
reads the registry; metrics never touch capture code.
"""

from __future__ import annotations

from icl_interp.lm.metrics import accuracy as _accuracy  # noqa: F401  (registers metrics)
from icl_interp.lm.metrics import similarity as _similarity  # noqa: F401  (registers metrics)
from icl_interp.lm.metrics.core import (
    METRICS,
    Conditions,
    Metric,
    compute_metrics,
    metric_names,
    register_metric,
)

__all__ = ["METRICS", "Conditions", "Metric", "compute_metrics", "metric_names", "register_metric"]
