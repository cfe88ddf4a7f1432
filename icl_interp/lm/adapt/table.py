"""``icl-interp adapt-table``: prefixLM vs causalLM adaptation of a pretrained LM, end to end.

The open, small analog of Ding et al.'s Table 2 (PaLM2 finetuned on FLAN with each objective,
5-shot MMLU), connected to the ICL-vs-GD metrics:

1. **Adapt**: for every seed, one copy of the base model per objective (``causal``, ``prefix``)
   with ``icl_interp.lm.adapt.run`` (same episodes, steps, lr and loss positions; only the mask
   differs), into ``models/<objective>_seed<seed>/`` (HF folders with ``adapt_card.json``).
2. **Evaluate** (Table 2 analog): k-shot ICL accuracy on held-out data sets that never appear
   in the training mixture, for every k, under these (model, mask) conditions: base/causal,
   causal-adapted/causal, prefix-adapted/prefix (each model under its own mask) and the
   cross-mask diagnostics base/prefix, prefix-adapted/causal, causal-adapted/prefix. Seed
   ``s`` draws its own demonstrations (per data set and k) and test queries (shared by every
   k and condition, disjoint from all its demonstrations), so conditions are paired within a
   seed. Demonstrations are packed into ``eval_max_len`` tokens (``k_used`` recorded).
3. **Layer by layer**: logit-lens accuracy per layer (from the same captures) and
   ``icl-interp compare`` (SimAOU, SimAM∆ against GD and layer-causal GD) for the adapted
   models, each under its own mask, on ``layer_dataset``.

Writes into ``--out``: ``config.json``; ``models/``; ``eval/units/*.pt`` (resumable captures);
``accuracy.csv`` (tidy: condition x data x k x seed x layer); ``table2.md`` / ``table2.csv``
(mean ± SE over seeds) and ``paired.csv`` (prefix - causal, per seed, with 95% t-intervals);
``layers/<model>_seed<seed>/`` (compare folders), ``layers.csv``, ``layers.md``;
``figures/table2.png|pdf`` and ``figures/layers.png|pdf``; ``report.md`` (also printed).
Rerunning the same command resumes; ``--max-minutes`` stops cleanly at a unit or step boundary.

Each stage's units (the adaptations, the evaluation groups, the layer comparisons) run through
the run kernel (``icl_interp.runs``: ``--backend``, ``--workers``); the command locks ``--out``
for its life, so a second run on it refuses. Parameter groups are checked against the base
model before the folder is claimed, and a run that fails before anything finished leaves the
folder claimable by the corrected command.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from icl_interp.errors import UserError
from icl_interp.lm.adapt.run import adapt, read_card
from icl_interp.lm.adapt.table_config import TableConfig, config_from_args
from icl_interp.lm.adapt.training import check_params
from icl_interp.lm.metrics.accuracy import layer_accuracy
from icl_interp.results import (
    ResultFolder,
    done,
    read_csv,
    release_locks,
    write_csv,
    write_text,
    write_torch,
)
from icl_interp.runs import backend_for, map_units
from icl_interp.stats import estimate
from icl_interp.threads import torch_threads

OBJECTIVES: tuple[str, ...] = ("causal", "prefix")
# (model role, mask): each model under its own mask first, then the cross-mask diagnostics
CONDITIONS: tuple[tuple[str, str], ...] = (
    ("base", "causal"),
    ("causal", "causal"),
    ("prefix", "prefix"),
    ("base", "prefix"),
    ("prefix", "causal"),
    ("causal", "prefix"),
)
OWN_MASK_CONDITIONS = CONDITIONS[:3]
CONDITION_LABELS: dict[tuple[str, str], str] = {
    ("base", "causal"): "base, causal mask",
    ("causal", "causal"): "causal-adapted, causal mask",
    ("prefix", "prefix"): "prefix-adapted, prefix mask",
    ("base", "prefix"): "base, prefix mask (diag.)",
    ("prefix", "causal"): "prefix-adapted, causal mask (diag.)",
    ("causal", "prefix"): "causal-adapted, prefix mask (diag.)",
}
ROLE_LABELS = {"base": "base", "causal": "causal-adapted", "prefix": "prefix-adapted"}
RESUME_IGNORES = frozenset({"threads", "max_minutes", "backend", "workers"})


# --------------------------------------------------------------------------- evaluation


def unit_name(role: str, mask: str, data: str, k: int, seed: int) -> str:
    return f"{role}__{mask}__{data}__k{k}__seed{seed}.pt"


def model_path(config: TableConfig, out: Path, role: str, seed: int) -> str:
    return config.training.base if role == "base" else str(model_folder(out, role, seed))


def _seed_prompts(
    tokenizer: Any, config: TableConfig, data: str, seed: int, pools: dict[tuple[str, str], Any]
) -> dict[int, Any]:
    """Per k, the prompts of one seed and data set: own demonstrations per k, one query set
    (disjoint from every k's demonstrations) shared by all k."""
    from icl_interp.lm.data import build_prompts, get_dataset, sample_demonstrations, select_eval

    spec = get_dataset(data)
    train, test = pools[(data, "train")], pools[(data, "test")]
    demos = {
        k: sample_demonstrations(train, k, seed=10_000 * seed + 100 * index + 1)
        for index, k in enumerate(config.ks)
    }
    excluded = [ex for draw in demos.values() for ex in draw]
    queries = select_eval(test, config.n_test, seed=seed, exclude=excluded, at_most=True)
    return {
        k: build_prompts(tokenizer, spec, demos[k], queries, max_len=config.eval_max_len)
        for k in config.ks
    }


def _time_left(deadline: float | None) -> bool:
    return deadline is None or time.time() < deadline


def model_folder(out: Path, objective: str, seed: int, pilot_lr: float | None = None) -> Path:
    """Where an adapted model lives: ``models/`` for the table, ``pilot/`` for a pilot lr."""
    if pilot_lr is None:
        return out / "models" / f"{objective}_seed{seed}"
    return out / "pilot" / f"{objective}_seed{seed}_lr{pilot_lr:g}"


def adapt_unit(
    config: TableConfig,
    out: Path,
    deadline: float | None,
    unit: tuple[int, str] | tuple[int, str, float],
    lr: float | None = None,
) -> bool:
    """Adapt (or resume) one model until ``deadline`` (a ``time.time()``); whether it finished.
    ``unit = (seed, objective)`` is a table model at ``lr`` (default: the table's);
    ``(seed, objective, lr)`` a pilot model at that lr."""
    seed, objective, *pilot = unit
    folder = model_folder(out, objective, seed, *pilot)
    left = None if deadline is None else (deadline - time.time()) / 60
    if left is not None and left <= 0:
        return read_card(folder) is not None
    training = config.adapt_config(objective, seed, folder, pilot[0] if pilot else lr)
    # a finished folder returns at once, and one made with other settings is an error
    adapt(replace(training, max_minutes=left))
    return read_card(folder) is not None


def pilot_table(config: TableConfig, out: Path) -> pd.DataFrame:
    """The lr pilot's final validation loss and accuracy per lr and objective, the mean loss,
    and which lr the adaptation rule chose (``icl_interp.lm.lr_rule.choose_adaptation_lr``)."""
    from icl_interp.lm.lr_rule import choose_adaptation_lr

    rows = []
    for lr in config.lr_grid:
        for objective in OBJECTIVES:
            card = read_card(model_folder(out, objective, config.seeds[0], lr)) or {}
            last = (card.get("validation") or [{}])[-1]
            rows.append(
                {
                    "lr": lr,
                    "objective": objective,
                    "val_loss": last.get("val_loss", math.nan),
                    "val_acc": last.get("val_acc", math.nan),
                }
            )
    table = pd.DataFrame(rows)
    losses = {lr: group["val_loss"].tolist() for lr, group in table.groupby("lr")}
    chosen = choose_adaptation_lr(losses)
    mean = table.groupby("lr")["val_loss"].transform("mean")
    return table.assign(mean_val_loss=mean, chosen=table["lr"] == chosen)


def run_pilot(config: TableConfig, out: Path, deadline: float | None, backend: Any) -> float | None:
    """Adapt seed 0 with each objective at each lr of ``lr_grid``, write ``lr_pilot.csv`` and
    take the lr the rule chooses, whose seed-0 models become the table's; None if time ran
    out."""
    units = [(config.seeds[0], objective, lr) for lr in config.lr_grid for objective in OBJECTIVES]
    worker = partial(adapt_unit, config, out, deadline)
    if not all(dict(map_units(worker, units, backend, desc="lr pilot")).values()):
        return None
    table = pilot_table(config, out)
    write_csv(out / "lr_pilot.csv", table)
    lr = float(table.loc[table["chosen"], "lr"].iloc[0])
    for objective in OBJECTIVES:
        target = model_folder(out, objective, config.seeds[0])
        if not target.exists():
            shutil.copytree(model_folder(out, objective, config.seeds[0], lr), target)
    print(f"lr pilot: the adaptation rule chose lr {lr:g} (lr_pilot.csv)")
    return lr


class GroupEvaluator:
    """The run kernel's worker for the evaluation: captures every (mask, data, k) unit of one
    ``(seed, role)`` group not yet on disk, until ``deadline`` (a ``time.time()``); whether the
    group finished. ``pools`` are the held-out examples (``heldout_pools``, loaded once by the
    driver); keeps the last model it loaded."""

    def __init__(
        self,
        config: TableConfig,
        out: Path,
        deadline: float | None,
        pools: dict[tuple[str, str], Any],
    ) -> None:
        self.config, self.out, self.deadline, self.pools = config, out, deadline, pools
        self.loaded: tuple[str, Any] | None = None

    def __call__(self, group: tuple[int, str]) -> bool:
        from icl_interp.lm.capture import capture

        config, (seed, role) = self.config, group
        units = self.out / "eval" / "units"
        todo = [
            (data, k, mask)
            for data in config.heldout
            for k in config.ks
            for mask in (mask for r, mask in CONDITIONS if r == role)
            if not done(units / unit_name(role, mask, data, k, seed))
        ]
        if not todo:
            return True
        model = self._model(model_path(config, self.out, role, seed))
        prompts_by_data = {
            data: _seed_prompts(model.tokenizer, config, data, seed, self.pools)
            for data in {d for d, _, _ in todo}
        }
        for data, k, mask in todo:
            if not _time_left(self.deadline):
                return False
            prompts = prompts_by_data[data][k]
            started = time.perf_counter()
            result = capture(
                model,
                prompts.prefix_ids,
                prompts.query_ids,
                prompts.labels,
                prompts.label_token_ids,
                mask=mask,
                batch_size=config.batch_size,
                desc=f"{role}/{mask} {data} k={k} seed {seed}",
            )
            write_torch(
                units / unit_name(role, mask, data, k, seed),
                {
                    "layer_label_logits": result.layer_label_logits,
                    "labels": result.labels,
                    "k_used": prompts.k_used,
                    "prefix_tokens": int(prompts.prefix_ids.shape[0]),
                    "seconds": round(time.perf_counter() - started, 2),
                },
            )
        return True

    def _model(self, path: str) -> Any:
        from icl_interp.lm.models import load_model

        if self.loaded is None or self.loaded[0] != path:
            self.loaded = None  # free the previous model before loading the next
            self.loaded = (path, load_model(path, device=self.config.training.device))
        return self.loaded[1]


def heldout_pools(config: TableConfig) -> dict[tuple[str, str], Any]:
    """The train and test examples of every held-out data set."""
    from icl_interp.lm.data import load_examples

    return {
        (name, split): load_examples(
            name, split, config.training.data_dir, source=config.training.source
        )
        for name in config.heldout
        for split in ("train", "test")
    }


def accuracy_table(config: TableConfig, out: Path) -> pd.DataFrame:
    """Tidy per-layer logit-lens accuracy of every unit (the last layer = the model's output)."""
    from icl_interp.lm.data import get_dataset

    rows = []
    for seed in config.seeds:
        for role, mask in CONDITIONS:
            for data in config.heldout:
                for k in config.ks:
                    unit = torch.load(
                        out / "eval" / "units" / unit_name(role, mask, data, k, seed),
                        weights_only=False,
                    )
                    logits, labels = unit["layer_label_logits"], unit["labels"]
                    correct = layer_accuracy(logits, labels)
                    n_layers = correct.shape[0]
                    for layer, value in enumerate(correct.tolist()):
                        rows.append(
                            {
                                "model": role,
                                "mask": mask,
                                "data": data,
                                "k": k,
                                "k_used": unit["k_used"],
                                "seed": seed,
                                "layer": layer,
                                "final": layer == n_layers - 1,
                                "accuracy": value,
                                "n_examples": len(labels),
                                "chance": 1.0 / get_dataset(data).n_classes,
                            }
                        )
    return pd.DataFrame(rows)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _mean_se(values: pd.Series) -> tuple[float, float]:
    """Mean and standard error over seeds (``icl_interp.stats``; NaN SE for one seed)."""
    if values.dropna().empty:
        return math.nan, math.nan
    over_seeds = estimate(values.tolist())
    return over_seeds.mean, _or_nan(over_seeds.se)


def paired_differences(final: pd.DataFrame) -> pd.DataFrame:
    """Per seed, data set (and 'mean' over data sets) and k: prefix-adapted/prefix minus
    causal-adapted/causal accuracy; then mean, SE and the 95% t-interval over seeds."""
    own = final.set_index(["model", "mask", "data", "k", "seed"])["accuracy"]
    diff = (own.loc["prefix", "prefix"] - own.loc["causal", "causal"]).rename("diff").reset_index()
    mean_rows = diff.groupby(["k", "seed"], as_index=False)["diff"].mean().assign(data="mean")
    all_k = diff.groupby(["seed"], as_index=False)["diff"].mean().assign(data="mean", k="all")
    per_seed = pd.concat([diff, mean_rows, all_k], ignore_index=True)
    rows = []
    for (data, k), group in per_seed.groupby(["data", "k"], sort=False):
        over_seeds = estimate(group["diff"].tolist())
        rows.append(
            {
                "data": data,
                "k": k,
                "n_seeds": len(group),
                "diff_mean": over_seeds.mean,
                "diff_se": _or_nan(over_seeds.se),
                "ci95_low": _or_nan(over_seeds.low),
                "ci95_high": _or_nan(over_seeds.high),
                "detectable_effect": _or_nan(over_seeds.detectable),
                "per_seed": " ".join(f"{v:+.3f}" for v in group["diff"]),
            }
        )
    return pd.DataFrame(rows)


def table2(final: pd.DataFrame, paired: pd.DataFrame) -> pd.DataFrame:
    """Rows data x k (plus 'mean' over data sets per k); columns mean ± SE per condition and
    the paired difference with its interval."""
    per_mean = final.groupby(["model", "mask", "k", "seed"], as_index=False)["accuracy"].mean()
    combined = pd.concat([final, per_mean.assign(data="mean")], ignore_index=True)
    rows = []
    datas = [*dict.fromkeys(final["data"]), "mean"]
    for data in datas:
        for k in sorted(final["k"].unique()):
            chosen = combined[(combined["data"] == data) & (combined["k"] == k)]
            row: dict[str, Any] = {"data": data, "k": int(k)}
            if data != "mean":
                k_used = chosen["k_used"]
                row["k_used"] = (
                    f"{int(k_used.min())}"
                    if k_used.min() == k_used.max()
                    else f"{int(k_used.min())}-{int(k_used.max())}"
                )
                row["chance"] = float(chosen["chance"].iloc[0])
            for condition in CONDITIONS:
                values = chosen[
                    (chosen["model"] == condition[0]) & (chosen["mask"] == condition[1])
                ]
                mean, se = _mean_se(values["accuracy"])
                row[f"{condition[0]}/{condition[1]}"] = mean
                row[f"{condition[0]}/{condition[1]} se"] = se
            diff = paired[(paired["data"] == data) & (paired["k"].astype(str) == str(k))].iloc[0]
            row.update(
                diff=diff["diff_mean"], ci95_low=diff["ci95_low"], ci95_high=diff["ci95_high"]
            )
            rows.append(row)
    return pd.DataFrame(rows)


def _bracket(low: float, high: float) -> str:
    """``[low, high]``, or what stands for an interval that one seed cannot give."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "(one seed: no interval)"
    return f"[{low:+.3f}, {high:+.3f}]"


def table2_markdown(table: pd.DataFrame, paired: pd.DataFrame, config: TableConfig) -> str:
    def cell(row: Any, condition: tuple[str, str]) -> str:
        key = f"{condition[0]}/{condition[1]}"
        if not math.isfinite(row[key + " se"]):
            return f"{row[key]:.3f} (one seed: no SE)"
        return f"{row[key]:.3f} ± {row[key + ' se']:.3f}"

    head = [
        "data",
        "k (used)",
        *(CONDITION_LABELS[c] for c in CONDITIONS),
        "prefix − causal [95% CI]",
    ]
    from icl_interp.lm.report import markdown_table

    rows = []
    for _, row in table.iterrows():
        k = f"{row['k']} ({row['k_used']})" if row["data"] != "mean" else str(row["k"])
        data = row["data"] if row["data"] != "mean" else "**mean**"
        if row["data"] != "mean":
            data = f"{data} (chance {row['chance']:.2f})"
        diff = f"{row['diff']:+.3f} {_bracket(row['ci95_low'], row['ci95_high'])}"
        rows.append([data, k, *(cell(row, c) for c in CONDITIONS), diff])
    lines = [markdown_table(pd.DataFrame(rows, columns=head))]
    overall = paired[paired["k"].astype(str) == "all"].iloc[0]
    return "\n".join(
        [
            *lines,
            "",
            f"Averaged over data sets and k: prefix − causal = {overall['diff_mean']:+.3f} "
            f"{_bracket(overall['ci95_low'], overall['ci95_high'])} ("
            + (
                f"95% t-interval over {int(overall['n_seeds'])} seeds"
                if int(overall["n_seeds"]) > 1
                else "one seed, so no interval over seeds"
            )
            + f"; per seed {overall['per_seed']}): {power_statement(overall)}.",
        ]
    )


def power_statement(row: pd.Series) -> str:
    """What the overall prefix - causal interval allows: a direction when it excludes 0, else
    inconclusive at this power, with the minimum detectable effect (80% power, two-sided 5%)
    beside the reference paper's 3.3 points."""
    if row["ci95_low"] > 0 or row["ci95_high"] < 0:
        return ("prefix" if row["diff_mean"] > 0 else "causal") + " higher"
    detectable = row["detectable_effect"]
    if detectable != detectable:  # one seed
        return "one seed, no test"
    return (
        f"inconclusive at this power: the minimum detectable effect is ±{detectable:.3f} "
        f"({100 * detectable:.0f} points) against the reference paper's 3.3 points"
    )


def table2_figure(final: pd.DataFrame) -> Any:
    import matplotlib.pyplot as plt
    import seaborn as sns

    shown = final.assign(
        condition=[
            CONDITION_LABELS[(m, k)] for m, k in zip(final["model"], final["mask"], strict=True)
        ]
    )
    order = [CONDITION_LABELS[c] for c in CONDITIONS]
    datas = list(dict.fromkeys(final["data"]))
    fig, axes = plt.subplots(
        1, len(datas), figsize=(3.6 * len(datas), 3.6), sharey=True, squeeze=False
    )
    palette = sns.color_palette("tab10", len(order))
    for ax, data in zip(axes[0], datas, strict=True):
        part = shown[shown["data"] == data]
        sns.pointplot(
            data=part,
            x="k",
            y="accuracy",
            hue="condition",
            hue_order=order,
            palette=palette,
            errorbar="se",
            dodge=0.5,
            ax=ax,
            markers=["o"] * 3 + ["x"] * 3,
            linestyles=["-"] * 3 + [":"] * 3,
        )
        ax.axhline(float(part["chance"].iloc[0]), color="grey", linestyle="--", linewidth=1)
        ax.set(title=data, xlabel="k (requested)", ylabel="accuracy (mean ± SE over seeds)")
        ax.set_ylim(0, 1)
        if ax is not axes[0][-1]:
            legend = ax.get_legend()
            if legend is not None:
                legend.remove()
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- layers


def layer_roles(config: TableConfig) -> list[str]:
    """The models of the layer section: each adapted model and, optionally, the base model."""
    return (["base"] if config.layer_base else []) + list(OBJECTIVES)


def layer_unit(
    config: TableConfig, out: Path, deadline: float | None, unit: tuple[int, str]
) -> bool:
    """Run ``compare`` for one ``(seed, role)`` model under its own mask (the base model under
    the causal one); whether it finished before ``deadline`` (a ``time.time()``)."""
    from icl_interp.lm.compare import CompareConfig, run_compare

    seed, role = unit
    folder = out / "layers" / f"{role}_seed{seed}"
    if (folder / "metrics.csv").exists():
        return True
    if not _time_left(deadline):
        return False
    mask = "causal" if role == "base" else role
    compare_config = CompareConfig(
        models=(model_path(config, out, role, seed),),
        datasets=(config.layer_dataset,),
        seeds=(seed,),
        masks=(mask,),
        methods=config.layer_methods,
        n_test=config.layer_n_test,
        k=config.layer_k,
        lr="reference" if config.layer_lr is None else config.layer_lr,
        params="kv",
        finetune_dtype="float32",
        max_len=config.eval_max_len,
        batch_size=config.batch_size,
        heatmap_examples=0,
        data_dir=config.training.data_dir,
        source=config.training.source,
        device=config.training.device,
    )
    run_compare(compare_config, folder, figures=False)
    return True


def layers_table(config: TableConfig, out: Path, accuracy: pd.DataFrame) -> pd.DataFrame:
    """Tidy per-layer rows: compare metrics (per seed) and logit-lens accuracy of the eval
    units on ``layer_dataset`` at ``layer_k`` (per seed), for base/causal and each adapted
    model under its own mask."""
    frames = []
    for seed in config.layer_seeds:
        for role in layer_roles(config):
            metrics = pd.read_csv(out / "layers" / f"{role}_seed{seed}" / "metrics.csv")
            metrics = metrics[metrics["metric"].isin(["simaou", "simaou_random", "simam_delta"])]
            frames.append(
                metrics.assign(model=role)[
                    ["model", "mask", "seed", "method", "layer", "metric", "value"]
                ]
            )
    lens = accuracy[
        (accuracy["data"] == config.layer_dataset)
        & (
            accuracy["k"]
            == config.ks[
                min(range(len(config.ks)), key=lambda i: abs(config.ks[i] - config.layer_k))
            ]
        )
    ]
    lens = lens[
        [(m, k) in OWN_MASK_CONDITIONS for m, k in zip(lens["model"], lens["mask"], strict=True)]
    ]
    frames.append(
        lens.assign(method="icl", metric="logit_lens_accuracy", value=lens["accuracy"])[
            ["model", "mask", "seed", "method", "layer", "metric", "value"]
        ]
    )
    return pd.concat(frames, ignore_index=True)


def layers_markdown(layers: pd.DataFrame, config: TableConfig) -> str:
    """Per layer, mean over seeds of SimAOU (GD, LCGD) and SimAM∆ for each adapted model, the
    prefix − causal difference, and from which layer on it stays positive."""
    own = layers[layers["metric"] != "logit_lens_accuracy"]
    mean = own.groupby(["model", "method", "metric", "layer"])["value"].mean()
    lines = []
    findings = []
    for metric, method in (
        ("simaou", "gd"),
        ("simaou", "lcgd"),
        ("simam_delta", "gd"),
        ("simam_delta", "lcgd"),
    ):
        try:
            causal = mean.loc["causal", method, metric]
            prefix = mean.loc["prefix", method, metric]
        except KeyError:
            continue
        diff = prefix - causal
        per_seed = (
            own[(own["method"] == method) & (own["metric"] == metric)]
            .groupby(["model", "seed"])["value"]
            .mean()
            .unstack("model")
        )
        seed_diff = (per_seed["prefix"] - per_seed["causal"]).dropna()
        interval = ""
        if len(seed_diff) >= 2:
            over_seeds = estimate(seed_diff.tolist())
            interval = (
                f" [95% t-interval over {len(seed_diff)} seeds "
                f"{over_seeds.low:+.3f}, {over_seeds.high:+.3f}]"
            )
        positive = diff.to_numpy() > 0
        from_layer = next((layer for layer in range(len(positive)) if positive[layer:].all()), None)
        findings.append(
            f"- {metric} vs {method.upper()}: mean over layers causal-adapted {causal.mean():.3f}, "
            f"prefix-adapted {prefix.mean():.3f} (difference {diff.mean():+.3f}{interval}); "
            "prefix > causal "
            f"at {int(positive.sum())} of {len(positive)} layers"
            + (f", at every layer from layer {from_layer} on" if from_layer is not None else "")
            + "."
        )
    from icl_interp.lm.report import markdown_table

    pivot = mean.unstack("layer").reset_index()
    pivot["model"] = pivot["model"].map(ROLE_LABELS)
    lines = [markdown_table(pivot)]
    return "\n".join(
        [
            f"Layer section: `compare` on {config.layer_dataset} (k={config.layer_k}, "
            f"{config.layer_n_test} test examples, seeds {list(config.layer_seeds)}; GD/LCGD on K/V, "
            "float32), each model under its own mask"
            + (" (base: causal)" if config.layer_base else "")
            + ". Mean over seeds.",
            "",
            *findings,
            "",
            *lines,
        ]
    )


def layers_figure(layers: pd.DataFrame) -> Any:
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    roles = [r for r in ("base", "causal", "prefix") if r in set(layers["model"])]
    panels = [
        ("logit_lens_accuracy", "logit-lens accuracy"),
        ("simaou", "SimAOU"),
        ("simam_delta", "SimAM∆"),
    ]
    fig, axes = plt.subplots(
        len(panels),
        len(roles),
        figsize=(3.6 * len(roles), 2.6 * len(panels)),
        sharex=True,
        sharey="row",
        squeeze=False,
    )
    for col, role in enumerate(roles):
        part = layers[layers["model"] == role]
        mask = part["mask"].iloc[0]
        for row, (metric, label) in enumerate(panels):
            ax = axes[row][col]
            chosen = part[part["metric"] == metric]
            if metric == "simaou":
                chosen = pd.concat(
                    [chosen, part[part["metric"] == "simaou_random"].assign(method="random")]
                )
            if not chosen.empty:
                sns.lineplot(
                    data=chosen,
                    x="layer",
                    y="value",
                    hue="method",
                    errorbar="se",
                    marker="o",
                    markersize=3,
                    ax=ax,
                )
            ax.set(ylabel=label, title=f"{ROLE_LABELS[role]} ({mask} mask)" if row == 0 else None)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.get_legend() is not None:
                ax.legend(fontsize=7, title=None)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- driver


def result_folder(out: Path, config: TableConfig) -> ResultFolder:
    """``--out`` as owned by ``adapt-table`` with ``config``; finished adaptations may be placed
    in its ``models/`` before the first run (each is checked against the table's settings)."""
    return ResultFolder(
        out, "adapt-table", config, ignore=RESUME_IGNORES, tolerated=("models", "*.log")
    )


def _validate(config: TableConfig) -> dict[tuple[str, str], Any]:
    """Load every pool and check every label word against the base tokenizer (nothing
    written); the held-out pools."""
    from icl_interp.lm.data import get_dataset, label_token_ids
    from icl_interp.lm.models import load_model

    for name in (*config.training.mixture, *config.heldout):
        get_dataset(name)
    model = load_model(config.training.base, device=config.training.device)
    check_params(model, config.training.params)
    for name in (*config.training.mixture, *config.heldout):
        spec = get_dataset(name)
        try:
            label_token_ids(model.tokenizer, spec.label_words)
        except UserError as err:
            raise UserError(f"{config.training.base} cannot score {name}: {err}") from None
    pools = heldout_pools(config)
    for name in config.heldout:
        if max(config.ks) > len(pools[(name, "train")]):
            raise UserError(f"{name}: k={max(config.ks)} exceeds its train pool")
    return pools


def run_table(config: TableConfig, out: Path) -> dict[str, Any]:
    with torch_threads(config.threads):
        return _run_table(config, Path(out))


def _run_table(config: TableConfig, out: Path) -> dict[str, Any]:
    started = time.time()
    deadline = None if config.max_minutes is None else started + 60 * config.max_minutes
    folder = result_folder(out, config)
    folder.check()
    pools = _validate(config)
    claimed = folder.recorded() is None
    folder.claim()
    try:
        try:
            return _run_claimed(config, out, pools, started, deadline)
        except UserError:
            if claimed and not _has_results(out):
                (out / "config.json").unlink(missing_ok=True)  # the corrected command claims it
            raise
    finally:
        release_locks(out)


def _has_results(out: Path) -> bool:
    """Whether ``out`` holds anything finished or resumable (models, units, layer folders)."""
    return any((out / "models").glob("*/*")) or any(
        (out / sub).is_dir() and any((out / sub).iterdir()) for sub in ("eval", "layers")
    )


def _run_claimed(
    config: TableConfig,
    out: Path,
    pools: dict[tuple[str, str], Any],
    started: float,
    deadline: float | None,
) -> dict[str, Any]:
    """The lr pilot (with ``--lr-grid``) and three stages, each a set of units on the run
    kernel, then the report."""
    backend = backend_for(config.backend, config.workers, config.threads, out)
    lr = config.training.lr if not config.lr_grid else run_pilot(config, out, deadline, backend)
    if lr is None:
        print("time is up during the lr pilot; rerun the same command to resume")
        return {"finished": False}
    roles = ("base", *OBJECTIVES)
    stages: list[tuple[str, Any, list[tuple[int, str]]]] = [
        ("adapting", partial(adapt_unit, config, out, deadline, lr=lr),
         [(s, o) for s in config.seeds for o in OBJECTIVES]),
        ("evaluating", GroupEvaluator(config, out, deadline, pools),
         [(s, r) for s in config.seeds for r in roles]),
        ("layer comparisons", partial(layer_unit, config, out, deadline),
         [(s, r) for s in config.layer_seeds for r in layer_roles(config)]),
    ]  # fmt: skip
    train_seconds = 0.0
    for what, worker, units in stages:
        finished = dict(map_units(worker, units, backend, desc=what))
        if not all(finished.values()):
            print(f"time is up while {what}; rerun the same command to resume")
            return {"finished": False}
        train_seconds = train_seconds or time.time() - started
    return write_report(
        config, out, lr, session_seconds=time.time() - started, train_seconds=train_seconds
    )


def write_report(config: TableConfig, out: Path, lr: float, **timing: float) -> dict[str, Any]:
    """Tables, figures and ``report.md`` from the units on disk."""
    from icl_interp.results import write_figure

    accuracy = accuracy_table(config, out)
    write_csv(out / "accuracy.csv", accuracy)
    final = accuracy[accuracy["final"]]
    paired = paired_differences(final)
    write_csv(out / "paired.csv", paired)
    table = table2(final, paired)
    write_csv(out / "table2.csv", table)
    markdown = table2_markdown(table, paired, config)
    write_text(out / "table2.md", markdown + "\n")
    write_figure(out / "figures" / "table2", table2_figure(final))
    parts = [
        "# PrefixLM vs causalLM adaptation: Table 2 analog",
        "",
        f"Base {config.training.base}; mixture {', '.join(config.training.mixture)}; held out "
        f"{', '.join(config.heldout)}; {config.training.steps} steps, lr {lr:g}, params "
        f"{config.training.params}, train k {config.training.k} with {config.training.queries} queries per "
        f"episode; seeds {list(config.seeds)}; "
        f"{config.n_test} test queries per data set and seed"
        + (" (CB: at most its 56)" if "cb" in config.heldout else "")
        + "; final-layer "
        "accuracy over the label words, mean ± SE over seeds.",
        "",
        markdown,
    ]
    if config.layer_seeds:
        layers = layers_table(config, out, accuracy)
        write_csv(out / "layers.csv", layers)
        layer_md = layers_markdown(layers, config)
        write_text(out / "layers.md", layer_md + "\n")
        write_figure(out / "figures" / "layers", layers_figure(layers))
        parts += ["", "## Layer by layer", "", layer_md]
    cards = {
        f"{o}_seed{s}": read_card(out / "models" / f"{o}_seed{s}")
        for s in config.seeds
        for o in OBJECTIVES
    }
    validation = {
        name: card["validation"][-1] if card and card["validation"] else None
        for name, card in cards.items()
    }
    if config.lr_grid:
        from icl_interp.lm.report import markdown_table

        pilot = read_csv(out / "lr_pilot.csv")
        pilot["lr"] = pilot["lr"].map(lambda lr: f"{lr:g}")
        parts += [
            "",
            "## lr pilot (seed 0; lowest mean validation loss over the objectives, ties: the "
            "smaller lr)",
            "",
            markdown_table(pilot),
        ]
    parts += [
        "",
        "## Adaptation (mixture validation episodes, own mask, after the last step)",
        "",
        *(f"- {name}: {value}" for name, value in validation.items()),
    ]
    if timing:
        parts += [
            "",
            "Timing of this session (s): " + json.dumps({k: round(v) for k, v in timing.items()}),
        ]
    report = "\n".join(parts) + "\n"
    write_text(out / "report.md", report)
    print(report)
    return {"finished": True, "table": table, "paired": paired}


def run(args: argparse.Namespace) -> int:
    result = run_table(config_from_args(args), args.out)
    print(f"results in {args.out}" if result["finished"] else f"partial results in {args.out}")
    return 0
