"""Training and evaluation of one synthetic-task transformer: seeded, checkpointed, resumable.

AdamW (no weight decay) with linear warm-up over the first ``warmup_frac`` of the
steps, then cosine decay to 0. Each epoch visits the fixed training pool in a
permutation drawn from ``(seed, epoch)``, so a run resumed from any checkpoint
takes exactly the steps an uninterrupted run takes. The loss is the query MSE of
the model's read-out plus the query MSE of every per-layer probe (whose inputs are
detached, so probe losses train the probes only).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from icl_interp.errors import UserError
from icl_interp.progress import progress
from icl_interp.results import read_torch, write_torch
from icl_interp.synthetic.model import ModelConfig, SyntheticTransformer
from icl_interp.synthetic.tasks import (
    EVAL_STREAM,
    FRESH_STREAM,
    TASKS,
    TRAIN_STREAM,
    SyntheticData,
    SyntheticTask,
    least_squares_prediction,
    make_dataset,
)


@dataclass
class TrainConfig:
    """One training run: task, architecture, data sizes, optimiser and the seed that fixes all of it."""

    task: str = "linear"
    model: ModelConfig = field(default_factory=ModelConfig)
    n_train: int = 64_000
    n_eval: int = 64
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-7
    weight_decay: float = 0.0
    warmup_frac: float = 0.2
    fresh_data: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        task = TASKS.get(self.task)
        if self.model.d_y != task.d_y:
            raise UserError(f"task {self.task!r} needs model.d_y={task.d_y}, got {self.model.d_y}")
        for name in ("n_train", "n_eval", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size > self.n_train:
            raise UserError(f"batch_size={self.batch_size} exceeds n_train={self.n_train}")
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0:
            raise UserError("lr and eps must be > 0 and weight_decay >= 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise UserError(f"betas must lie in [0, 1), got {self.betas}")
        if not 0 <= self.warmup_frac < 1:
            raise UserError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")

    @property
    def steps_per_epoch(self) -> int:
        """Steps per pass over ``n_train`` sequences (with ``fresh_data``: per ``n_train`` fresh ones)."""
        return self.n_train // self.batch_size

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        model = ModelConfig.from_dict(values["model"])
        return cls(**{**values, "model": model, "betas": tuple(values["betas"])})


def lr_factor(step: int, total_steps: int, warmup_frac: float) -> float:
    """Multiplier of the base lr at ``step``: linear warm-up to 1, then cosine decay to 0."""
    warmup = int(warmup_frac * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def fresh_batch(cfg: TrainConfig, step: int) -> SyntheticData:
    """The ``step``-th batch of never-repeated sequences (a function of seed and step only)."""
    return make_dataset(
        TASKS.get(cfg.task),
        cfg.batch_size,
        n_context=cfg.model.n_context,
        n_queries=cfg.model.n_queries,
        d_x=cfg.model.d_x,
        seed=cfg.seed * 1_000_003 + step,
        stream=FRESH_STREAM,
    )


def query_losses(
    model: SyntheticTransformer, tokens: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(read-out query MSE, sum over layers of probe query MSE)."""
    output, probes = model.predict_queries(tokens)
    model_loss = nn.functional.mse_loss(output, targets)
    probe_loss = (probes - targets).pow(2).mean(dim=(1, 2, 3)).sum()
    return model_loss, probe_loss


@dataclass
class TrainState:
    model: SyntheticTransformer
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    step: int = 0
    elapsed_s: float = 0.0


def init_model(cfg: TrainConfig, device: torch.device | str) -> SyntheticTransformer:
    """The untrained model of ``cfg`` (initialisation seeded by ``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    return SyntheticTransformer(cfg.model).to(device)


def make_optimizer(
    cfg: TrainConfig,
    params: Iterable[Tensor],
    device: torch.device | str,
    *,
    capturable: bool = False,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``params`` and its warm-up + cosine schedule.

    ``capturable`` keeps the learning rate and optimiser state on the GPU so that a
    whole training step can be captured in a CUDA graph.
    """
    optimizer = torch.optim.AdamW(
        params,
        lr=torch.tensor(cfg.lr, device=device) if capturable else cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=torch.device(device).type == "cuda" or None,
        capturable=capturable,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg.total_steps, cfg.warmup_frac)
    )
    return optimizer, scheduler


def build_state(
    cfg: TrainConfig, device: torch.device | str, *, capturable: bool = False
) -> TrainState:
    """Model, optimiser and schedule at step 0 (``capturable``: see ``make_optimizer``)."""
    model = init_model(cfg, device)
    return TrainState(
        model, *make_optimizer(cfg, model.parameters(), device, capturable=capturable)
    )


