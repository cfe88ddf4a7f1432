"""Task-vector curves per layer (Hendel et al.): zero-shot, ICL, patched vector and controls,
per model x data set x demonstration draw x mask kind.

    python analyses/task_vectors.py --models gemma-3-270m smollm2-135m \
        --datasets sst2 mr agnews --seeds 0 1 2 3 4 --n-test 50 --out results/task_vectors

Each (model, data, seed, mask) unit is written to ``units/`` as it finishes and reused on a
rerun. ``task_vectors.csv`` is tidy (one row per model x data x seed x mask x condition x
layer; ``layer`` empty for zero-shot and ICL, the model's output); ``figure_<model>.png``
shows mean accuracy per layer with its 95% t-interval over the draws, masks side by side.
The ``other_data`` control takes its vector from the next data set of ``--datasets``
(cyclically; skipped with one data set). Definitions and costs: ``icl_interp.lm.task_vectors``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from icl_interp.cli import OneLineParser, script_exit_code
from icl_interp.errors import UserError
from icl_interp.lm.data import make_prompts
from icl_interp.lm.models import load_model
from icl_interp.lm.task_vectors import TV_CONDITIONS, rotate_labels, task_vector_accuracy
from icl_interp.masks import MASKS
from icl_interp.options import add_draw_grid_arguments
from icl_interp.results import ResultFolder, done, read_csv, write_csv, write_figure, write_text

SOURCES = [name for name in TV_CONDITIONS.registered() if TV_CONDITIONS.get(name).per_layer]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="task_vectors.py", description=__doc__.splitlines()[0])
    add_draw_grid_arguments(parser)
    parser.add_argument("--sources", nargs="+", default=SOURCES, help=", ".join(SOURCES))
    parser.add_argument("--batch-size", type=int, default=8, help="queries per batched forward")
    parser.add_argument("--no-figures", action="store_true", help="write tables only")
    parser.add_argument(
        "--out", type=Path, default=Path("results/task_vectors"), help="result folder"
    )
    args = parser.parse_args(argv)
    try:
        for mask in args.masks:
            MASKS.get(mask)
        for name in args.sources:
            if name not in SOURCES:
                raise UserError(f"unknown source {name!r}; valid: {', '.join(SOURCES)}")
        if args.n_test < 2 or (args.k is not None and args.k < 1):
            raise UserError("--n-test must be >= 2 and --k >= 1")
    except UserError as err:
        parser.error(str(err))
    return args


def unit_path(out: Path, model: str, data: str, seed: int, mask: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model)
    return out / "units" / f"{safe}_{data}_seed{seed}_{mask}.csv"


def run_model(args: argparse.Namespace, name: str, timings: dict[str, float]) -> list[pd.DataFrame]:
    model = load_model(name)
    tokenizer, context = model.tokenizer, int(model.cfg.n_ctx)
    options = {"n_test": args.n_test, "k": args.k, "max_len": args.max_len, "context": context,
               "data_dir": args.data_dir, "source": args.source}  # fmt: skip
    frames = []
    for position, data in enumerate(args.datasets):
        other = args.datasets[(position + 1) % len(args.datasets)]
        for seed in args.seeds:
            paths = {mask: unit_path(args.out, name, data, seed, mask) for mask in args.masks}
            if all(done(path) for path in paths.values()):
                frames += [read_csv(path) for path in paths.values()]
                continue
            spec, prompts, _ = make_prompts(tokenizer, data, seed=seed, **options)
            sources = {}
            if "task_vector" in args.sources:
                sources["task_vector"] = prompts
            if "rotated_labels" in args.sources:
                sources["rotated_labels"] = rotate_labels(tokenizer, spec, prompts)
            if "other_data" in args.sources and other != data:
                sources["other_data"] = make_prompts(tokenizer, other, seed=seed, **options)[1]
            for mask, path in paths.items():
                if not done(path):
                    start = time.perf_counter()
                    rows = task_vector_accuracy(
                        model, prompts, mask=mask, sources=sources, batch_size=args.batch_size
                    )
                    timings[path.stem] = round(time.perf_counter() - start, 2)
                    frame = pd.DataFrame(rows)
                    frame.insert(0, "model", name)
                    frame.insert(1, "data", data)
                    frame.insert(2, "seed", seed)
                    frame["other_data"] = other if "other_data" in sources else ""
                    frame["k_used"] = prompts.k_used
                    write_csv(path, frame)
                frames.append(read_csv(path))
    return frames


def main(args: argparse.Namespace) -> pd.DataFrame:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    ignored = ("threads", "out", "no_figures", "batch_size")
    settings = {k: v for k, v in vars(args).items() if k not in ignored}
    folder = ResultFolder(args.out, "analyses/task_vectors.py", settings)
    folder.claim()
    timings: dict[str, float] = {}
    frames = [frame for name in args.models for frame in run_model(args, name, timings)]
    table = pd.concat(frames, ignore_index=True)
    write_csv(args.out / "task_vectors.csv", table)
    write_text(args.out / "timings.json", json.dumps(timings, indent=2, sort_keys=True) + "\n")
    if not args.no_figures:
        import matplotlib.pyplot as plt

        from icl_interp.lm.order_tv_page import task_vector_figure

        for name in args.models:
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
            figure = task_vector_figure(table, name)
            write_figure(args.out / f"figure_{safe}", figure)
            plt.close(figure)
    summary = table.groupby(["model", "data", "mask", "condition"], dropna=False)["value"]
    print(summary.mean().unstack("condition").round(3).to_string())
    return table


def _main(argv: Sequence[str] | None = None) -> int:
    return script_exit_code("task_vectors", parse_args, main, argv)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
