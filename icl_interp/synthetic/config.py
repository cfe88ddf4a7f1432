"""Settings of one ``icl-interp synthetic`` run, import-light (no torch, so a mistyped option is
answered at once; names are checked against the registries when the config is made):
``ExperimentConfig``, declared once, and the command's options derived from it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icl_interp.errors import UserError
from icl_interp.options import (
    add_backend_arguments,
    add_config_arguments,
    check_list_option,
    config_values,
    option,
    seed,
)
from icl_interp.synthetic.presets import PRESETS

if TYPE_CHECKING:
    from icl_interp.synthetic.train import TrainConfig

SHARINGS = ("SL", "UL")
TASK_COLUMNS = {"linear": "LR", "nonlinear": "N-LR", "classification": "MC"}
RunSpec = tuple[str, str, str, int]


@dataclass
class ExperimentConfig:
    """Which trainings to run (tasks x masks x sharing x seeds), at which scale (a preset, with
    ``epochs``, ``n_train`` and ``n_layers`` overriding its values), and where they train."""

    preset: str = option("cpu", f"scale: {', '.join(PRESETS.names())}")
    tasks: tuple[str, ...] = option(
        tuple(TASK_COLUMNS),
        f"registered tasks: {', '.join(TASK_COLUMNS)} or one a plugin adds",
        nargs="+",
    )
    masks: tuple[str, ...] = option(
        ("prefix", "causal"),
        "registered mask kinds: prefix, causal or one a plugin adds",
        nargs="+",
    )
    sharing: tuple[str, ...] = option(SHARINGS, "SL (shared layers), UL", nargs="+")
    seeds: tuple[int, ...] = option(
        (0,), "seeds to train (--seed is the same option)", flags=("--seeds", "--seed"),
        nargs="+", type=seed,
    )  # fmt: skip
    epochs: int | None = option(None, "override the preset's epochs", type=int)
    n_train: int | None = option(None, "override the preset's training-pool size", type=int)
    n_layers: int | None = option(None, "override the preset's depth", type=int)
    device: str = option("cpu", "cpu or cuda")
    cuda_graph: bool = option(False, "replay each training step as one CUDA graph")
    max_minutes: float | None = option(
        None, "stop (checkpointed) after this long; rerun resumes", type=float
    )

    def __post_init__(self) -> None:
        from icl_interp.masks import MASKS
        from icl_interp.synthetic.tasks import TASKS

        for name in ("tasks", "masks", "sharing", "seeds"):
            setattr(self, name, tuple(getattr(self, name)))
            check_list_option(name, getattr(self, name))
        PRESETS.get(self.preset)
        for task in self.tasks:
            TASKS.get(task)
        for mask in self.masks:
            MASKS.get(mask)
        for sharing in self.sharing:
            if sharing not in SHARINGS:
                raise UserError(f"unknown sharing {sharing!r}; valid: {', '.join(SHARINGS)}")
        if any(s < 0 for s in self.seeds):
            raise UserError(f"seeds must be >= 0, got {list(self.seeds)}")
        for name in ("epochs", "n_train", "n_layers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise UserError(f"--max-minutes must be > 0, got {self.max_minutes}")
        if self.cuda_graph and not self.device.startswith("cuda"):
            raise UserError("--cuda-graph needs --device cuda")

    @property
    def overrides(self) -> dict[str, Any]:
        """The preset's values this config overrides (``model``: those of ``ModelConfig``)."""
        given = {"epochs": self.epochs, "n_train": self.n_train}
        overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if self.n_layers is not None:
            overrides["model"] = {"n_layers": self.n_layers}
        return overrides

    def train_config(self, task: str, mask: str, sharing: str, seed: int) -> TrainConfig:
        """The training of one run of the plan: the preset, overridden, for this run."""
        import copy

        from icl_interp.synthetic.model import ModelConfig
        from icl_interp.synthetic.tasks import TASKS
        from icl_interp.synthetic.train import TrainConfig

        values = copy.deepcopy(PRESETS.get(self.preset))
        overrides = self.overrides
        model_overrides = overrides.pop("model", {})
        values.update(overrides)
        model = ModelConfig(
            **{**values.pop("model"), **model_overrides},
            d_y=TASKS.get(task).d_y,
            shared_layers=sharing == "SL",
            mask_kind=mask,
        )
        return TrainConfig(task=task, model=model, seed=seed, **values)

    def runs(self) -> list[RunSpec]:
        return [
            (t, m, s, seed)
            for seed in self.seeds
            for t in self.tasks
            for m in self.masks
            for s in self.sharing
        ]

    def folder_settings(self) -> dict[str, Any]:
        """What the results folder records and compares (the preset's values included)."""
        return {
            "preset": self.preset,
            "preset_values": PRESETS.get(self.preset),
            "overrides": self.overrides,
            "tasks": list(self.tasks),
            "masks": list(self.masks),
            "sharing": list(self.sharing),
            "seeds": list(self.seeds),
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """synthetic's options: ``ExperimentConfig``'s, the backend's and ``--out``."""
    add_config_arguments(parser, ExperimentConfig)
    add_backend_arguments(parser, "trainings")
    parser.add_argument("--out", type=Path, required=True, help="results folder")


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    return ExperimentConfig(**config_values(ExperimentConfig, args))
