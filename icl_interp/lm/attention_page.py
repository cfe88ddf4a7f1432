"""The attention findings page, rebuilt from an archived ``icl-interp compare`` run.

``archive_run(run, archive)`` reads the run's ``prompt_attention.csv`` (one model x data set x
seed; tens of MB, not committed) and writes into ``archive`` (committed,
``docs/results/attention/``) what the page needs:

- ``role_mass.csv``: the last position's attention mass per condition x layer x role (BOS,
  demonstration inputs, label tokens, separators, the query), mean over heads and examples;
- ``demonstration_mass.csv``: per ICL condition x layer x segment (BOS, each demonstration,
  the query) the mass, the part of it on the label token, the label token and the fraction of
  the segment's keys the layer may read (``demonstration_mass``);
- ``query_logit_change.csv``: per condition x example, the mean and largest |condition - ZSL|
  of the pre-mask logits over the query's own tokens (the inputs of SimAM∆; mean over heads);
- the figures ``write_attention_figures`` draws, the per-head view at the layer where an ICL
  query puts the most mass on a single demonstration;
- the unit's settings and timings (``units/<unit>.json``, ``.timings.json``) and ``run.json``.

``write_page(archive, doc)`` writes the page from the archive alone, its sentences and tables
computed from those files: the same archive gives the same page, byte for byte.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from icl_interp.errors import UserError
from icl_interp.results import archive_run as archive_files
from icl_interp.results import read_run, write_csv, write_text

SUMMARIES = ("role_mass.csv", "demonstration_mass.csv", "query_logit_change.csv")
FIGURES = {  # figure kind -> caption, in page order
    "segment_mass": "attention mass per segment",
    "role_mass": "attention mass per role",
    "heads_layer": "per-head view of the layer with the most mass on one demonstration",
    "difference_maps": "ICL - ZSL and GD - ZSL over the query tokens",
}
ROLE_NAMES = {
    "bos": "BOS",
    "input": "inputs",
    "label": "labels",
    "separator": "separators",
    "query": "query",
}


def archive_run(run: Path, archive: Path) -> None:
    """Summarise a finished ``compare`` run's prompt attention into ``archive`` (one-line
    errors when the run lacks it or holds more than one model x data set x seed)."""
    from icl_interp.lm.attention import read_prompt_attention
    from icl_interp.lm.attention_plots import write_attention_figures
    from icl_interp.lm.compare import unit_stem

    read_run(run, "compare", needs=("prompt_attention.csv",))
    table = read_prompt_attention(Path(run) / "prompt_attention.csv")
    units = table[["model", "data", "seed"]].drop_duplicates()
    if len(units) != 1:
        raise UserError(
            f"{run} holds prompt attention of {len(units)} model x data set x seed units; "
            "the page summarises one: rerun compare with one model, data set and seed"
        )
    model, data, seed = units.iloc[0]
    stem = unit_stem(str(model), str(data), int(seed))
    archive_files(run, archive, "compare", (f"units/{stem}.json", f"units/{stem}.timings.json"))
    demos = _demonstration_mass(table)
    write_csv(archive / "role_mass.csv", _role_mass(table))
    write_csv(archive / "demonstration_mass.csv", demos)
    write_csv(archive / "query_logit_change.csv", _query_logit_change(table))
    write_attention_figures(table, archive / "figures", layer=_focus_layer(demos))


def _role_mass(table: pd.DataFrame) -> pd.DataFrame:
    from icl_interp.lm.attention import segment_mass

    mass = segment_mass(table, by=("role",))
    mean = mass.groupby(["condition", "layer", "role"], sort=False)["prob"].mean()
    return mean.rename("mass").reset_index()


def _demonstration_mass(table: pd.DataFrame) -> pd.DataFrame:
    from icl_interp.lm.attention import demonstration_mass

    frames = []
    for layer in sorted(table["layer"].unique()):
        wide = demonstration_mass(table, layer=int(layer))
        conditions = [c for c in wide.columns if f"{c} on label" in wide.columns]
        for condition in conditions:
            frames.append(
                pd.DataFrame(
                    {
                        "condition": condition,
                        "layer": int(layer),
                        "segment": wide.index,
                        "label_token": wide["label token"].to_numpy(),
                        "readable": wide["readable"].to_numpy(),
                        "mass": wide[condition].to_numpy(),
                        "on_label": wide[f"{condition} on label"].fillna(0.0).to_numpy(),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def _query_logit_change(table: pd.DataFrame) -> pd.DataFrame:
    from icl_interp.lm.attention_plots import difference_grids

    rows = []
    for example in sorted(table["example"].unique()):
        grids = difference_grids(table[table["example"] == example])
        for condition, grid in grids.items():
            change = np.abs(grid.to_numpy())
            rows.append(
                {
                    "condition": condition,
                    "example": int(example),
                    "mean_abs": float(np.nanmean(change)),
                    "max_abs": float(np.nanmax(change)),
                }
            )
    return pd.DataFrame(rows)


def _focus_layer(demos: pd.DataFrame) -> int:
    """The layer where an ICL query puts the most mass on one demonstration."""
    on_demos = demos[demos["segment"].str.startswith("demo_")]
    return int(on_demos.loc[on_demos["mass"].idxmax(), "layer"])


# --------------------------------------------------------------------------- the page


def _load(archive: Path) -> tuple[dict, dict, dict[str, pd.DataFrame]]:
    if not (archive / "run.json").is_file():
        raise UserError(f"the archive {archive} lacks run.json")
    config = json.loads((archive / "run.json").read_text(encoding="utf-8"))["config"]
    unit_files = sorted((archive / "units").glob("*.timings.json"))
    missing = [name for name in SUMMARIES if not (archive / name).is_file()]
    if missing or len(unit_files) != 1:
        raise UserError(f"the archive {archive} lacks {', '.join(missing) or 'its unit files'}")
    unit = json.loads(unit_files[0].with_suffix("").with_suffix(".json").read_text("utf-8"))
    unit["timings"] = json.loads(unit_files[0].read_text(encoding="utf-8"))
    tables = {
        name.removesuffix(".csv"): pd.read_csv(
            archive / name, keep_default_na=False, dtype={"label_token": str}
        )
        for name in SUMMARIES
    }
    return config, unit, tables


def _command(config: dict) -> str:
    methods = " ".join(config["methods"])
    data_dir = " --data-dir ../shared/data" if config.get("data_dir") else ""
    return (
        f"OMP_NUM_THREADS=1 icl-interp compare --models {' '.join(config['models'])} "
        f"--datasets {' '.join(config['datasets'])} --source {config['source']} "
        f"--n-test {config['n_test']} --methods {methods} --seeds "
        f"{' '.join(str(s) for s in config['seeds'])} --heatmap-examples "
        f"{config['heatmap_examples']}{data_dir} --out runs/attn_mr"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _layers(layers: list[int]) -> str:
    """``layer 5`` or ``layers 5, 11, 17``."""
    return ("layer " if len(layers) == 1 else "layers ") + ", ".join(map(str, layers))


def _reach(demos: pd.DataFrame) -> tuple[list[int], list[int], list[str]]:
    """Global layers (every key readable), local ones, and the demonstrations no local layer
    can read."""
    first = demos[demos["condition"] == demos["condition"].iloc[0]]
    readable = first.pivot(index="segment", columns="layer", values="readable")
    whole = readable.columns[(readable == 1).all()].tolist()
    local = [layer for layer in readable.columns if layer not in whole]
    unread = readable.index[(readable[local] == 0).all(axis=1)] if local else []
    order = sorted((s for s in unread if s.startswith("demo_")), key=lambda s: int(s[5:]))
    return [int(x) for x in whole], [int(x) for x in local], order


def _findings(unit: dict, tables: dict[str, pd.DataFrame]) -> list[str]:
    demos, roles = tables["demonstration_mass"], tables["role_mass"]
    icl = list(dict.fromkeys(demos["condition"]))
    whole, local, unread = _reach(demos)
    mass = roles.pivot_table(index="layer", columns=["condition", "role"], values="mass")
    lines = []
    if local:
        span = f"{unread[0]}-{unread[-1]}".replace("demo_", "") if unread else "none"
        lines.append(
            f"- {len(local)} of {len(whole) + len(local)} layers are local (a sliding window): "
            f"there the query cannot read demonstrations {span} at all; "
            f"{_layers(whole)} {'reads' if len(whole) == 1 else 'read'} the whole prompt."
        )
    if whole:
        bos = "; ".join(
            f"{c}: " + ", ".join(f"{mass.loc[layer, (c, 'bos')]:.2f}" for layer in whole)
            for c in icl
        )
        lines.append(
            f"- Mass on BOS at the whole-prompt {_layers(whole)} (mean over heads): {bos}."
        )
    for role, what in (("label", "label tokens"), ("separator", "separators")):
        peaks = "; ".join(
            f"{c} at layer {int(mass[(c, role)].idxmax())} ({mass[(c, role)].max():.2f})"
            for c in icl
        )
        lines.append(f"- The most mass on {what}: {peaks}.")
    on_demos = demos[demos["segment"].str.startswith("demo_")]
    top = on_demos.loc[on_demos["mass"].idxmax()]
    lines.append(
        f"- The most mass one demonstration gets: {top['mass']:.2f} ({top['condition']}, "
        f"layer {int(top['layer'])}, demonstration {top['segment'][5:]}, label "
        f"`{top['label_token'].strip('▁ ')}`); the per-head view below shows that layer."
    )
    change = tables["query_logit_change"]
    first = change[change["example"] == change["example"].min()].set_index("condition")
    parts = ", ".join(
        f"{c} {row['mean_abs']:.2f} (up to {row['max_abs']:.2f})" for c, row in first.iterrows()
    )
    lines.append(
        "- Over the query's own tokens (the inputs of SimAM∆), mean |condition - ZSL| of the "
        f"pre-mask logits, example {int(change['example'].min())}: {parts}."
    )
    return lines


def _role_table(tables: dict[str, pd.DataFrame]) -> list[str]:
    demos, roles = tables["demonstration_mass"], tables["role_mass"]
    icl = list(dict.fromkeys(demos["condition"]))
    whole, _, _ = _reach(demos)
    mass = roles.pivot_table(index="layer", columns=["condition", "role"], values="mass")
    header = ["layer", "reads"] + [f"{ROLE_NAMES[r]} {c}" for r in ROLE_NAMES for c in icl]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for layer in mass.index:
        reach = "whole prompt" if layer in whole else "window"
        cells = [f"{mass.loc[layer, (c, r)]:.2f}" for r in ROLE_NAMES for c in icl]
        lines.append(f"| {layer} | {reach} | " + " | ".join(cells) + " |")
    return lines


def _top_table(tables: dict[str, pd.DataFrame]) -> list[str]:
    demos = tables["demonstration_mass"]
    icl = list(dict.fromkeys(demos["condition"]))
    on_demos = demos[demos["segment"].str.startswith("demo_")]
    lines = ["| layer | " + " | ".join(icl) + " |", "|---|" + "---|" * len(icl)]
    for layer, rows in on_demos.groupby("layer", sort=True):
        cells = []
        for condition in icl:
            ranked = rows[rows["condition"] == condition].nlargest(2, "mass")
            ranked = ranked[ranked["mass"] >= 0.005]
            read = [f"{s[5:]} ({m:.2f})" for s, m in ranked[["segment", "mass"]].to_numpy()]
            cells.append(", ".join(read) or "-")
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return lines


def write_page(archive: Path, doc: Path) -> str:
    """The attention findings page from ``archive`` alone, written to ``doc``; its markdown."""
    config, unit, tables = _load(archive)
    data = Path(os.path.relpath(archive, doc.parent)).as_posix()
    figures = [
        (caption, path.name)
        for kind, caption in FIGURES.items()
        for path in sorted((archive / "figures").glob(f"prompt_attention_{kind}*.png"))
    ]
    prompts, timings = unit["prompts"], unit["timings"]
    lr = ", ".join(f"{method} {value:g}" for method, value in unit["lr"].items())
    parts = [
        f"# Where the query reads in the prompt ({unit['model']} on {unit['data']})",
        "",
        "<!-- generated by analyses/attention_findings.py --report-only; edit the generator -->",
        "",
        "What `prompt_attention.csv` holds and how it is captured: "
        "[compare](../studies/compare.md#where-the-query-reads-in-the-prompt). This page is "
        f"rebuilt from the summaries archived in [`{data}/`]({data}/role_mass.csv) by "
        "`python analyses/attention_findings.py --report-only`; "
        "`notebooks/attention_explorer.ipynb` browses a run's full table. Made by (then "
        "`python analyses/attention_findings.py --archive-from runs/attn_mr`):",
        "",
        "```bash",
        _command(config),
        "```",
        "",
        f"Settings: k = {prompts['k_used']} demonstrations ({prompts['prefix_tokens']} prefix "
        f"tokens), seed {unit['seed']}, {_count(config['heatmap_examples'], 'captured test example')} "
        f"(the figures and tables average them), finetuning lrs {lr} ({unit['lr_source']}) in "
        f"{unit['finetune_dtype']}. Capturing the prompt attention took "
        f"{timings['prompt attention']:.0f} s of the {timings['unit']:.0f} s unit.",
        "",
        "## What the numbers show",
        "",
        *_findings(unit, tables),
        "",
        f"{_count(config['heatmap_examples'], 'example')} and "
        f"{_count(len(config['seeds']), 'demonstration draw')}: these are "
        "observations about this run, not general claims; rerun with more `--heatmap-examples` "
        "and `--seeds` before relying on them.",
        "",
        "## Figures",
        "",
        *[f"![{caption}]({data}/figures/{name})\n" for caption, name in figures],
        "## Mass per role and layer (mean over heads and examples)",
        "",
        *_role_table(tables),
        "",
        "## The two most-read demonstrations per layer (mass, mean over heads and examples)",
        "",
        *_top_table(tables),
    ]
    markdown = "\n".join(parts) + "\n"
    write_text(doc, markdown)
    return markdown
