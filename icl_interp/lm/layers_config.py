"""``icl-interp layers``'s settings and options, import-light (no torch until a config is
validated), so a mistyped option is reported at once."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

from icl_interp.errors import UserError
from icl_interp.options import (
    add_backend_arguments,
    add_config_arguments,
    check_backend_options,
    config_values,
    option,
    seed,
)


@dataclass
class LayerAccuracyConfig:
    """One ``icl-interp layers`` run. ``k=None`` takes the data set's k (docs/definitions.md);
    empty ``masks`` means every registered mask kind."""

    model: str = option("gemma-3-270m", "packaged name, tiny-<arch>, HF dir or .gguf")
    dataset: str = option("mr", "data set name (e.g. mr, sst2)")
    data_dir: str | None = option(None, "folder holding the data sets")
    source: str = option("auto", "auto, folder, package or hub")
    masks: tuple[str, ...] = option((), "ICL mask kinds (default: every registered one)", nargs="+")
    k: int | None = option(None, "demonstrations (default: data set's)", type=int)
    n_test: int = option(200, "test examples", type=int)
    seed: int = option(0, "draws the demonstrations and queries", type=seed)
    limit: int | None = option(None, "use only the first N test examples", type=int)
    max_len: int = option(2048, "prompt token budget", type=int)
    batch_size: int = option(8, "prompts per forward pass", type=int)
    backend: str = "auto"
    workers: int = 1
    threads: int | None = None
    device: str = option("cpu", "cpu, cuda or cuda:N")
    out: str = option("results/layers", "results folder")

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
    add_config_arguments(parser, LayerAccuracyConfig)
    add_backend_arguments(parser, "conditions (zero-shot, ICL under each mask)")


def check_arguments(args: argparse.Namespace) -> None:
    """Validate the options before the model code is imported (one line, exit 2)."""
    config_from_args(args)


def config_from_args(args: argparse.Namespace) -> LayerAccuracyConfig:
    return LayerAccuracyConfig(**config_values(LayerAccuracyConfig, args))
