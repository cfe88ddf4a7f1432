"""``icl-interp layers``: per-layer (logit-lens) accuracy of zero-shot and ICL under each mask.

For each condition (zero-shot, then ICL under every ``--masks`` kind; default: every
registered mask kind) the query's last position is read out at every layer through the
final norm and the unembedding, restricted to the label words; accuracy = how often the
true label's word scores highest. One k-shot prompt (seeded demonstrations, from
``make_prompts``) is shared by all test examples, and its keys/values are computed once per
mask where the mask kind allows it.

The conditions are the run kernel's units (``icl_interp.runs``: ``--backend``, ``--workers``),
each captured by a ``ConditionCapturer``. Writes to ``--out`` (owned by this command and its
settings): ``config.json`` (with the
data provenance), ``layer_accuracy.csv`` (one row per condition x layer x metric),
``layer_accuracy.png/.pdf``, and per-condition logit-lens logits (``logits_<condition>.pt``)
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pandas as pd
from jaxtyping import Float
from torch import Tensor

from icl_interp.lm.conditions import conditions
from icl_interp.lm.layers_config import LayerAccuracyConfig, config_from_args
from icl_interp.lm.metrics.accuracy import layer_accuracy
from icl_interp.masks import MASKS
from icl_interp.results import (
    ResultFolder,
    done,
    read_torch,
    seed_everything,
    write_csv,
    write_figure,
    write_torch,
)
from icl_interp.runs import backend_for, map_units
from icl_interp.threads import torch_threads


def tidy_table(
    accuracies: dict[str, Float[Tensor, " layer"]], config: LayerAccuracyConfig, k_used: int, n: int
) -> pd.DataFrame:
    demonstrations = {c.name: c.demonstrations for c in conditions(config.masks)}
    rows = [
        {
            "model": config.model,
            "dataset": config.dataset,
            "seed": config.seed,
            "k": k_used if demonstrations[condition] else 0,
            "condition": condition,
            "layer": layer,
            "metric": "accuracy",
            "value": float(value),
            "n_examples": n,
        }
        for condition, per_layer in accuracies.items()
        for layer, value in enumerate(per_layer.tolist())
    ]
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, chance: float, title: str) -> Any:
    """Accuracy per layer, one line per condition, with the chance level; returns the figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    labels = {c.name: c.label for c in conditions(list(MASKS.registered()))}
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        shown = table.assign(condition=table["condition"].map(lambda c: labels.get(c, c)))
        sns.lineplot(data=shown, x="layer", y="value", hue="condition", marker="o", ax=ax)
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set(xlabel="layer (logit lens on the block output)", ylabel="accuracy", title=title)
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(title=None, fontsize=8)
        fig.tight_layout()
    return fig


class ConditionCapturer:
    """The run kernel's worker: one condition's per-layer logit-lens label logits and its
    capture seconds. Sent to another process it leaves the driver's model behind and loads
    its own, once."""

    def __init__(self, config: LayerAccuracyConfig, prompts: Any, model: Any) -> None:
        self.config, self.prompts, self.model = config, prompts, model

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "model": None}

    def __call__(self, name: str) -> tuple[Tensor, float]:
        from icl_interp.lm.capture import capture_condition
        from icl_interp.lm.models import load_model

        if self.model is None:
            self.model = load_model(self.config.model, device=self.config.device)
        condition = {c.name: c for c in conditions(self.config.masks)}[name]
        start = time.perf_counter()
        result = capture_condition(
            self.model, self.prompts, condition,
            limit=self.config.limit, batch_size=self.config.batch_size,
        )  # fmt: skip
        return result.layer_label_logits, time.perf_counter() - start


def run_config(config: LayerAccuracyConfig) -> pd.DataFrame:
    """Run (or resume) one configuration; ``threads`` applies for the run's duration only."""
    with torch_threads(config.threads):
        return _run_config(config)


def _run_config(config: LayerAccuracyConfig) -> pd.DataFrame:
    from icl_interp.lm.data import make_prompts
    from icl_interp.lm.models import check_device, load_model, model_identity

    check_device(config.device)
    out = Path(config.out)
    folder = ResultFolder(
        out,
        "layers",
        config,
        {"model": model_identity(config.model)},
        ignore=frozenset({"backend", "workers", "threads", "device", "out"}),
    )
    folder.check()
    seed_everything(config.seed)
    model = load_model(config.model, device=config.device)
    spec, prompts, provenance = make_prompts(
        model.tokenizer,
        config.dataset,
        n_test=config.n_test,
        seed=config.seed,
        k=config.k,
        max_len=config.max_len,
        context=int(model.cfg.n_ctx),
        data_dir=config.data_dir,
        source=config.source,
    )
    folder.inputs["data"] = provenance.fingerprint
    folder.claim(prompts=provenance.to_dict(), k_used=prompts.k_used)

    names = [condition.name for condition in conditions(config.masks)]
    todo = [name for name in names if not done(out / f"logits_{name}.pt")]
    backend = backend_for(config.backend, config.workers, config.threads, out)
    seconds: dict[str, float] = {}
    worker = ConditionCapturer(config, prompts, model)
    for name, (logits, took) in map_units(worker, todo, backend, desc="conditions"):
        write_torch(out / f"logits_{name}.pt", logits)
        seconds[name] = took
    labels = prompts.labels[: config.limit]
    accuracies = {name: layer_accuracy(read_torch(out / f"logits_{name}.pt"), labels)
                  for name in names}  # fmt: skip
    return _write_results(config, accuracies, seconds, spec, prompts.k_used, len(labels))


def _write_results(
    config: LayerAccuracyConfig,
    accuracies: dict[str, Tensor],
    seconds: dict[str, float],
    spec: Any,
    k_used: int,
    n: int,
) -> pd.DataFrame:
    import matplotlib.pyplot as plt

    out = Path(config.out)
    table = tidy_table(accuracies, config, k_used, n)
    write_csv(out / "layer_accuracy.csv", table)
    title = f"{config.model}, {spec.name}, k={k_used}, n={n}"
    fig = plot(table, 1.0 / len(spec.label_words), title)
    write_figure(out / "layer_accuracy", fig)
    plt.close(fig)
    final = {c: round(float(a[-1]), 3) for c, a in accuracies.items()}
    timing = ", ".join(f"{c} {s:.0f}s" for c, s in seconds.items())
    print(f"final-layer accuracy: {final}; capture time: {timing or 'resumed'}; wrote {out}")
    return table


def run(args: argparse.Namespace) -> int:
    run_config(config_from_args(args))
    return 0
