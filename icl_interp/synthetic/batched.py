"""Many synthetic-task trainings in one process: models of equal shape stepped together.

Train configs that differ only in task, mask and seed (so every tensor shape and the
learning-rate schedule agree) form a group. A group's parameters are stacked along a
new leading model dimension (``torch.func.stack_module_state``) and one step runs
``train.query_losses`` of every model at once under ``torch.func.vmap``, then one
AdamW step over the stacked tensors. Each model gets the initialisation, batches and
updates that ``train.train`` gives it alone, up to the rounding of batched matrix
products (``tests/synthetic/test_batched.py``). On CUDA the losses can run under
bf16 autocast and the whole step can be replayed as one CUDA graph.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from icl_interp.errors import UserError
from icl_interp.synthetic.model import SyntheticTransformer
from icl_interp.synthetic.train import (
    TrainConfig,
    batch_source,
    eager_step,
    graphed_step,
    init_model,
    make_optimizer,
    query_losses,
)


def shape_key(cfg: TrainConfig) -> str:
    """What a group's configs share: everything but task, mask kind and seed."""
    values = cfg.to_dict()
    del values["task"], values["seed"], values["model"]["mask_kind"]
    return json.dumps(values, sort_keys=True)


def group_indices(cfgs: Sequence[TrainConfig]) -> list[list[int]]:
    """Indices of ``cfgs`` grouped by ``shape_key``, groups and members in first-seen order."""
    groups: dict[str, list[int]] = {}
    for index, cfg in enumerate(cfgs):
        groups.setdefault(shape_key(cfg), []).append(index)
    return list(groups.values())


class _QueryLosses(nn.Module):
    """``query_losses`` of one model as a module call, for ``functional_call``."""

    def __init__(self, model: SyntheticTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        return query_losses(self.model, tokens, targets)


@dataclass
class Group:
    """Models of one shape: stacked parameters, their optimiser, and the per-model batches."""

    cfgs: list[TrainConfig]
    models: list[SyntheticTransformer]
    params: dict[str, Tensor]
    buffers: dict[str, Tensor]
    step_fn: Callable[[Tensor, Tensor], Tensor]
    scheduler: torch.optim.lr_scheduler.LambdaLR
    batch_at: Callable[[int], tuple[Tensor, Tensor]]
    step: int = 0

    def train_step(self) -> Tensor:
        """One step of every model; returns each model's read-out query MSE."""
        losses = self.step_fn(*self.batch_at(self.step))
        self.scheduler.step()
        self.step += 1
        return losses

    def trained_models(self) -> list[SyntheticTransformer]:
        """The group's models with the stacked parameters copied back (for ``train.evaluate``)."""
        with torch.no_grad():
            for index, model in enumerate(self.models):
                for name, param in model.named_parameters():
                    param.copy_(self.params[f"model.{name}"][index])
                model.eval()
        return self.models


def build_group(
    cfgs: Sequence[TrainConfig],
    device: torch.device | str = "cpu",
    *,
    bf16: bool = False,
    cuda_graph: bool = False,
) -> Group:
    """A group of untrained models at step 0 (``cfgs`` must share one ``shape_key``)."""
    if len({shape_key(cfg) for cfg in cfgs}) != 1:
        raise UserError("a batched group needs configs that differ only in task, mask and seed")
    on_cuda = torch.device(device).type == "cuda"
    if (bf16 or cuda_graph) and not on_cuda:
        raise UserError("bf16 and cuda_graph need a CUDA device")
    models = [init_model(cfg, device) for cfg in cfgs]
    wrapped = [_QueryLosses(model) for model in models]
    params, buffers = stack_module_state(wrapped)  # type: ignore[arg-type]
    base = copy.deepcopy(wrapped[0]).to("meta")

    def one_model(
        p: dict[str, Tensor], b: dict[str, Tensor], tokens: Tensor, targets: Tensor
    ) -> tuple[Tensor, Tensor]:
        return functional_call(base, (p, b), (tokens, targets))

    every_model = vmap(one_model)

    def losses(tokens: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
            if bf16
            else contextlib.nullcontext()
        )
        with autocast:
            model_loss, probe_loss = every_model(params, buffers, tokens, targets)
        return model_loss, (model_loss + probe_loss).float().sum()

    optimizer, scheduler = make_optimizer(cfgs[0], params.values(), device, capturable=cuda_graph)
    sources = [batch_source(cfg, device) for cfg in cfgs]

    def batch_at(step: int) -> tuple[Tensor, Tensor]:
        pairs = [source(step) for source in sources]
        return torch.stack([t for t, _ in pairs]), torch.stack([y for _, y in pairs])

    step_fn = (
        graphed_step(optimizer, losses, *batch_at(0))
        if cuda_graph
        else eager_step(optimizer, losses)
    )
    return Group(list(cfgs), models, params, buffers, step_fn, scheduler, batch_at)


@dataclass
class BatchedRun:
    """Trained groups and how long their steps took (warm-up steps excluded)."""

    groups: list[Group]
    steps: int
    timed_steps: int
    timed_seconds: float


def train_batched(
    cfgs: Sequence[TrainConfig],
    device: torch.device | str = "cpu",
    *,
    max_seconds: float | None = None,
    max_steps: int | None = None,
    warmup_steps: int = 3,
    bf16: bool = False,
    cuda_graph: bool = False,
) -> BatchedRun:
    """Train every config, one step of every group per round, until done or a limit is hit.

    All configs must have the same ``total_steps``. The clock for ``timed_seconds``
    starts after ``warmup_steps`` rounds (compilation, allocation, graph capture) and
    the device is synchronised before it is read.
    """
    if len({cfg.total_steps for cfg in cfgs}) != 1:
        raise UserError("batched training needs configs with the same number of steps")
    groups = [
        build_group([cfgs[i] for i in members], device, bf16=bf16, cuda_graph=cuda_graph)
        for members in group_indices(cfgs)
    ]
    stop_at = cfgs[0].total_steps if max_steps is None else min(cfgs[0].total_steps, max_steps)
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else _no_sync
    step = 0
    started = time.monotonic()
    timed_from, timed_start = 0, started
    while step < stop_at:
        for group in groups:
            group.train_step()
        step += 1
        if step == warmup_steps:
            synchronize()
            timed_from, timed_start = step, time.monotonic()
        if max_seconds is not None and step % 10 == 0 and time.monotonic() - started > max_seconds:
            break
    synchronize()
    return BatchedRun(groups, step, step - timed_from, time.monotonic() - timed_start)


def _no_sync() -> None:
    return None