def save_checkpoint(path: Path, cfg: TrainConfig, state: TrainState) -> None:
    payload = {
        "config": cfg.to_dict(),
        "step": state.step,
        "elapsed_s": state.elapsed_s,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
    }
    write_torch(path, payload)


def load_checkpoint(
    path: Path, cfg: TrainConfig, state: TrainState, *, lr_device: torch.device | str | None = None
) -> None:
    """Restore ``state`` from ``path``; ``lr_device`` keeps the lr a tensor there (CUDA graphs).

    Checkpoints of eager and graphed runs are interchangeable.
    """
    payload = read_torch(path, map_location=next(state.model.parameters()).device)
    if TrainConfig.from_dict(payload["config"]) != cfg:
        raise UserError(
            f"checkpoint {path} was made with a different config; use another --out or delete it"
        )
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.scheduler.load_state_dict(payload["scheduler"])
    for group in state.optimizer.param_groups:
        lr = float(group["lr"])
        group["lr"] = torch.tensor(lr, device=lr_device) if lr_device is not None else lr
    state.step = payload["step"]
    state.elapsed_s = payload["elapsed_s"]


def train(
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    checkpoint: Path | None = None,
    checkpoint_every_s: float = 120.0,
    max_seconds: float | None = None,
    max_steps: int | None = None,
    cuda_graph: bool = False,
    desc: str = "train",
) -> TrainState:
    """Train (resuming from ``checkpoint`` if it exists) until done or a time/step limit is hit.

    The checkpoint is rewritten every ``checkpoint_every_s`` seconds and when training
    stops. ``state.step == cfg.total_steps`` tells whether training finished.
    ``cuda_graph`` replays the whole step (forward, backward, AdamW) as one CUDA
    graph: the same arithmetic, far less launch overhead for these small kernels.
    """
    if cuda_graph and torch.device(device).type != "cuda":
        raise UserError("cuda_graph needs a CUDA device")
    state = build_state(cfg, device, capturable=cuda_graph)
    if checkpoint is not None and checkpoint.exists():
        load_checkpoint(checkpoint, cfg, state, lr_device=device if cuda_graph else None)
    stop_at = cfg.total_steps if max_steps is None else min(cfg.total_steps, max_steps)
    batch_at = batch_source(cfg, device)
    losses = model_losses(state.model)
    step_fn = (
        graphed_step(state.optimizer, losses, *batch_at(state.step))
        if cuda_graph and state.step < stop_at
        else eager_step(state.optimizer, losses)
    )
    running_mse = torch.zeros((), device=device)
    started = last_saved = time.monotonic()
    elapsed_before = state.elapsed_s
    state.model.train()
    with progress(total=cfg.total_steps, initial=state.step, desc=desc, dynamic_ncols=True) as bar:
        while state.step < stop_at:
            epoch = state.step // cfg.steps_per_epoch
            model_loss = step_fn(*batch_at(state.step))
            running_mse.lerp_(model_loss, 0.02 if state.step > 0 else 1.0)
            state.scheduler.step()
            state.step += 1
            bar.update(1)
            if state.step % 100 == 0 or state.step == stop_at:
                bar.set_postfix(running_query_mse=f"{running_mse.item():.3g}", epoch=epoch)
            now = time.monotonic()
            state.elapsed_s = elapsed_before + now - started
            if checkpoint is not None and now - last_saved > checkpoint_every_s:
                save_checkpoint(checkpoint, cfg, state)
                last_saved = now
            if max_seconds is not None and now - started > max_seconds:
                break
    if checkpoint is not None:
        save_checkpoint(checkpoint, cfg, state)
    state.model.eval()
    return state


def batch_source(
    cfg: TrainConfig, device: torch.device | str
) -> Callable[[int], tuple[Tensor, Tensor]]:
    """``batch_at(step)``: the (tokens, query targets) that training step ``step`` uses.

    From the fixed pool, each epoch in its own permutation; or, with ``fresh_data``,
    a batch of new sequences drawn for that step.
    """
    if cfg.fresh_data:

        def fresh(step: int) -> tuple[Tensor, Tensor]:
            batch = fresh_batch(cfg, step).to(device)
            return batch.tokens, batch.query_targets

        return fresh
    data = _dataset(cfg, cfg.n_train, TRAIN_STREAM).to(device)
    perms: dict[int, Tensor] = {}

    def from_pool(step: int) -> tuple[Tensor, Tensor]:
        epoch, offset = divmod(step, cfg.steps_per_epoch)
        if epoch not in perms:
            perms.clear()
            perms[epoch] = epoch_permutation(cfg.seed, epoch, cfg.n_train).to(device)
        idx = perms[epoch][offset * cfg.batch_size : (offset + 1) * cfg.batch_size]
        return data.tokens[idx], data.query_targets[idx]

    return from_pool


