"""``icl-interp compare``'s settings and options, import-light (no torch or transformer-lens
until a config is validated), so a mistyped option is reported at once."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from icl_interp.errors import UserError
from icl_interp.options import Distinct, add_backend_arguments, check_backend_options, seed

DEFAULT_OUT = Path("runs/compare")
MIN_BOOTSTRAP = 40  # replicates: one beyond each bound of a 95% percentile interval
LR_POLICIES = ("chosen", "reference")


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

    models: tuple[str, ...] = ("gemma-3-270m",)
    datasets: tuple[str, ...] = ("mr",)
    seeds: tuple[int, ...] = (0,)
    masks: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    n_test: int = 24
    k: int | None = None
    lr: float | str = "chosen"
    lr_grid: tuple[float, ...] = ()
    lr_table: str | None = None
    n_val: int = 128
    lr_sensitivity: bool = False
    params: str = "kv"
    finetune_dtype: str = "auto"
    max_len: int = 2048
    batch_size: int = 8
    heatmap_examples: int = 2
    bootstrap: int = 100
    data_dir: str | None = None
    source: str = "auto"
    device: str = "cpu"
    metrics: tuple[str, ...] = ()
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
            values = getattr(self, name)
            if not values:
                raise UserError(f"--{name} needs at least one value")
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            if repeated:
                raise UserError(f"--{name} lists {', '.join(repeated)} more than once")
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


class _Defaults:
    """CompareConfig's field defaults, read without constructing (and validating) one."""

    def __getattr__(self, name: str) -> Any:
        return {f.name: f.default for f in fields(CompareConfig)}[name]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """compare's options, in three groups: the grid, the finetuning, the run."""
    defaults = _Defaults()
    _grid_arguments(parser, defaults)
    _finetuning_arguments(parser, defaults)
    _run_arguments(parser, defaults)


def _grid_arguments(parser: argparse.ArgumentParser, defaults: _Defaults) -> None:
    """What is compared: models, data, draws, masks, methods, metrics."""
    group = parser.add_argument_group("the grid")
    group.add_argument(
        "--models",
        nargs="+",
        action=Distinct,
        default=list(defaults.models),
        help="packaged name, tiny-<arch>, HF dir or .gguf",
    )
    group.add_argument(
        "--datasets",
        "--data",
        nargs="+",
        action=Distinct,
        default=list(defaults.datasets),
        help="registered data sets (icl-interp layers --help lists them)",
    )
    group.add_argument(
        "--seeds",
        nargs="+",
        type=seed,
        action=Distinct,
        default=list(defaults.seeds),
        help="demonstration draws (each seed draws the demonstrations and the test queries)",
    )
    group.add_argument(
        "--masks",
        nargs="+",
        action=Distinct,
        default=list(defaults.masks),
        help="ICL mask kinds (default: every registered one)",
    )
    group.add_argument(
        "--methods",
        nargs="+",
        action=Distinct,
        default=list(defaults.methods),
        help="compared methods (default: every registered one: gd, lcgd, untrained, controls)",
    )
    group.add_argument(
        "--metrics",
        nargs="+",
        action=Distinct,
        default=list(defaults.metrics),
        help="default: every registered one",
    )
    group.add_argument(
        "--n-test", type=int, default=defaults.n_test, help="test examples per data set"
    )
    group.add_argument("--k", type=int, default=None, help="demonstrations (default: per data set)")


def _finetuning_arguments(parser: argparse.ArgumentParser, defaults: _Defaults) -> None:
    """How GD and LCGD finetune: the lr (or its rule), parameters, dtype."""
    group = parser.add_argument_group("finetuning")
    group.add_argument(
        "--lr",
        type=lr_value,
        default=None,
        help="GD/LCGD learning rate: a number, 'reference' (the paper's per data set) or "
        "'chosen' (default: the packaged table of lrs chosen by the --lr-grid rule, else "
        "the reference value)",
    )
    group.add_argument(
        "--lr-grid",
        nargs="+",
        type=float,
        action=Distinct,
        default=[],
        help="choose each finetuning's lr from these by validation accuracy on the train split "
        "(e.g. 1e-5 1e-4 1e-3 1e-2 1e-1; see icl_interp/lm/lr_rule.py)",
    )
    group.add_argument(
        "--lr-table",
        default=None,
        help="with --lr chosen: read the lrs from this table (columns as in the packaged "
        "icl_interp/lm/chosen_lrs.csv, e.g. one written by analyses/icl_gd_report.py)",
    )
    group.add_argument(
        "--n-val", type=int, default=defaults.n_val, help="validation examples for --lr-grid"
    )
    group.add_argument(
        "--lr-sensitivity",
        action="store_true",
        help="with --lr-grid: also compute GD's and LCGD's metrics on the test queries at every "
        "lr the sweep scored (lr_sensitivity.csv; the choice still reads validation only)",
    )
    group.add_argument(
        "--params", default=defaults.params, help="trained parameters: v, kv, attn, all"
    )
    group.add_argument(
        "--finetune-dtype",
        default=defaults.finetune_dtype,
        help="auto, float32 or bfloat16 (GD/LCGD forward passes under bf16 autocast, ~2-3x "
        "faster on CPUs with AVX512-BF16); auto = bfloat16 where the hardware supports it",
    )


def _run_arguments(parser: argparse.ArgumentParser, defaults: _Defaults) -> None:
    """Prompts, outputs, data source, device and where units run."""
    group = parser.add_argument_group("the run")
    group.add_argument(
        "--max-len",
        type=int,
        default=defaults.max_len,
        help="prompt budget; demonstrations are dropped to fit",
    )
    group.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="prompts per forward pass"
    )
    group.add_argument(
        "--heatmap-examples",
        type=int,
        default=defaults.heatmap_examples,
        help="test queries whose attention is kept for the heatmaps (0: none)",
    )
    group.add_argument(
        "--bootstrap",
        type=int,
        default=defaults.bootstrap,
        help="resamplings of the test examples for 95%% intervals (0: none; else >= 40)",
    )
    group.add_argument(
        "--data-dir", default=None, help="folder of local data sets (default: packaged / hub)"
    )
    group.add_argument("--source", default=defaults.source, help="auto, folder, package or hub")
    group.add_argument("--device", default=defaults.device, help="cpu, cuda, cuda:1, ...")
    add_backend_arguments(group, "units")
    group.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="result folder (the same command resumes it)"
    )
    group.add_argument("--no-figures", action="store_true", help="write tables only")


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

    return CompareConfig(
        models=tuple(args.models),
        datasets=tuple(get_dataset(name).name for name in args.datasets),
        seeds=tuple(args.seeds),
        masks=tuple(args.masks),
        methods=tuple(args.methods),
        metrics=tuple(args.metrics),
        n_test=args.n_test,
        k=args.k,
        lr="chosen" if args.lr is None else args.lr,
        lr_grid=tuple(args.lr_grid),
        lr_table=None if args.lr_table is None else str(Path(args.lr_table).resolve()),
        n_val=args.n_val,
        lr_sensitivity=args.lr_sensitivity,
        params=args.params,
        finetune_dtype=args.finetune_dtype,
        max_len=args.max_len,
        batch_size=args.batch_size,
        heatmap_examples=args.heatmap_examples,
        bootstrap=args.bootstrap,
        data_dir=args.data_dir,
        source=args.source,
        device=args.device,
        backend=args.backend,
        workers=args.workers,
        threads=args.threads,
    )
