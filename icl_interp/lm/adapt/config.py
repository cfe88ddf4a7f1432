"""Settings of one ``icl-interp adapt`` run, import-light (no torch, so a mistyped option is
answered at once): ``AdaptConfig``, its choices, and the command's options."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Any

from icl_interp.errors import UserError
from icl_interp.options import add_config_arguments, config_values, option, seed

DEFAULT_MIXTURE: tuple[str, ...] = ("sst2", "mr", "cr", "mpqa", "subj", "agnews")
PARAM_CHOICES: tuple[str, ...] = ("blocks", "attn", "lora")
LOSS_CHOICES: tuple[str, ...] = ("answer", "labels")
# settings that do not change the numbers (a resumed run may change them)
RESUME_IGNORES = frozenset({"threads", "max_minutes", "progress", "out"})


@dataclass(frozen=True)
class AdaptConfig:
    """One adaptation run (see the module docstring). ``params``: ``blocks`` (every parameter of
    every transformer block; embeddings, final norm and unembedding frozen), ``attn`` (the blocks'
    attention modules only) or ``lora`` (rank-``lora_rank`` LoRA on q/k/v/o through ``peft``,
    merged into the weights at the end). AdamW with ``warmup`` linear warm-up steps, then a
    linear decay to 0 at ``steps``; gradients clipped to norm ``grad_clip``."""

    base: str = option(
        "gemma-3-270m",
        "base model: packaged name, tiny-<arch>, HF dir or .gguf",
        flags=("--model", "--base"),
    )
    objective: str = option("prefix", "the mask the model is adapted under: prefix or causal")
    mixture: tuple[str, ...] = option(DEFAULT_MIXTURE, "training data sets", nargs="+")
    k: int = option(4, "demonstrations per episode", type=int)
    queries: int = option(8, "queries per episode (shared prefix)", type=int)
    max_len: int = option(512, "episode token budget", type=int)
    # steps ... eval_every: the cpu preset of adapt-table (lr by its pilot)
    steps: int = option(100, "optimizer steps (episodes)", type=int)
    lr: float = option(3e-4, "AdamW peak learning rate", type=float)
    warmup: int = option(10, "linear warm-up steps", type=int)
    weight_decay: float = option(0.0, "AdamW's weight decay", type=float)
    grad_clip: float = option(1.0, "gradient-norm clipping threshold", type=float)
    params: str = option("lora", "trained parameters: blocks, attn or lora")
    lora_rank: int = option(16, "LoRA rank, with --params lora", type=int)
    loss_on: str = option("answer", "answer, or labels (causal only)")
    seed: int = option(0, "episode stream and LoRA initialisation", type=seed)
    val_episodes: int = option(16, "held-out validation episodes", type=int)
    eval_every: int = option(50, "steps between validations", type=int)
    checkpoint_every: int = option(25, "steps between checkpoints", type=int)
    data_dir: str | None = option(None, "folder holding the data sets")
    source: str = option("auto", "auto, folder, package or hub")
    device: str = option("cpu", "cpu or cuda")
    threads: int | None = option(None, "torch CPU threads", type=int)
    max_minutes: float | None = option(
        None, "stop at a step boundary after this long; the same command resumes", type=float
    )
    progress: bool = True
    out: str = option("runs/adapt", "output model folder")

    def __post_init__(self) -> None:
        from icl_interp.masks import MASKS, mask_names

        object.__setattr__(self, "mixture", tuple(self.mixture))
        if self.objective not in MASKS:
            raise UserError(
                f"unknown objective {self.objective!r}; valid objectives: {', '.join(mask_names())}"
            )
        if not self.mixture:
            raise UserError("--mixture needs at least one data set")
        if len(set(self.mixture)) != len(self.mixture):
            raise UserError(f"--mixture names a data set twice: {list(self.mixture)}")
        if self.params not in PARAM_CHOICES:
            raise UserError(f"unknown --params {self.params!r}; valid: {', '.join(PARAM_CHOICES)}")
        if self.loss_on not in LOSS_CHOICES:
            raise UserError(f"unknown --loss-on {self.loss_on!r}; valid: {', '.join(LOSS_CHOICES)}")
        if self.loss_on == "labels" and self.objective == "prefix":
            raise UserError(
                "--loss-on labels needs the causal objective: under the prefix mask every "
                "demonstration's label token is visible to the position that predicts it"
            )
        positive = {
            "k": self.k,
            "queries": self.queries,
            "steps": self.steps,
            "lora_rank": self.lora_rank,
            "eval_every": self.eval_every,
            "checkpoint_every": self.checkpoint_every,
        }
        for name, value in positive.items():
            if value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.max_len < 8:
            raise UserError(f"--max-len must be >= 8, got {self.max_len}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr must be a positive finite number, got {self.lr}")
        if self.warmup < 0 or self.val_episodes < 0 or self.seed < 0:
            raise UserError("--warmup, --val-episodes and --seed must be >= 0")
        if self.weight_decay < 0 or not self.grad_clip > 0:
            raise UserError("--weight-decay must be >= 0 and --grad-clip > 0")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be >= 1, got {self.threads}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise UserError(f"--max-minutes must be > 0, got {self.max_minutes}")

    def to_dict(self) -> dict[str, Any]:
        from icl_interp.results import to_jsonable

        return to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AdaptConfig:
        return cls(**{**values, "mixture": tuple(values["mixture"])})

    def identity(self) -> dict[str, Any]:
        """The settings that determine the numbers (what a resume must match)."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUME_IGNORES}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, AdaptConfig)


def config_from_args(args: argparse.Namespace) -> AdaptConfig:
    from icl_interp.lm.data import get_dataset

    values = config_values(AdaptConfig, args)
    values["mixture"] = tuple(get_dataset(name).name for name in values["mixture"])
    return AdaptConfig(**values)
