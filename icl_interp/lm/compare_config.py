"""``icl-interp compare``'s settings and options, import-light (no torch or transformer-lens
until a config is validated), so a mistyped option is reported at once."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from icl_interp.errors import UserError
from icl_interp.options import (
    add_backend_arguments,
    add_config_arguments,
    check_backend_options,
    check_list_option,
    config_values,
    option,
    seed,
)

DEFAULT_OUT = Path("runs/compare")
MIN_BOOTSTRAP = 40  # replicates: one beyond each bound of a 95% percentile interval
LR_POLICIES = ("chosen", "reference")


def lr_value(text: str) -> float | str:
    """``--lr``'s value: a policy name kept as text, anything else a float (checked later)."""
    if text in LR_POLICIES:
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number, {' or '.join(LR_POLICIES)}; got {text!r}"
        ) from None


@dataclass(frozen=True)
class CompareConfig:
    """What to compare. ``k`` of None uses each data set's default (docs/definitions.md);
    ``lr`` is a number, ``"reference"`` (the data set's value from the reference paper) or
    ``"chosen"`` (the packaged table ``icl_interp/lm/chosen_lrs.csv`` of lrs chosen by the rule,
    or ``lr_table``, a table of the same columns; the reference value where it has no row);
    empty ``masks``/``methods``/``metrics`` mean every registered one. A non-empty ``lr_grid``
    chooses each finetuning's lr by the rule of ``icl_interp.lm.lr_rule`` (``n_val``
    validation examples from the train split) instead; with ``lr_sensitivity`` the unit also
    records GD's and LCGD's metrics at every lr the sweep scored (``lr_sensitivity.csv``).

    ``seeds`` drive everything random in a unit: the demonstrations, the test examples, the
    untrained baseline's weights and the random SimAOU baseline. ``backend``, ``workers`` and
    ``threads`` say where units run (``icl_interp.runs``; more than one worker is CPU only);
    they never change a number.
    """

    models: tuple[str, ...] = option(
        ("gemma-3-270m",), "packaged name, tiny-<arch>, HF dir or .gguf", group="grid", nargs="+"
    )
    datasets: tuple[str, ...] = option(
        ("mr",),
        "registered data sets (icl-interp layers --help lists them)",
        flags=("--datasets", "--data"),
        group="grid",
        nargs="+",
    )
    seeds: tuple[int, ...] = option(
        (0,),
        "demonstration draws (each seed draws the demonstrations and the test queries)",
        group="grid",
        nargs="+",
        type=seed,
    )
    masks: tuple[str, ...] = option(
        (), "ICL mask kinds (default: every registered one)", group="grid", nargs="+"
    )
    methods: tuple[str, ...] = option(
        (),
        "compared methods (default: every registered one: gd, lcgd, untrained, controls)",
        group="grid",
        nargs="+",
    )
    n_test: int = option(24, "test examples per data set", group="grid", type=int)
    k: int | None = option(None, "demonstrations (default: per data set)", group="grid", type=int)
    lr: float | str = option(
        "chosen",
        "GD/LCGD learning rate: a number, 'reference' (the paper's per data set) or 'chosen' "
        "(default: the packaged table of lrs chosen by the --lr-grid rule, else the reference "
        "value)",
        group="finetuning",
        type=lr_value,
    )
    lr_grid: tuple[float, ...] = option(
        (),
        "choose each finetuning's lr from these by validation accuracy on the train split "
        "(e.g. 1e-5 1e-4 1e-3 1e-2 1e-1; see icl_interp/lm/lr_rule.py)",
        group="finetuning",
        nargs="+",
        type=float,
    )
    lr_table: str | None = option(
        None,
        "with --lr chosen: read the lrs from this table (columns as in the packaged "
        "icl_interp/lm/chosen_lrs.csv, e.g. one written by analyses/icl_gd_report.py)",
        group="finetuning",
    )
    n_val: int = option(128, "validation examples for --lr-grid", group="finetuning", type=int)
    lr_sensitivity: bool = option(
        False,
        "with --lr-grid: also compute GD's and LCGD's metrics on the test queries at every lr "
        "the sweep scored (lr_sensitivity.csv; the choice still reads validation only)",
        group="finetuning",
    )
    params: str = option("kv", "trained parameters: v, kv, attn, all", group="finetuning")
    finetune_dtype: str = option(
        "auto",
        "auto, float32 or bfloat16 (GD/LCGD forward passes under bf16 autocast, ~2-3x faster on "
        "CPUs with AVX512-BF16); auto = bfloat16 where the hardware supports it",
        group="finetuning",
    )
    max_len: int = option(
        2048, "prompt budget; demonstrations are dropped to fit", group="run", type=int
    )
    batch_size: int = option(8, "prompts per forward pass", group="run", type=int)
    heatmap_examples: int = option(
        2, "test queries whose attention is kept for the heatmaps (0: none)", group="run", type=int
    )
    bootstrap: int = option(
        100,
        "resamplings of the test examples for 95%% intervals (0: none; else >= 40)",
        group="run",
        type=int,
    )
    data_dir: str | None = option(
        None, "folder of local data sets (default: packaged / hub)", group="run"
    )
    source: str = option("auto", "auto, folder, package or hub", group="run")
    device: str = option("cpu", "cpu, cuda, cuda:1, ...", group="run")
    metrics: tuple[str, ...] = option((), "default: every registered one", group="grid", nargs="+")
    backend: str = "auto"
    workers: int = 1
    threads: int | None = None

    def __post_init__(self) -> None:
        from icl_interp.lm.conditions import METHODS, method_names
        from icl_interp.lm.finetune import COMPUTE_DTYPES
        from icl_interp.lm.metrics import METRICS, metric_names
        from icl_interp.masks import MASKS, mask_names

        for name, every in (
            ("masks", mask_names),
            ("methods", method_names),
            ("metrics", metric_names),
        ):
            if not getattr(self, name):
                object.__setattr__(self, name, tuple(every()))
        for name in ("models", "datasets", "seeds", "masks", "methods", "metrics"):
            check_list_option(name, getattr(self, name))
        for mask in self.masks:
            MASKS.get(mask)
        for method in self.methods:
            METHODS.get(method)
        for metric in self.metrics:
            METRICS.get(metric)
        if any(seed < 0 for seed in self.seeds):
            raise UserError(f"--seeds must be >= 0, got {list(self.seeds)}")
        if self.n_test < 1:
            raise UserError(f"--n-test must be >= 1, got {self.n_test}")
        if self.k is not None and self.k < 1:
            raise UserError(f"--k must be >= 1, got {self.k}")
        if isinstance(self.lr, str) and self.lr not in LR_POLICIES:
            raise UserError(f"--lr must be a number, {' or '.join(LR_POLICIES)}; got {self.lr!r}")
        if not isinstance(self.lr, str) and not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr must be a finite number > 0, got {self.lr}")
        if self.lr != "chosen" and self.lr_grid:
            raise UserError(
                "give --lr (one fixed lr) or --lr-grid (an lr chosen per method), not both"
            )
        if self.lr_table is not None:
            if self.lr != "chosen" or self.lr_grid:
                raise UserError(
                    "--lr-table goes with --lr chosen only (not --lr-grid or a fixed --lr)"
                )
            from icl_interp.lm.lr_rule import check_chosen_table

            check_chosen_table(Path(self.lr_table))
        if any(not (math.isfinite(lr) and lr > 0) for lr in self.lr_grid):
            raise UserError(
                f"--lr-grid values must be finite numbers > 0, got {list(self.lr_grid)}"
            )
        if self.lr_sensitivity and not self.lr_grid:
            raise UserError("--lr-sensitivity needs --lr-grid (it re-runs the sweep's lrs)")
        if self.n_val < 1:
            raise UserError(f"--n-val must be >= 1, got {self.n_val}")
        if self.finetune_dtype not in COMPUTE_DTYPES:
            raise UserError(
                f"unknown --finetune-dtype {self.finetune_dtype!r}; valid: {', '.join(COMPUTE_DTYPES)}"
            )
        if self.max_len < 2:
            raise UserError(f"--max-len must be >= 2, got {self.max_len}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.bootstrap < 0 or 0 < self.bootstrap < MIN_BOOTSTRAP:
            raise UserError(
                f"--bootstrap must be 0 (no intervals) or at least {MIN_BOOTSTRAP} (the fewest "
                "replicates with one beyond each bound of a 95% percentile interval), "
                f"got {self.bootstrap}"
            )
        if self.heatmap_examples < 0:
            raise UserError(f"--heatmap-examples must be >= 0, got {self.heatmap_examples}")
        check_backend_options(self.backend, self.workers, self.threads)
        if self.workers > 1 and self.device.split(":")[0] != "cpu":
            raise UserError(
                f"--workers {self.workers} runs units on CPU workers; with --device "
                f"{self.device} use --workers 1"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CompareConfig:
        tuples = ("models", "datasets", "seeds", "masks", "methods", "metrics", "lr_grid")
        fields: dict[str, Any] = {k: tuple(v) if k in tuples else v for k, v in values.items()}
        return cls(**fields)


GROUPS = {"grid": "the grid", "finetuning": "finetuning", "run": "the run"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """compare's options, in three groups: the grid, the finetuning, the run."""
    groups = add_config_arguments(parser, CompareConfig, GROUPS)
    add_backend_arguments(groups["run"], "units")
    groups["run"].add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="result folder (the same command resumes it)"
    )
    groups["run"].add_argument("--no-figures", action="store_true", help="write tables only")


def check_arguments(args: argparse.Namespace) -> None:
    """Validate the options before the model code is imported (one line, exit 2)."""
    config_from_args(args)


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    from icl_interp.lm.finetune import PARAM_GROUP_NAMES

    if args.params not in PARAM_GROUP_NAMES:
        raise UserError(
            f"unknown parameter group {args.params!r}; valid groups: {', '.join(PARAM_GROUP_NAMES)}"
        )
    from icl_interp.lm.data import get_dataset

    values = config_values(CompareConfig, args)
    values["datasets"] = tuple(get_dataset(name).name for name in values["datasets"])
    if values["lr_table"] is not None:
        values["lr_table"] = str(Path(values["lr_table"]).resolve())
    return CompareConfig(**values)
