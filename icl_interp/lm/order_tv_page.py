"""The real-LM order-sensitivity and task-vector page, rebuilt from the committed runs.

The two runs write straight into the archive (``docs/results/lm_order_tv/``): ``task_vectors/``
(``analyses/task_vectors.py``) and ``order/`` (``analyses/lm_order_sensitivity.py``), each with
its ``config.json`` and one CSV per finished unit in ``units/``. ``write_page(archive, doc)``
reads the finished units (a partial run gives a partial page that says so), applies the
analysis plan (``docs/analysis_plan_order_tv.md``), draws the figures into
``archive/figures/`` and writes the page: the same archive gives the same page and figures,
byte for byte.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from icl_interp.errors import UserError
from icl_interp.results import read_config, read_csv, write_figure, write_text
from icl_interp.stats import Estimate, describe, estimate, format_p, holm, verdict

MASKS = ("causal", "prefix")
TV_MARGIN = 0.05  # accuracy: the equivalence margin of the task-vector endpoints
ORDER_MARGIN = 0.05  # order ratio: the equivalence margin of the order endpoints
FINETUNING_MARGIN = 0.25  # order ratio: the margin of family G (the plan's amendment)
FINETUNINGS = ("gd", "lcgd")
WAITING = (
    "The endpoints wait for every planned draw (the plan's seeds) to be complete on every data "
    "set: no verdict is drawn from part of the sample."
)
CANNOT_SAY = (
    "What they cannot say: a vector that carries the task does not show that ICL uses it; an "
    "order effect under both masks is expected from position embeddings alone; the adapted "
    "models' order sensitivity (below, if run) rests on one adaptation per objective."
)
# the adapted models of the plan's second amendment, by the objective each was adapted under
ADAPTED = {"prefix": "gemma-prefix-adapted", "causal": "gemma-causal-adapted"}


def _units(archive: Path, run: str) -> tuple[dict, pd.DataFrame]:
    folder = archive / run
    config = read_config(folder / "config.json")
    if config is None:
        raise UserError(f"the archive {archive} lacks {run}/config.json")
    paths = sorted((folder / "units").glob("*.csv"))
    if not paths:
        raise UserError(f"the archive {archive} has no finished {run} units yet")
    return config, pd.concat([read_csv(path) for path in paths], ignore_index=True)


def _covering(
    table: pd.DataFrame, by: list[str], column: str, needed: Sequence[str]
) -> pd.DataFrame:
    """Rows of the ``by`` groups whose ``column`` takes every value of ``needed``."""
    found = table.groupby(by)[column].agg(lambda values: set(values) >= set(needed))
    return table.merge(found[found].reset_index()[by], on=by)


def finished_cells(table: pd.DataFrame, masks: Sequence[str]) -> pd.DataFrame:
    """Rows of the (model, data set, draw) cells finished under every mask of the plan."""
    return _covering(table, ["model", "data", "seed"], "mask", masks)


def complete_draws(table: pd.DataFrame, datasets: Sequence[str]) -> pd.DataFrame:
    """Rows of the (model, draw) pairs finished on every data set of the plan: the draws the
    pooled endpoints use (a mean over data sets must not change with which ones are done)."""
    return _covering(table, ["model", "seed"], "data", datasets)


# --------------------------------------------------------------------------- task vectors


def chosen_layers(table: pd.DataFrame) -> pd.DataFrame:
    """L*(model, mask, data): the layer with the best mean task-vector accuracy over draws on
    the model's *other* data sets (leave one data set out)."""
    tv = table[table["condition"] == "task_vector"]
    curve = tv.groupby(["model", "mask", "data", "layer"])["value"].mean()
    rows = []
    for (model, mask), cell in curve.groupby(["model", "mask"]):
        per_data = cell.droplevel(["model", "mask"]).unstack("layer")
        for data in per_data.index:
            others = per_data.drop(index=data)
            if len(others):  # no other data set finished yet: no L* for this one
                layer = int(others.mean().idxmax())
                rows.append({"model": model, "mask": mask, "data": data, "layer": layer})
    return pd.DataFrame(rows, columns=["model", "mask", "data", "layer"])


