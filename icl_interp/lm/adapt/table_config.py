"""Settings of one ``icl-interp adapt-table`` run, import-light (no torch): ``TableConfig``,
which embeds the training settings it hands to ``AdaptConfig`` (``adapt_config``), its named
``PRESETS``, and the command's options."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from icl_interp.errors import UserError
from icl_interp.lm.adapt.config import DEFAULT_MIXTURE, AdaptConfig
from icl_interp.options import (
    add_backend_arguments,
    add_config_arguments,
    check_backend_options,
    config_values,
    option,
    seed,
)


@dataclass(frozen=True)
class TableConfig:
    """Everything one ``adapt-table`` run does; ``PRESETS`` hold the named settings."""

    preset: str = "cpu"
    base: str = option("gemma-3-270m", "base model", flags=("--model", "--base"), group="table")
    mixture: tuple[str, ...] = option(
        DEFAULT_MIXTURE, "adaptation data sets", group="table", nargs="+"
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
    eval_max_len: int = 1024
    batch_size: int = 8
    # adaptation (icl_interp.lm.adapt.AdaptConfig)
    train_k: int = option(4, "demonstrations per episode", group="adaptation", type=int)
    train_queries: int = option(8, "queries per episode", group="adaptation", type=int)
    train_max_len: int = 512
    steps: int = option(100, "adaptation steps", group="adaptation", type=int)
    # the adaptation lr rule's choice from (1e-4, 3e-4), --lr-grid
    lr: float | None = option(3e-4, "adaptation learning rate", group="adaptation", type=float)
    lr_grid: tuple[float, ...] = option(
        (),
        "choose the lr by the adaptation rule first: seed 0 adapted with each objective at "
        "each lr, the lowest mean validation loss (ties: the smaller lr)",
        group="adaptation",
        nargs="+",
        type=float,
    )
    warmup: int = 10
    params: str = option("lora", "blocks, attn or lora", group="adaptation")
    lora_rank: int = 16
    loss_on: str = option("answer", "answer, or labels (causal only)", group="adaptation")
    val_episodes: int = 16
    eval_every: int = 50
    # layer section (icl-interp compare on one held-out data set)
    layer_dataset: str = option("sst5", "data set of the per-layer comparison", group="layers")
    layer_k: int = 4
    layer_n_test: int = 16
    layer_seeds: tuple[int, ...] = option(
        (0, 1, 2), "seeds of the per-layer comparison", group="layers", nargs="*", type=seed
    )
    layer_methods: tuple[str, ...] = ("gd", "lcgd")
    layer_lr: float | None = None
    layer_base: bool = False
    data_dir: str | None = option(None, "folder holding the data sets", group="run")
    source: str = "auto"
    device: str = option("cpu", "cpu or cuda", group="run")
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
        if (self.lr is None) == (not self.lr_grid):
            raise UserError("give adapt-table one of --lr and --lr-grid")
        if any(not lr > 0 for lr in self.lr_grid) or len(set(self.lr_grid)) < len(self.lr_grid):
            raise UserError(f"--lr-grid needs distinct lrs > 0, got {list(self.lr_grid)}")
        for name in (
            "mixture",
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
        overlap = sorted(set(self.mixture) & set(self.heldout))
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
        lr = self.lr if self.lr is not None else self.lr_grid[0]
        self.adapt_config("causal", self.seeds[0], Path("unused"), lr)  # the training part

    def to_dict(self) -> dict[str, Any]:
        from icl_interp.results import to_jsonable

        return to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TableConfig:
        return cls(**values)

    def adapt_config(
        self, objective: str, seed: int, out: Path, lr: float | None = None
    ) -> AdaptConfig:
        """The training settings of one adapted model (``lr``: this lr instead of the table's)."""
        lr = self.lr if lr is None else lr
        if lr is None:
            raise UserError("the table's lr is not chosen yet (--lr-grid runs the pilot first)")
        return AdaptConfig(
            base=self.base,
            objective=objective,
            mixture=self.mixture,
            k=self.train_k,
            queries=self.train_queries,
            max_len=self.train_max_len,
            steps=self.steps,
            lr=lr,
            warmup=self.warmup,
            params=self.params,
            lora_rank=self.lora_rank,
            loss_on=self.loss_on,
            seed=seed,
            val_episodes=self.val_episodes,
            eval_every=self.eval_every,
            data_dir=self.data_dir,
            source=self.source,
            device=self.device,
            out=str(out),
        )


PRESETS: dict[str, dict[str, Any]] = {
    # the whole table and the layer section on 2 CPU cores (README: measured cost)
    "cpu": {},
    # more steps, data and test examples; for a GPU
    "full": {
        "heldout": ("trec", "sst5", "rte", "cb"),
        "steps": 2000,
        "train_k": 8,
        "train_max_len": 1024,
        "warmup": 100,
        "val_episodes": 50,
        "eval_every": 250,
        "n_test": 200,
        "eval_max_len": 2048,
        "ks": (4, 8, 16, 32),
        "seeds": (0, 1, 2, 3, 4),
        "layer_k": 16,
        "layer_n_test": 64,
        "layer_seeds": (0, 1, 2, 3, 4),
        "layer_base": True,
        "device": "cuda",
    },
    # tests: tiny random model, seconds
    "tiny": {
        "base": "tiny-gemma3",
        "mixture": ("sst2", "mr"),
        "heldout": ("sst5", "trec"),
        "ks": (2, 4),
        "seeds": (0, 1),
        "n_test": 6,
        "eval_max_len": 256,
        "train_k": 2,
        "train_max_len": 128,
        "steps": 4,
        "lr": 1e-3,
        "warmup": 1,
        "val_episodes": 2,
        "eval_every": 2,
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
    given = config_values(TableConfig, args)
    if "lr" in given and "lr_grid" in given:
        raise UserError("give adapt-table --lr or --lr-grid, not both")
    if "lr_grid" in given:
        given["lr"] = None
    values: dict[str, Any] = {**PRESETS[args.preset], **given}
    for name in ("mixture", "heldout"):
        if name in values:
            values[name] = tuple(get_dataset(n).name for n in values[name])
    if "layer_dataset" in values:
        values["layer_dataset"] = get_dataset(values["layer_dataset"]).name
    return TableConfig(**values)
