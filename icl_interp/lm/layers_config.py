"""``icl-interp layers``'s settings and options, import-light (no torch until a config is
validated), so a mistyped option is reported at once."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from typing import Any

from icl_interp.errors import UserError
from icl_interp.options import Distinct, add_backend_arguments, check_backend_options, seed


@dataclass
class LayerAccuracyConfig:
    """One ``icl-interp layers`` run. ``k=None`` takes the data set's k (docs/definitions.md);
    empty ``masks`` means every registered mask kind."""

    model: str = "gemma-3-270m"
    dataset: str = "mr"
    data_dir: str | None = None
    source: str = "auto"
    masks: tuple[str, ...] = ()
    k: int | None = None
    n_test: int = 200
    seed: int = 0
    limit: int | None = None
    max_len: int = 2048
    batch_size: int = 8
    backend: str = "auto"
    workers: int = 1
    threads: int | None = None
    device: str = "cpu"
    out: str = "results/layers"

    def __post_init__(self) -> None:
        from icl_interp.masks import MASKS, mask_names

        if not self.masks:
            self.masks = tuple(mask_names())
        if self.k is not None and self.k < 0:
            raise UserError(f"--k must be >= 0, got {self.k}")
        if self.n_test < 1:
            raise UserError(f"--n-test must be >= 1, got {self.n_test}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be >= 1, got {self.limit}")
        if self.max_len < 2:
            raise UserError(f"--max-len must be >= 2, got {self.max_len}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0, got {self.seed}")
        check_backend_options(self.backend, self.workers, self.threads)
        if len(set(self.masks)) != len(self.masks):
            raise UserError(f"--masks needs distinct mask kinds, got {list(self.masks)}")
        for mask in self.masks:
            MASKS.get(mask)
        from icl_interp.lm.data import get_dataset

        get_dataset(self.dataset)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> LayerAccuracyConfig:
        fields: dict[str, Any] = {k: tuple(v) if k == "masks" else v for k, v in values.items()}
        return cls(**fields)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults: dict[str, Any] = {f.name: f.default for f in fields(LayerAccuracyConfig)}
    parser.add_argument("--model", default=defaults["model"], help="packaged name, HF name or path")
    parser.add_argument(
        "--dataset", default=defaults["dataset"], help="data set name (e.g. mr, sst2)"
    )
    parser.add_argument("--data-dir", default=None, help="folder holding the data sets")
    parser.add_argument("--source", default=defaults["source"], help="auto, folder, package or hub")
    parser.add_argument(
        "--masks",
        nargs="+",
        action=Distinct,
        default=list(defaults["masks"]),
        help="ICL mask kinds (default: every registered one)",
    )
    parser.add_argument("--k", type=int, default=None, help="demonstrations (default: data set's)")
    parser.add_argument("--n-test", type=int, default=defaults["n_test"], help="test examples")
    parser.add_argument(
        "--seed", type=seed, default=defaults["seed"], help="draws the demonstrations and queries"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N test examples"
    )
    parser.add_argument(
        "--max-len", type=int, default=defaults["max_len"], help="prompt token budget"
    )
    parser.add_argument(
        "--batch-size", type=int, default=defaults["batch_size"], help="prompts per forward pass"
    )
    add_backend_arguments(parser, "conditions (zero-shot, ICL under each mask)")
    parser.add_argument("--device", default=defaults["device"], help="cpu, cuda or cuda:N")
    parser.add_argument("--out", default=defaults["out"], help="results folder")


def check_arguments(args: argparse.Namespace) -> None:
    """Validate the options before the model code is imported (one line, exit 2)."""
    config_from_args(args)


def config_from_args(args: argparse.Namespace) -> LayerAccuracyConfig:
    return LayerAccuracyConfig(
        model=args.model,
        dataset=args.dataset,
        data_dir=args.data_dir,
        source=args.source,
        masks=tuple(args.masks),
        k=args.k,
        n_test=args.n_test,
        seed=args.seed,
        limit=args.limit,
        max_len=args.max_len,
        batch_size=args.batch_size,
        backend=args.backend,
        workers=args.workers,
        threads=args.threads,
        device=args.device,
        out=args.out,
    )
