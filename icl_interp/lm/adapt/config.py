"""Settings of one ``icl-interp adapt`` run, import-light (no torch, so a mistyped option is
answered at once): ``AdaptConfig``, its choices, and the command's options."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, fields
from types import SimpleNamespace
from typing import Any

from icl_interp.errors import UserError

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

    base: str = "gemma-3-270m"
    objective: str = "prefix"
    mixture: tuple[str, ...] = DEFAULT_MIXTURE
    k: int = 4
    queries: int = 8
    max_len: int = 512
    steps: int = 100  # steps ... eval_every: the cpu preset of adapt-table (lr by its pilot)
    lr: float = 3e-4
    warmup: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    params: str = "lora"
    lora_rank: int = 16
    loss_on: str = "answer"
    seed: int = 0
    val_episodes: int = 16
    eval_every: int = 50
    checkpoint_every: int = 25
    data_dir: str | None = None
    source: str = "auto"
    device: str = "cpu"
    threads: int | None = None
    max_minutes: float | None = None
    progress: bool = True
    out: str = "runs/adapt"

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
    d = SimpleNamespace(**{f.name: f.default for f in fields(AdaptConfig)})  # not validated here
    parser.add_argument(
        "--base", default=d.base, help="packaged name, tiny-<arch>, HF dir or .gguf"
    )
    parser.add_argument("--objective", default=d.objective, help="prefix or causal")
    parser.add_argument("--mixture", nargs="+", default=list(d.mixture), help="training data sets")
    parser.add_argument("--k", type=int, default=d.k, help="demonstrations per episode")
    parser.add_argument(
        "--queries", type=int, default=d.queries, help="queries per episode (shared prefix)"
    )
    parser.add_argument("--max-len", type=int, default=d.max_len, help="episode token budget")
    parser.add_argument("--steps", type=int, default=d.steps, help="optimizer steps (episodes)")
    parser.add_argument("--lr", type=float, default=d.lr, help="AdamW peak learning rate")
    parser.add_argument("--warmup", type=int, default=d.warmup, help="linear warm-up steps")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW's")
    parser.add_argument(
        "--grad-clip", type=float, default=d.grad_clip, help="gradient-norm clipping threshold"
    )
    parser.add_argument("--params", default=d.params, help="blocks, attn or lora")
    parser.add_argument("--lora-rank", type=int, default=d.lora_rank, help="with --params lora")
    parser.add_argument("--loss-on", default=d.loss_on, help="answer, or labels (causal only)")
    parser.add_argument(
        "--seed", type=int, default=d.seed, help="episode stream and LoRA initialisation"
    )
    parser.add_argument(
        "--val-episodes", type=int, default=d.val_episodes, help="held-out validation episodes"
    )
    parser.add_argument(
        "--eval-every", type=int, default=d.eval_every, help="steps between validations"
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints"
    )
    parser.add_argument("--data-dir", default=None, help="folder holding the data sets")
    parser.add_argument("--source", default=d.source, help="auto, folder, package or hub")
    parser.add_argument("--device", default=d.device, help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop at a step boundary after this long; the same command resumes",
    )
    parser.add_argument("--out", default=d.out, help="output model folder")


def config_from_args(args: argparse.Namespace) -> AdaptConfig:
    from icl_interp.lm.data import get_dataset

    return AdaptConfig(
        base=args.base,
        objective=args.objective,
        mixture=tuple(get_dataset(name).name for name in args.mixture),
        k=args.k,
        queries=args.queries,
        max_len=args.max_len,
        steps=args.steps,
        lr=args.lr,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        params=args.params,
        lora_rank=args.lora_rank,
        loss_on=args.loss_on,
        seed=args.seed,
        val_episodes=args.val_episodes,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        data_dir=args.data_dir,
        source=args.source,
        device=args.device,
        threads=args.threads,
        max_minutes=args.max_minutes,
        out=args.out,
    )
