"""Per-layer (logit-lens) accuracy: zero-shot vs causal ICL vs prefix ICL, over demonstration seeds.

ICL accuracy of small models swings with the sampled demonstrations, so this driver runs
``icl-interp layers`` once per (k, seed) (each resumable, in ``<out>/k<k>_seed<seed>``)
and draws the mean over seeds with a band of one standard error.

    .venv/bin/python analyses/layer_accuracy.py --ks 32 --seeds 0 1 2 --threads 1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from icl_interp.cli import OneLineParser, script_exit_code
from icl_interp.lm.conditions import conditions
from icl_interp.lm.layers import LayerAccuracyConfig, run_config
from icl_interp.masks import mask_names
from icl_interp.results import ResultFolder, write_csv, write_figure


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="layer_accuracy.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="gemma-3-270m",
        help="model: packaged name, tiny-<arch>, HF folder or .gguf",
    )
    parser.add_argument("--dataset", default="mr", help="data set (a registered name)")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the data sets (default: the packaged copies)",
    )
    parser.add_argument("--source", default="auto", help="auto, folder, package or hub")
    parser.add_argument(
        "--masks", nargs="+", default=mask_names(), help="mask kinds (registered names)"
    )
    parser.add_argument("--ks", type=int, nargs="+", default=[32], help="demonstration counts")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="demonstration draws, one seed each"
    )
    parser.add_argument("--n-test", type=int, default=200, help="test queries per draw")
    parser.add_argument("--limit", type=int, default=None, help="at most this many test examples")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default="results/layer_accuracy", help="result folder")
    return parser.parse_args(argv)


def plot(table: pd.DataFrame, title: str):
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    labels = {c.name: c.label for c in conditions()}
    shown = table.assign(condition=table["condition"].map(lambda c: labels.get(c, c)))
    shown["k_panel"] = "k = " + shown["k_requested"].astype(str)
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        grid = sns.relplot(
            data=shown, x="layer", y="value", hue="condition", col="k_panel", kind="line",
            marker="o", errorbar="se", height=3.4, aspect=1.3,
        )  # fmt: skip
    grid.set_axis_labels("layer (logit lens on the block output)", "accuracy")
    grid.set_titles("{col_name}")
    grid.set(ylim=(0, 1))
    for ax in grid.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    grid.figure.suptitle(title, y=1.03)
    return grid.figure


def main(args: argparse.Namespace) -> pd.DataFrame:
    import matplotlib.pyplot as plt

    out = Path(args.out)
    settings = {k: v for k, v in vars(args).items() if k not in ("threads", "out")}
    ResultFolder(out, "analyses/layer_accuracy.py", settings).claim()
    tables = []
    for k in args.ks:
        for seed in args.seeds:
            config = LayerAccuracyConfig(
                model=args.model, dataset=args.dataset, data_dir=args.data_dir,
                source=args.source, masks=tuple(args.masks), k=k,
                n_test=args.n_test, seed=seed, limit=args.limit, batch_size=args.batch_size,
                threads=args.threads, out=str(out / f"k{k}_seed{seed}"),
            )  # fmt: skip
            tables.append(run_config(config).assign(k_requested=k))
    table = pd.concat(tables, ignore_index=True)
    write_csv(out / "layer_accuracy_all.csv", table)
    n_examples = int(table["n_examples"].iloc[0])
    title = f"{args.model}, {args.dataset}, n={n_examples}, seeds {args.seeds}"
    figure = plot(table, title)
    write_figure(out / "layer_accuracy", figure)
    plt.close(figure)
    last = table[table["layer"] == table["layer"].max()]
    summary = (
        last.groupby(["k_requested", "condition"])["value"]
        .agg(["mean", "std", "min", "max"])
        .round(3)
    )
    print("final-layer accuracy over seeds:\n" + summary.to_string())
    return table


def _main(argv: Sequence[str] | None = None) -> int:
    return script_exit_code("layer_accuracy", parse_args, main, argv)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