def _at_chosen(table: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Per model x mask x data x seed: zero-shot, ICL and each source's accuracy at L*."""
    flat = table[table["layer"].isna()].pivot_table(
        index=["model", "mask", "data", "seed"], columns="condition", values="value"
    )
    patched = table.merge(layers, on=["model", "mask", "data", "layer"])
    at = patched.pivot_table(
        index=["model", "mask", "data", "seed"], columns="condition", values="value"
    )
    wide = flat.join(at).reset_index()
    return wide.merge(layers.rename(columns={"layer": "chosen_layer"}), how="left")


def tv_endpoints(wide: pd.DataFrame) -> list[dict[str, Any]]:
    """Family T of the plan, per model: estimates over draws of the per-draw means over data
    sets, Holm-adjusted within the model."""
    if "task_vector" not in wide.columns:
        return []
    per_seed = wide.groupby(["model", "mask", "seed"]).mean(numeric_only=True)
    rows = []
    for model, cell in per_seed.groupby("model"):
        cell = cell.droplevel("model")
        family = []
        for mask in MASKS:
            if mask not in cell.index.get_level_values("mask"):
                continue
            m = cell.xs(mask, level="mask")
            family += [
                (mask, "TV - ZS", m["task_vector"] - m["zero_shot"], ("TV", "ZS")),
                (mask, "ICL - TV", m["icl"] - m["task_vector"], ("ICL", "TV")),
                (mask, "TV - rotated TV", m["task_vector"] - m["rotated_labels"],
                 ("TV", "rotated TV")),
            ]  # fmt: skip
        if set(MASKS) <= set(cell.index.get_level_values("mask")):
            diff = (
                cell.xs("prefix", level="mask")["task_vector"]
                - cell.xs("causal", level="mask")["task_vector"]
            )
            family.append(("prefix vs causal", "TV prefix - causal", diff, ("prefix", "causal")))
        rows += _tested(model, family, margin=TV_MARGIN)
    return rows


def all_planned(rows: list[dict[str, Any]], planned: int) -> list[dict[str, Any]]:
    """The endpoint rows of the models whose every planned draw is complete: no verdict is
    drawn from part of the planned sample (the page says which wait)."""
    waiting = {r["model"] for r in rows if r["estimate"].n < planned}
    return [r for r in rows if r["model"] not in waiting]


def _tested(model: str, family: list[tuple], margin: float) -> list[dict[str, Any]]:
    estimates = [estimate(values.dropna().tolist(), margin=margin) for *_, values, _ in family]
    adjusted = holm([e.p for e in estimates])
    return [
        {"model": model, "mask": mask, "endpoint": name, "estimate": e, "p_holm": p,
         "verdict": verdict(e, p, names)}
        for (mask, name, _, names), e, p in zip(family, estimates, adjusted, strict=True)
    ]  # fmt: skip


# --------------------------------------------------------------------------- order


def order_ratios(table: pd.DataFrame, method: str = "icl") -> pd.DataFrame:
    """Per model x data x seed x mask x layer: across-orders / across-sets variance of
    ``method``'s readout."""
    rows = table[table["method"] == method]
    if rows.empty:  # no finished unit of this method yet
        return pd.DataFrame(columns=["model", "data", "seed", "mask", "layer", "ratio"])
    wide = rows.pivot_table(
        index=["model", "data", "seed", "mask", "layer"], columns="statistic", values="value"
    )
    return (wide["across_orders"] / wide["across_sets"]).rename("ratio").reset_index()


def finetuning_endpoints(
    icl: pd.DataFrame, tuned: pd.DataFrame, datasets: Sequence[str]
) -> list[dict[str, Any]]:
    """Family G of the plan's amendment, per model: the order ratio at the last layer of each
    finetuning (``tuned``: ``order_ratios`` rows with a ``method`` column) minus causal ICL's
    (``icl``), paired by draw and data set, each draw's value the mean over ``datasets`` (a
    draw counts once every finetuning and causal ICL finished on each); Holm within the
    model."""
    rows = []
    causal = icl[icl["mask"] == "causal"].drop(columns="mask")
    for model, cell in tuned.groupby("model"):
        last = cell["layer"].max()
        at_last = cell[cell["layer"] == last].pivot_table(
            index=["seed", "data"], columns="method", values="ratio"
        )
        reference = causal[(causal["model"] == model) & (causal["layer"] == last)]
        paired = at_last.join(reference.set_index(["seed", "data"])["ratio"]).dropna()
        paired = _covering(paired.reset_index(), ["seed"], "data", datasets).set_index("seed")
        if paired.empty:  # no draw finished on every data set yet
            continue
        family = [
            ("finetuning vs causal ICL", f"ratio {method.upper()} - ICL causal, layer {last}",
             (paired[method] - paired["ratio"]).groupby(level="seed").mean(),
             (method.upper(), "ICL causal"))
            for method in FINETUNINGS if method in paired.columns
        ]  # fmt: skip
        rows += _tested(model, family, margin=FINETUNING_MARGIN)
    return rows


def order_endpoints(ratios: pd.DataFrame) -> list[dict[str, Any]]:
    """Family O of the plan, per model: causal - prefix order ratio at the last layer and over
    all layers (paired by draw, mean over data sets), Holm within the model."""
    rows = []
    for model, cell in ratios.groupby("model"):
        last = cell["layer"].max()
        wide = cell.pivot_table(index=["seed", "data", "layer"], columns="mask", values="ratio")
        if not set(MASKS) <= set(wide.columns):
            continue
        diff = (wide["causal"] - wide["prefix"]).rename("diff").reset_index()
        at_last = diff[diff["layer"] == last].groupby("seed")["diff"].mean()
        overall = diff.groupby("seed")["diff"].mean()
        family = [
            ("causal vs prefix", f"ratio causal - prefix, layer {last}", at_last,
             ("causal", "prefix")),
            ("causal vs prefix", "ratio causal - prefix, all layers", overall,
             ("causal", "prefix")),
        ]  # fmt: skip
        rows += _tested(model, family, margin=ORDER_MARGIN)
    return rows


def adapted_endpoints(ratios: pd.DataFrame) -> list[dict[str, Any]]:
    """Family A of the plan's second amendment: the prefix-adapted model's order ratio under
    the prefix mask minus the causal-adapted model's under the causal mask, at the last layer
    and over all layers, paired by draw (mean over data sets); Holm over the two."""
    own = {objective: ratios[(ratios["model"] == model) & (ratios["mask"] == objective)]
           for objective, model in ADAPTED.items()}  # fmt: skip
    if any(rows.empty for rows in own.values()):
        return []
    keys = ["seed", "data", "layer"]
    paired = own["prefix"].set_index(keys)["ratio"] - own["causal"].set_index(keys)["ratio"]
    paired = paired.dropna().rename("diff").reset_index()
    if paired.empty:  # no draw finished for both models yet
        return []
    last = paired["layer"].max()
    names = ("prefix-adapted", "causal-adapted")
    family = [
        ("prefix vs causal adapted", f"ratio prefix-adapted - causal-adapted, layer {last}",
         paired[paired["layer"] == last].groupby("seed")["diff"].mean(), names),
        ("prefix vs causal adapted", "ratio prefix-adapted - causal-adapted, all layers",
         paired.groupby("seed")["diff"].mean(), names),
    ]  # fmt: skip
    return _tested("adapted gemma-3-270m", family, margin=ORDER_MARGIN)


# --------------------------------------------------------------------------- figures


def _t_band(values: Any) -> tuple[float, float]:
    found = estimate(list(values))
    if found.low is None or found.high is None:
        return found.mean, found.mean
    return found.low, found.high


def task_vector_figure(table: pd.DataFrame, model: str) -> Any:
    """Accuracy per patched layer of every task-vector condition of ``model`` (zero-shot and
    ICL drawn flat), data sets as rows and masks as columns, mean and 95% t-interval over
    draws."""
    import seaborn as sns

    from icl_interp.lm.task_vectors import TV_CONDITIONS

    shown = table[table["model"] == model]
    layers = sorted(shown["layer"].dropna().unique())
    flat = shown[shown["layer"].isna()]
    expanded = pd.concat([flat.assign(layer=layer) for layer in layers], ignore_index=True)
    shown = pd.concat([shown[shown["layer"].notna()], expanded], ignore_index=True)
    labels = {name: TV_CONDITIONS.get(name).label for name in TV_CONDITIONS.registered()}
    shown = shown.assign(condition=shown["condition"].map(labels))
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        grid = sns.relplot(
            data=shown, x="layer", y="value", hue="condition", row="data", col="mask",
            kind="line", errorbar=_t_band, height=2.4, aspect=1.5,
        )  # fmt: skip
    grid.set_axis_labels("patched layer", "accuracy")
    grid.set(ylim=(0, 1))
    grid.figure.suptitle(f"{model}: task vectors (mean, 95% t-interval over draws)", y=1.02)
    return grid.figure


def _order_figure(ratios: pd.DataFrame, hue: str = "mask") -> Any:
    import seaborn as sns

    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        grid = sns.relplot(
            data=ratios, x="layer", y="ratio", hue=hue, row="model", col="data",
            kind="line", errorbar=_t_band, height=2.4, aspect=1.3,
            facet_kws={"sharex": False},
        )  # fmt: skip
    grid.set_axis_labels("layer", "order variance / set variance")
    grid.figure.suptitle("order ratio per layer (mean, 95% t-interval over draws)", y=1.02)
    return grid.figure


def _save_figure(archive: Path, stem: str, figure: Any) -> str:
    """Write ``figure`` as ``archive/figures/<stem>.png``, close it, and return the file name."""
    import matplotlib.pyplot as plt

    write_figure(archive / "figures" / stem, figure, formats=("png",))
    plt.close(figure)
    return f"{stem}.png"


def _write_figures(archive: Path, table: pd.DataFrame, ratios: pd.DataFrame) -> list[str]:
    from icl_interp.results import file_stem

    figures: dict[str, tuple[Any, tuple]] = {
        f"task_vectors__{file_stem(m)}": (task_vector_figure, (table, m))
        for m in sorted(table["model"].unique())
    }
    figures["order_ratio"] = (_order_figure, (ratios,))
    return [
        _save_figure(archive, stem, draw(*arguments)) for stem, (draw, arguments) in figures.items()
    ]


# --------------------------------------------------------------------------- the page


def _endpoint_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| model | mask | endpoint | mean [95% interval] over draws | n | Holm p | claim |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        found: Estimate = row["estimate"]
        lines.append(
            f"| {row['model']} | {row['mask']} | {row['endpoint']} | {describe(found)} | "
            f"{found.n} | {format_p(row['p_holm'])} | {row['verdict']} |"
        )
    return lines


def _means_table(wide: pd.DataFrame) -> list[str]:
    columns = ["zero_shot", "icl", "task_vector", "rotated_labels", "other_data"]
    present = [c for c in columns if c in wide.columns]
    means = wide.groupby(["model", "data", "mask"])[[*present, "chosen_layer"]].mean()
    draws = wide.groupby(["model", "data", "mask"])["seed"].nunique()
    header = ["model", "data", "mask", "draws", "L*", *present]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (model, data, mask), row in means.iterrows():
        layer = "–" if pd.isna(row["chosen_layer"]) else str(int(row["chosen_layer"]))
        cells = ["–" if pd.isna(row[c]) else f"{row[c]:.3f}" for c in present]
        lines.append(
            f"| {model} | {data} | {mask} | {draws[(model, data, mask)]} | {layer} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def _ratio_table(ratios: pd.DataFrame, by: str = "mask") -> list[str]:
    lines = [f"| model | {by} | order ratio at the last layer [95% interval] | draws |",
             "|---|---|---|---|"]  # fmt: skip
    for (model, mask), cell in ratios.groupby(["model", by]):
        last = cell[cell["layer"] == cell["layer"].max()]
        found = estimate(last.groupby("seed")["ratio"].mean().tolist())
        lines.append(f"| {model} | {mask} | {describe(found)} | {found.n} |")
    return lines


def _tv_reading(claims: dict[str, dict[str, Any]]) -> str:
    """What endpoints 1-3 of one model and mask say about the task-vector account."""
    carries = claims["TV - ZS"]["verdict"] == "TV higher"
    labels = claims["TV - rotated TV"]["verdict"]
    versus_icl = claims["ICL - TV"]["verdict"]
    if claims["TV - ZS"]["verdict"].startswith("equivalent"):
        return (
            "the vector at L* does as well as zero-shot and no better (equivalent within the "
            "margin): no support for the task-vector account"
        )
    if not carries:
        return "the data do not show a vector at L* that carries the task (TV not above zero-shot)"
    if labels != "TV higher":
        return (
            "the vector moves the output above zero-shot but not through the demonstrated "
            "labels (rotated labels do as well): no support for the task-vector account"
        )
    if versus_icl.startswith("equivalent"):
        return "the vector carries the labels and ICL's accuracy: the task-vector account fits"
    if versus_icl == "ICL higher":
        return "the vector carries the labels and part of ICL's accuracy: the account fits in part"
    return "the vector carries the labels; how it compares with ICL is open"


def _tv_sentence(model: str, rows: list[dict[str, Any]]) -> str:
    parts = []
    for mask in MASKS:
        claims = {r["endpoint"]: r for r in rows if r["model"] == model and r["mask"] == mask}
        if not claims:
            continue
        numbers = ", ".join(
            f"{name} {describe(claims[name]['estimate'])} ({claims[name]['verdict']})"
            for name in ("TV - ZS", "TV - rotated TV", "ICL - TV")
        )
        parts.append(f"{mask} mask: {_tv_reading(claims)}; {numbers}")
    return f"- **{model}**, " + "; ".join(parts) + "." if parts else ""


def _order_sentence(model: str, rows: list[dict[str, Any]]) -> str:
    found = [r for r in rows if r["model"] == model]
    if not found:
        return ""
    last = found[0]
    claim = last["verdict"]
    if claim == "causal higher":
        reading = "as the GD account predicts, ICL under the causal mask is more order-sensitive"
    elif claim == "prefix higher":
        reading = "against the GD account's prediction, the prefix mask is the more order-sensitive"
    elif claim.startswith("equivalent"):
        reading = "the two masks are equally order-sensitive within ±0.05, which the GD account does not predict"
    else:
        reading = "the data cannot say whether the masks differ"
    return f"- **{model}**: {reading} ({last['endpoint']}: {describe(last['estimate'])}, {claim})."


def _amendment_reading(row: dict[str, Any], expected: str, account: str) -> str:
    """One sentence for one amendment endpoint: ``expected`` is the verdict the ``account``
    predicts ("equivalent" for no difference)."""
    claim = row["verdict"]
    if claim.startswith(expected):
        reading = f"as {account} predicts"
    elif claim.endswith("higher") or claim.startswith("equivalent"):
        reading = f"against what {account} predicts"
    else:
        reading = "the data cannot say"
    return f"- {row['endpoint']}: {reading} ({describe(row['estimate'])}, {claim})."


def _draw_table(tables: dict[str, tuple[pd.DataFrame, dict]]) -> list[str]:
    """Draws finished under every mask, per run x model x data set, and the complete ones."""
    datasets = list(dict.fromkeys(d for _, plan in tables.values() for d in plan["datasets"]))
    lines = ["| run | model | " + " | ".join(datasets) + " | complete |",
             "|---|---|" + "---|" * (len(datasets) + 1)]  # fmt: skip
    for run, (table, plan) in tables.items():
        for model in plan["models"]:
            rows = table[table["model"] == model]
            counts = [str(rows[rows["data"] == d]["seed"].nunique()) for d in datasets]
            complete = complete_draws(rows, plan["datasets"])["seed"].nunique() if len(rows) else 0
            lines.append(f"| {run} | {model} | " + " | ".join(counts) + f" | {complete} |")
    return lines


def _command(config: dict, run: str) -> str:
    settings = config["config"]
    skip = {"data_dir", "k", "max_len", "source", "masks", "sources"}
    if "icl" in settings.get("methods", ["icl"]):  # ICL only: the defaults
        skip |= {"methods", "lr"}
    options = [
        f"--{key.replace('_', '-')} " + (" ".join(map(str, v)) if isinstance(v, list) else str(v))
        for key, v in sorted(settings.items())
        if key not in skip and v is not None
    ]
    return (
        f"OMP_NUM_THREADS=1 python {config['command']} {' '.join(options)} --threads 1 "
        f"--data-dir ../shared/data --out docs/results/lm_order_tv/{run}"
    )


def _amendment_units(
    archive: Path, run: str, title: str
) -> tuple[list[str], dict | None, pd.DataFrame]:
    """An amendment run's section head, config and units; no config yet: no section (config
    None); no unit yet: the head and a line saying so (config None)."""
    empty = pd.DataFrame()
    if not (archive / run / "config.json").is_file():
        return [], None, empty
    head = [f"## {title}", ""]
    if not any((archive / run / "units").glob("*.csv")):
        return [*head, f"The `{run}` run has no finished unit yet."], None, empty
    config, table = _units(archive, run)
    return head, config, table


def _command_block(config: dict, run: str) -> list[str]:
    """The run's command as a fenced block, set off by blank lines."""
    return ["", "```bash", _command(config, run), "```", ""]


def _endpoint_block(
    family: str, rows: list[dict[str, Any]], expected: str, account: str
) -> list[str]:
    """An amendment's endpoint table (or why it waits) and one reading per endpoint."""
    return [
        "",
        f"Endpoints ({family}):",
        "",
        *(_endpoint_table(rows) if rows else [WAITING]),
        "",
        *[_amendment_reading(r, expected, account) for r in rows],
    ]


def _finetuning_section(archive: Path, data: str, icl: pd.DataFrame) -> list[str]:
    """The plan amendment's section (GD and LCGD order ratios beside ICL's); [] before its run
    has a config, a line saying so before its first unit."""
    run = "order_finetuning"
    head, config, table = _amendment_units(archive, run, "Order sensitivity of GD and LCGD")
    if config is None:
        return head
    plan = config["config"]
    table = _covering(table, ["model", "data", "seed"], "method", plan["methods"])
    tuned = pd.concat([order_ratios(table, m).assign(method=m) for m in plan["methods"]])
    shown = icl[icl["model"].isin(plan["models"]) & icl["data"].isin(plan["datasets"])]
    readouts = pd.concat(
        [shown.assign(readout="ICL " + shown["mask"]),
         tuned.assign(readout=tuned["method"].str.upper())], ignore_index=True,
    )  # fmt: skip
    figure = _save_figure(archive, "order_ratio_finetuning", _order_figure(readouts, "readout"))
    rows = all_planned(finetuning_endpoints(icl, tuned, plan["datasets"]), len(plan["seeds"]))
    lrs = table.groupby(["model", "data", "method"])["lr"].first()
    return [
        *head,
        "As the [plan's amendment](../analysis_plan_order_tv.md) fixed before these runs: each "
        "of the orders is one finetuning order (one SGD step per demonstration), each set one "
        "finetuning on another set, the finetuned model read out zero-shot (causal mask) on "
        "the draw's queries. lrs (the packaged chosen ones): "
        + ", ".join(f"{m} {d} {f.upper()} {lr:g}" for (m, d, f), lr in lrs.items())
        + ".",
        *_command_block(config, run),
        *_draw_table({"GD and LCGD order": (table, plan)}),
        "",
        f"![order ratio per layer, ICL and finetunings]({data}/figures/{figure})",
        "",
        *_ratio_table(tuned, by="method"),
        *_endpoint_block(
            f"family G, Holm within each model; margin ±{FINETUNING_MARGIN:g} on the ratio",
            rows,
            "equivalent",
            "the online-GD account",
        ),
    ]


def _adapted_section(archive: Path, data: str) -> list[str]:
    """The second amendment's section (the prefix- and causal-adapted models' order ratios);
    [] before its run has a config, a line saying so before its first unit."""
    run = "order_adapted"
    title = "Order sensitivity of the prefix- and causal-adapted models"
    head, config, table = _amendment_units(archive, run, title)
    if config is None:
        return head
    plan = config["config"]
    ratios = order_ratios(finished_cells(table, plan["masks"]))
    shown = ratios.assign(readout=ratios["model"] + ", " + ratios["mask"] + " mask",
                          model="adapted gemma-3-270m")  # fmt: skip
    figure = _save_figure(archive, "order_ratio_adapted", _order_figure(shown, "readout"))
    rows = all_planned(adapted_endpoints(ratios), len(plan["seeds"]))
    return [
        *head,
        "As the [plan's second amendment](../analysis_plan_order_tv.md) fixed before these "
        "runs: Gemma-3-270M adapted under each objective by `icl-interp adapt-table --preset "
        "cpu` (seed 0), on SST-5, held out from the adaptation; the theory predicts the "
        "prefix-adapted model under the prefix mask to be less order-sensitive than the "
        "causal-adapted one under the causal mask. One adaptation per objective: the "
        "difference mixes the objective with that adaptation's luck. The two model names are "
        "folders in the directory the command runs from: links to that run's "
        "`models/prefix_seed0` and `models/causal_seed0`.",
        *_command_block(config, run),
        *_draw_table({"adapted models' order": (ratios, plan)}),
        "",
        f"![order ratio per layer, adapted models]({data}/figures/{figure})",
        "",
        *_ratio_table(ratios),
        *_endpoint_block(
            "family A, Holm over the two", rows, "causal-adapted higher", "the theory"
        ),
    ]


def _planned_endpoints(
    family: Any, table: pd.DataFrame, plan: dict[str, Any]
) -> list[dict[str, Any]]:
    """``family``'s endpoint rows on the draws complete on every planned data set, for the
    models whose every planned draw is complete."""
    return all_planned(family(complete_draws(table, plan["datasets"])), len(plan["seeds"]))


def write_page(archive: Path, doc: Path) -> str:
    """The page from ``archive`` alone (figures into ``archive/figures``), written to ``doc``."""
    tv_config, tv_table = _units(archive, "task_vectors")
    order_config, order_table = _units(archive, "order")
    plan = {"tv": tv_config["config"], "order": order_config["config"]}
    tv_table = finished_cells(tv_table, plan["tv"]["masks"])
    order_table = order_table[order_table["method"] == "icl"]
    order_table = finished_cells(order_table, plan["order"]["masks"])
    wide = _at_chosen(tv_table, chosen_layers(tv_table))
    tv_rows = _planned_endpoints(tv_endpoints, wide, plan["tv"])
    ratios = order_ratios(order_table)
    order_rows = _planned_endpoints(order_endpoints, ratios, plan["order"])
    figures = _write_figures(archive, tv_table, ratios)
    data = Path(os.path.relpath(archive, doc.parent)).as_posix()
    models = sorted(set(tv_table["model"]) | set(order_table["model"]))
    draws = _draw_table({"task vectors": (tv_table, plan["tv"]),
                         "order": (order_table, plan["order"])})  # fmt: skip
    none = [f"- {WAITING}"]
    parts = [
        "# Order sensitivity and task vectors: pretrained LMs",
        "",
        "<!-- generated by analyses/lm_order_tv_report.py; edit the generator -->",
        "",
        "Definitions, the LSA and synthetic levels and the patching API: [Order sensitivity and "
        "task vectors](../order_and_task_vectors.md). Endpoints, the layer rule and the families "
        "were fixed before these runs in the [analysis plan](../analysis_plan_order_tv.md). "
        f"This page is rebuilt from the units committed in [`{data}/`]({data}/task_vectors/config.json) "
        "by `python analyses/lm_order_tv_report.py`; the runs write their units there as they "
        "finish and resume from them:",
        "",
        "```bash",
        _command(tv_config, "task_vectors"),
        _command(order_config, "order"),
        "```",
        "",
        "Draws finished under both masks, per data set, and complete draws (finished on every "
        "data set: the draws the pooled endpoints use; the plan asks for 5):",
        "",
        *draws,
        "",
        "## What the two observables say",
        "",
        "Task vectors (the vector at L*, chosen on the other data sets):",
        "",
        *([s for s in (_tv_sentence(m, tv_rows) for m in models) if s] or none),
        "",
        "Order sensitivity (causal - prefix order ratio at the last layer, paired by draw):",
        "",
        *([s for s in (_order_sentence(m, order_rows) for m in models) if s] or none),
        "",
        CANNOT_SAY,
        "",
        "## Task vectors",
        "",
        *[f"![{name.removesuffix('.png')}]({data}/figures/{name})\n" for name in figures[:-1]],
        "Endpoints (family T, Holm within each model; each draw's value is the mean over data sets):",
        "",
        *_endpoint_table(tv_rows),
        "",
        "Mean accuracy over draws at L* per data set (zero-shot and ICL are the model's output; "
        "– where L* waits for another data set):",
        "",
        *_means_table(wide),
        "",
        "## Order sensitivity",
        "",
        f"![order ratio per layer]({data}/figures/{figures[-1]})",
        "",
        *_ratio_table(ratios),
        "",
        "Endpoints (family O, Holm within each model):",
        "",
        *_endpoint_table(order_rows),
        "",
        *_finetuning_section(archive, data, ratios),
        *["", *_adapted_section(archive, data)],
    ]
    markdown = "\n".join(parts) + "\n"
    write_text(doc, markdown)
    return markdown