StepLosses = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""``losses(tokens, targets)`` -> (loss to report, loss to minimise)."""


def model_losses(model: SyntheticTransformer) -> StepLosses:
    """One model's (read-out query MSE, that plus the probes' query MSE)."""

    def losses(tokens: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        model_loss, probe_loss = query_losses(model, tokens, targets)
        return model_loss, model_loss + probe_loss

    return losses


def eager_step(
    optimizer: torch.optim.Optimizer, losses: StepLosses
) -> Callable[[Tensor, Tensor], Tensor]:
    """``step(tokens, targets)``: one optimiser step on ``losses``; returns the reported loss."""

    def step(tokens: Tensor, targets: Tensor) -> Tensor:
        reported, total = losses(tokens, targets)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        return reported.detach()

    return step


def graphed_step(
    optimizer: torch.optim.Optimizer,
    losses: StepLosses,
    example_tokens: Tensor,
    example_targets: Tensor,
) -> Callable[[Tensor, Tensor], Tensor]:
    """``eager_step`` captured in one CUDA graph; the parameters and optimiser are left as
    they were before.

    Warm-up steps (needed before capture) run on a side stream and are then undone
    in place, so the graphed run takes exactly the steps of the eager one.
    """
    tokens, targets = example_tokens.clone(), example_targets.clone()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_params = [p.detach().clone() for p in params]
    saved_moments = {
        id(p): {k: v.clone() for k, v in optimizer.state[p].items()}
        for p in params
        if p in optimizer.state
    }

    def full_step() -> Tensor:
        reported, total = losses(tokens, targets)
        total.backward()
        optimizer.step()
        return reported

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            full_step()
    torch.cuda.current_stream().wait_stream(side)
    with torch.no_grad():
        for p, saved in zip(params, saved_params, strict=True):
            p.copy_(saved)
            for key, value in optimizer.state[p].items():
                before = saved_moments.get(id(p), {}).get(key)
                if before is None:
                    value.zero_()
                else:
                    value.copy_(before)
    optimizer.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        graph_loss = full_step()

    def step(batch_tokens: Tensor, batch_targets: Tensor) -> Tensor:
        tokens.copy_(batch_tokens)
        targets.copy_(batch_targets)
        graph.replay()
        return graph_loss.detach()

    return step


def _dataset(cfg: TrainConfig, n: int, stream: int) -> SyntheticData:
    """``n`` sequences of ``cfg``'s task and model shape from ``stream`` of ``cfg.seed``."""
    return make_dataset(
        TASKS.get(cfg.task),
        n,
        n_context=cfg.model.n_context,
        n_queries=cfg.model.n_queries,
        d_x=cfg.model.d_x,
        seed=cfg.seed,
        stream=stream,
    )


def eval_data(cfg: TrainConfig) -> SyntheticData:
    """The held-out sequences (``n_eval`` of them, from a stream training never uses)."""
    return _dataset(cfg, cfg.n_eval, EVAL_STREAM)


@torch.no_grad()
def evaluate(model: SyntheticTransformer, task: SyntheticTask, data: SyntheticData) -> pd.DataFrame:
    """Query error of the read-out, of each layer's probe and of the task's trivial baseline.

    Columns readout, layer, metric, value (mean over sequences and queries) and se
    (standard error of that mean across the held-out sequences). ``layer`` counts
    blocks from 1 (the probe after block l); the read-out sits at the last layer and
    the baselines at layer 0: ``trivial`` (no context used) and ``least_squares``
    (a linear fit to each sequence's context points).
    """
    device = next(model.parameters()).device
    output, probes = model.predict_queries(data.tokens.to(device))
    targets = data.query_targets.to(device)
    readouts = [("model", model.cfg.n_layers, output)]
    readouts += [("probe", layer + 1, probe) for layer, probe in enumerate(probes)]
    readouts += [("trivial", 0, task.trivial(targets))]
    n_ctx, d_x = model.cfg.n_context, model.cfg.d_x
    tokens = data.tokens.to(device)
    fitted = least_squares_prediction(
        tokens[:, :n_ctx, :d_x], tokens[:, :n_ctx, d_x:], tokens[:, n_ctx:, :d_x]
    )
    readouts += [("least_squares", 0, fitted)]
    rows = []
    for readout, layer, prediction in readouts:
        per_sequence = task.error(prediction, targets).mean(dim=1)
        rows.append(
            {
                "readout": readout,
                "layer": layer,
                "metric": task.error_name,
                "value": per_sequence.mean().item(),
                "se": (per_sequence.std() / len(per_sequence) ** 0.5).item(),
            }
        )
    return pd.DataFrame(rows)
