"""Settings of one ``icl-interp adapt-table`` run, import-light (no torch): ``TableConfig``,
which embeds the training settings it hands to ``AdaptConfig`` (``adapt_config``), its named
``PRESETS``, and the command's options."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from icl_interp.errors import UserError
from icl_interp.lm.adapt.config import AdaptConfig
from icl_interp.options import (
    add_backend_arguments,
    add_config_arguments,
    check_backend_options,
    config_values,
    nested,
    option,
    seed,
)


@dataclass(frozen=True)
class TableConfig:
    """Everything one ``adapt-table`` run does; ``PRESETS`` hold the named settings.

    ``training`` is the ``AdaptConfig`` every adapted model trains with (its base model, data
    folder and device are the table's too); the table sets each model's objective, seed and
    folder. ``lr_grid``: choose the lr by the adaptation lr rule first (a pilot), whose choice
    replaces ``training.lr``."""

    preset: str = "cpu"
    training: AdaptConfig = nested(
        AdaptConfig,
        group="adaptation",
        flags={"k": "--train-k", "queries": "--train-queries", "max_len": "--train-max-len"},
        omit=("objective", "seed", "out", "threads", "max_minutes", "progress"),
    )
    heldout: tuple[str, ...] = option(
        ("trec", "sst5", "rte"), "evaluation data sets", group="table", nargs="+"
    )
    ks: tuple[int, ...] = option(
        (4, 8, 16), "demonstrations at test", group="table", nargs="+", type=int
    )
    seeds: tuple[int, ...] = option(
        (0, 1, 2),
        "one adaptation (and its test draws) per seed",
        group="table",
        nargs="+",
        type=seed,
    )
    n_test: int = option(32, "test queries per data set", group="table", type=int)
    eval_max_len: int = option(1024, "token budget of a test prompt", group="table", type=int)
    batch_size: int = option(8, "test prompts per forward pass", group="table", type=int)
    lr_grid: tuple[float, ...] = option(
        (),
        "choose the lr by the adaptation rule first: seed 0 adapted with each objective at "
        "each lr, the lowest mean validation loss (ties: the smaller lr)",
        group="adaptation",
        nargs="+",
        type=float,
    )
    # layer section (icl-interp compare on one held-out data set)
    layer_dataset: str = option("sst5", "data set of the per-layer comparison", group="layers")
    layer_k: int = option(4, "demonstrations of the per-layer comparison", group="layers", type=int)
    layer_n_test: int = option(
        16, "test queries of the per-layer comparison", group="layers", type=int
    )
    layer_seeds: tuple[int, ...] = option(
        (0, 1, 2), "seeds of the per-layer comparison", group="layers", nargs="*", type=seed
    )
    layer_methods: tuple[str, ...] = ("gd", "lcgd")
    layer_lr: float | None = None
    layer_base: bool = False
    threads: int | None = None
    max_minutes: float | None = option(
        None,
        "stop at a step boundary after this long; the same command resumes",
        group="run",
        type=float,
    )
    backend: str = "auto"
    workers: int = 1

    def __post_init__(self) -> None:
        if any(not lr > 0 for lr in self.lr_grid) or len(set(self.lr_grid)) < len(self.lr_grid):
            raise UserError(f"--lr-grid needs distinct lrs > 0, got {list(self.lr_grid)}")
        for name in (
            "heldout",
            "ks",
            "seeds",
            "layer_seeds",
            "layer_methods",
            "lr_grid",
        ):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            if name not in ("layer_seeds", "lr_grid") and not getattr(self, name):
                raise UserError(f"--{name.replace('_', '-')} needs at least one value")
        overlap = sorted(set(self.training.mixture) & set(self.heldout))
        if overlap:
            raise UserError(
                f"held-out data set(s) {', '.join(overlap)} are also in the training mixture; "
                "evaluation sets must never be trained on"
            )
        if len(set(self.heldout)) != len(self.heldout):
            raise UserError(f"--heldout names a data set twice: {list(self.heldout)}")
        if self.layer_seeds and self.layer_dataset not in self.heldout:
            raise UserError(
                f"--layer-dataset {self.layer_dataset!r} must be one of the held-out data sets "
                f"({', '.join(self.heldout)})"
            )
        if not set(self.layer_seeds) <= set(self.seeds):
            raise UserError(f"--layer-seeds {list(self.layer_seeds)} must be among --seeds")
        for name in ("n_test", "eval_max_len", "batch_size", "layer_k", "layer_n_test"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1")
        if any(k < 1 for k in self.ks) or any(s < 0 for s in self.seeds):
            raise UserError("--ks must be >= 1 and --seeds >= 0")
        check_backend_options(self.backend, self.workers, self.threads)
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise UserError(f"--max-minutes must be > 0, got {self.max_minutes}")

    def to_dict(self) -> dict[str, Any]:
        from icl_interp.results import to_jsonable

        return to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TableConfig:
        return cls(**{**values, "training": AdaptConfig.from_dict(values["training"])})

    def adapt_config(
        self, objective: str, seed: int, out: Path, lr: float | None = None
    ) -> AdaptConfig:
        """The training settings of one adapted model (``lr``: this lr instead of ``training``'s)."""
        lr = self.training.lr if lr is None else lr
        return replace(self.training, objective=objective, seed=seed, out=str(out), lr=lr)


PRESETS: dict[str, dict[str, Any]] = {
    # the whole table and the layer section on 2 CPU cores (README: measured cost)
    "cpu": {},
    # more steps, data and test examples; for a GPU
    "full": {
        "training": {
            "steps": 2000,
            "k": 8,
            "max_len": 1024,
            "warmup": 100,
            "val_episodes": 50,
            "eval_every": 250,
            "device": "cuda",
        },
        "heldout": ("trec", "sst5", "rte", "cb"),
        "n_test": 200,
        "eval_max_len": 2048,
        "ks": (4, 8, 16, 32),
        "seeds": (0, 1, 2, 3, 4),
        "layer_k": 16,
        "layer_n_test": 64,
        "layer_seeds": (0, 1, 2, 3, 4),
        "layer_base": True,
    },
    # tests: tiny random model, seconds
    "tiny": {
        "training": {
            "base": "tiny-gemma3",
            "mixture": ("sst2", "mr"),
            "k": 2,
            "max_len": 128,
            "steps": 4,
            "lr": 1e-3,
            "warmup": 1,
            "val_episodes": 2,
            "eval_every": 2,
        },
        "heldout": ("sst5", "trec"),
        "ks": (2, 4),
        "seeds": (0, 1),
        "n_test": 6,
        "eval_max_len": 256,
        "layer_k": 2,
        "layer_n_test": 4,
        "layer_seeds": (0,),
        "layer_methods": ("gd",),
    },
}


GROUPS = {
    "table": "the table",
    "adaptation": "the adaptation",
    "layers": "the per-layer comparison",
    "run": "the run",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """adapt-table's options; each one not given takes the ``--preset``'s value."""
    parser.add_argument(
        "--preset",
        default="cpu",
        help=f"one of {', '.join(PRESETS)}: the value of every option below that is not given",
    )
    groups = add_config_arguments(parser, TableConfig, GROUPS, presets=True)
    add_backend_arguments(groups["run"], "adaptations, evaluation groups and layer comparisons")
    groups["run"].add_argument(
        "--out", type=Path, default=Path("runs/adapt_table"), help="result folder (resumable)"
    )


def config_from_args(args: argparse.Namespace) -> TableConfig:
    from icl_interp.lm.data import get_dataset

    if args.preset not in PRESETS:
        raise UserError(f"unknown preset {args.preset!r}; valid presets: {', '.join(PRESETS)}")
    preset = PRESETS[args.preset]
    given = config_values(TableConfig, args)
    training = {**preset.get("training", {}), **given.pop("training", {})}
    if "lr" in training and "lr_grid" in given:
        raise UserError("give adapt-table --lr or --lr-grid, not both")
    if "mixture" in training:
        training["mixture"] = tuple(get_dataset(n).name for n in training["mixture"])
    values: dict[str, Any] = {**preset, **given, "training": AdaptConfig(**training)}
    if "heldout" in values:
        values["heldout"] = tuple(get_dataset(n).name for n in values["heldout"])
    if "layer_dataset" in values:
        values["layer_dataset"] = get_dataset(values["layer_dataset"]).name
    return TableConfig(**values)
