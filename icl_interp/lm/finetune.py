"""Finetuning on the k demonstrations of a run: standard GD, layer-causal GD, untrained baseline.

Every function here returns a NEW model (a deep copy); the model passed in is never modified.

- ``method="gd"`` (Dai et al. 2022): plain SGD, constant lr, no momentum, batch size 1, one
  epoch over the demonstrations in their original order; loss = mean token NLL over each
  demonstration's whole sequence ``[bos] + input + label``.
- ``method="lcgd"`` (layer-causal GD, Deutch et al. 2023): same, except each block's input is
  detached (stop-gradient) and each block's output goes through the final norm and the
  unembedding; loss = sum over layers of the per-layer LM loss, so a layer's parameters only
  ever receive the gradient of its own prediction error.
- ``untrained_baseline``: attention and MLP weights re-drawn at random; embeddings, norms and
  unembedding kept.

Parameter groups (``params``): ``v`` (value projections), ``kv`` (key and value projections,
the default), ``attn`` (q, k, v, o projections), ``all`` (every parameter); weights and biases,
every layer. The model runs in eval mode (no dropout), so training is deterministic.

Divergence stops the run where it happens (``UserError`` naming the step, the demonstration,
the layer and the parameter, suggesting a lower lr): a non-finite loss (LCGD: any layer's) or
block output (LCGD), and after every optimizer step a trained tensor that holds NaN/inf or
whose largest magnitude exceeds ``EXPLOSION_FACTOR`` (100) x max(its largest magnitude before
finetuning, 1). Ordinary lrs move weights by a small fraction of their size per step; an lr
that multiplies them by 100 has left the regime in which GD-vs-ICL comparisons mean anything
(``--lr 1e30`` otherwise ran to completion with weights ~1e29 and every metric collapsed).
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from icl_interp.errors import UserError
from icl_interp.lm.arch import (
    adapter,
    forget_cast_unembedding,
    logit_lens,
    projection_parameters,
    unembedding_weight,
)
from icl_interp.progress import progress as progress_bar

FINETUNINGS: tuple[str, ...] = ("gd", "lcgd")  # not the compared methods: conditions.METHODS
PARAM_GROUPS: dict[str, tuple[str, ...]] = {
    "v": ("v",),
    "kv": ("k", "v"),
    "attn": ("q", "k", "v", "o"),
}
PARAM_GROUP_NAMES: tuple[str, ...] = (*PARAM_GROUPS, "all")
COMPUTE_DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16")
EXPLOSION_FACTOR = 100.0


def resolve_compute_dtype(name: str, device: torch.device | str = "cpu") -> str:
    """``auto`` -> ``bfloat16`` where ``device`` computes it natively (CUDA with bf16 support,
    CPUs with AVX512-BF16 or AMX), else ``float32``; other names are returned unchanged."""
    if name != "auto":
        return name
    device = torch.device(device)
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = (
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    return "bfloat16" if native else "float32"


@dataclass(frozen=True)
class FinetuneConfig:
    """How to finetune on the demonstrations (see the module docstring)."""

    method: str = "gd"
    lr: float = 1e-3
    params: str = "kv"
    seed: int = 0
    compute_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise UserError(
                f"unknown compute dtype {self.compute_dtype!r}; valid: {', '.join(COMPUTE_DTYPES)}"
            )
        if self.method not in FINETUNINGS:
            raise UserError(
                f"unknown finetuning method {self.method!r}; valid methods: {', '.join(FINETUNINGS)}"
            )
        if self.params not in PARAM_GROUP_NAMES:
            raise UserError(
                f"unknown parameter group {self.params!r}; valid groups: "
                f"{', '.join(PARAM_GROUP_NAMES)}"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"learning rate must be a positive finite number, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneConfig:
        return cls(**values)


def copy_model(model: Any) -> Any:
    """An independent deep copy of a TransformerBridge.

    transformer-lens wires per-block capture hooks on the first forward; they close over weak
    proxies of *this* model's attention modules, which ``copy.deepcopy`` shares instead of
    copying, so the copy would write activations into the original. Removing them first
    (they are re-wired on the next forward) makes the copy independent.
    """
    for block in getattr(model, "blocks", []):
        if hasattr(block, "_teardown_capture_hooks"):
            block._teardown_capture_hooks()
        if hasattr(block, "_clear_attention_capture"):
            block._clear_attention_capture()
    return copy.deepcopy(model)


def trainable_parameters(model: Any, params: str) -> list[nn.Parameter]:
    """The parameters of group ``params`` (weights and biases, every layer), in layer order;
    the architecture adapter says where each projection lives."""
    if params == "all":
        return list(model.parameters())
    if params not in PARAM_GROUPS:
        raise UserError(
            f"unknown parameter group {params!r}; valid groups: {', '.join(PARAM_GROUP_NAMES)}"
        )
    return projection_parameters(model, PARAM_GROUPS[params])


def lm_loss(
    logits: Float[Tensor, "batch pos vocab"], ids: Int[Tensor, "batch pos"]
) -> Float[Tensor, ""]:
    """Mean next-token negative log-likelihood over every position of ``ids`` after the first."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())


def demo_loss(model: Any, demo_ids: list[Int[Tensor, " _tok"]]) -> float:
    """Mean over demonstrations of the standard LM loss (no gradient)."""
    _check_demos(demo_ids, model)
    with torch.no_grad():
        losses = [float(lm_loss(model(ids[None]), ids[None])) for ids in demo_ids]
    return sum(losses) / len(losses)


def _check_demos(demo_ids: list[Tensor], model: Any) -> None:
    from icl_interp.lm.models import check_token_ids

    if not demo_ids:
        raise UserError("no demonstrations to finetune on (k_used = 0)")
    for i, ids in enumerate(demo_ids):
        if ids.ndim != 1 or ids.numel() < 2:
            raise UserError(f"demonstration {i} must be a 1-D token sequence of length >= 2")
        check_token_ids(model, ids, f"demonstration {i}")


def _gd_step_loss(
    model: Any, ids: Int[Tensor, "batch pos"], dtype: torch.dtype
) -> Float[Tensor, ""]:
    with _autocast(ids.device, dtype):
        loss = lm_loss(model(ids), ids)
    _raise_if_not_finite(loss)
    loss.backward()
    return loss.detach()


def block_outputs(model: Any, ids: Int[Tensor, "batch pos"]) -> list[Tensor]:
    """Every block's output for ``ids``, with every block's input detached (stop-gradient).

    With the inputs detached, block l's output depends on block l's parameters only, so the
    blocks' autograd graphs are disjoint.
    """
    outputs: list[Tensor] = []

    def stop_gradient(x: Tensor, hook: Any) -> Tensor:
        return x.detach()

    def keep_output(x: Tensor, hook: Any) -> Tensor:
        outputs.append(x)
        return x

    hooks = []
    for layer in range(len(model.blocks)):
        hooks += [
            (f"blocks.{layer}.hook_in", stop_gradient),
            (f"blocks.{layer}.hook_out", keep_output),
        ]
    with model.hooks(fwd_hooks=hooks):
        model.original_model(input_ids=ids, use_cache=False, logits_to_keep=1)
    return outputs


def logit_lens_losses(
    model: Any,
    outputs: list[Float[Tensor, "batch pos d_model"]],
    ids: Int[Tensor, "batch pos"],
    dtype: torch.dtype = torch.float32,
) -> Float[Tensor, " layer"]:
    """The LM loss (``lm_loss``) of each residual state through the final norm and unembedding.

    All states share one unembedding product: one large matrix product is ~2x faster on CPU
    than one per layer (the unembedding dominates the cost of layer-causal GD).
    """
    # the last position predicts nothing: drop it before the unembedding, not after
    logits = logit_lens(model, torch.cat(outputs)[:, :-1], dtype=dtype)
    targets = ids[:, 1:].repeat(len(outputs), 1)
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return nll.view(len(outputs), -1).mean(dim=1)


def layer_losses(
    model: Any, ids: Int[Tensor, "batch pos"], dtype: torch.dtype = torch.float32
) -> Float[Tensor, " layer"]:
    """Per layer, the LM loss of block l's output with block l's input detached (logit lens).

    Layer l's loss depends on block l's parameters only (and on the final norm and the
    unembedding); LCGD's objective is the sum of these losses.
    """
    return logit_lens_losses(model, block_outputs(model, ids), ids, dtype)


LOGIT_ROWS = 1024  # token rows per unembedding product in LCGD: bounds the logits' memory


def _backward_logit_lens_losses(
    model: Any,
    outputs: list[Float[Tensor, "batch pos d_model"]],
    ids: Int[Tensor, "batch pos"],
    dtype: torch.dtype,
    scratch: _LogitsScratch,
) -> Float[Tensor, " layer"]:
    """``logit_lens_losses`` of ``outputs``, their sum backwarded into the blocks, the
    cross-entropy gradient formed by hand.

    The unembedding is frozen, so only the gradient w.r.t. the normed states is needed:
    ``(softmax(z) - onehot(target)) W / positions``. It is formed in place in the one logits
    buffer, where autograd's cross-entropy allocates three more of its size (log-probabilities,
    their gradient, the logits' gradient); with a 262k-word vocabulary that is ~1 GB per
    buffer and ~20% of a step. Models that soft-cap their logits, and runs that train the
    unembedding (``params="all"``), take autograd's path.
    """
    unembed = model.unembed.original_component
    bias = getattr(unembed, "bias", None)
    trained = unembed.weight.requires_grad or (bias is not None and bias.requires_grad)
    if trained or adapter(model).final_softcap(model) is not None:
        losses = logit_lens_losses(model, outputs, ids, dtype)
        _raise_if_any_not_finite(losses)
        if losses.requires_grad:
            losses.sum().backward()
        return losses.detach()
    normed = model.ln_final(torch.cat(outputs)[:, :-1]).flatten(0, 1)
    targets = ids[:, 1:].repeat(len(outputs), 1).flatten()
    weight = unembedding_weight(model, dtype)
    with torch.no_grad():
        if dtype == torch.float32:  # into a buffer kept for the run: no fresh ~1 GB each step
            buffer = scratch.view(len(targets), len(weight), weight.device)
            logits = torch.mm(normed, weight.T, out=buffer)
            if bias is not None:
                logits += bias
        else:
            logits = F.linear(normed.to(dtype), weight, None if bias is None else bias.to(dtype))
            logits = logits.float()
        lse = torch.logsumexp(logits, dim=-1)
        nll = lse - logits.gather(1, targets[:, None]).squeeze(1)
        losses = nll.view(len(outputs), -1).mean(dim=1)
        _raise_if_any_not_finite(losses)
        if not normed.requires_grad:
            return losses
        probs = logits.sub_(lse[:, None]).exp_()
        probs.scatter_add_(1, targets[:, None], torch.full_like(lse[:, None], -1.0))
        probs.mul_(len(outputs) / len(targets))  # d(mean over a layer's positions)
        grad = (probs.to(dtype) @ weight).to(normed.dtype)
    normed.backward(grad)
    return losses


class _LogitsScratch:
    """One float32 logits buffer kept for a whole finetuning run (the allocator returns large
    blocks to the OS, and faulting ~1 GB of fresh pages back in costs ~15% of an LCGD step)."""

    def __init__(self) -> None:
        self._buffer: Tensor | None = None

    def view(self, rows: int, columns: int, device: torch.device) -> Tensor:
        """A ``rows x columns`` view of the buffer, grown when too small."""
        if self._buffer is None or self._buffer.numel() < rows * columns:
            self._buffer = torch.empty(rows * columns, device=device)
        return self._buffer[: rows * columns].view(rows, columns)


def _lcgd_step_loss(
    model: Any, ids: Int[Tensor, "batch pos"], dtype: torch.dtype, scratch: _LogitsScratch
) -> Float[Tensor, ""]:
    """Backward the sum over layers of ``layer_losses``, a chunk of layers at a time.

    The layers' graphs are disjoint, so each chunk is backwarded (and its graph and logits
    freed) on its own; the accumulated gradient equals that of the summed loss.
    """
    with _autocast(ids.device, dtype):
        outputs = block_outputs(model, ids)
    for layer, output in enumerate(outputs):
        if not bool(torch.isfinite(output).all()):
            raise _NonFinite(layer, "output")
    per_chunk = max(1, LOGIT_ROWS // ids.numel())
    total = torch.zeros(())
    for first in range(0, len(outputs), per_chunk):
        try:
            with _autocast(ids.device, dtype):
                losses = _backward_logit_lens_losses(
                    model, outputs[first : first + per_chunk], ids, dtype, scratch
                )
        except _NonFinite as err:
            raise _NonFinite(None if err.layer is None else first + err.layer) from None
        total += losses.sum()
    return total


def _autocast(device: torch.device, dtype: torch.dtype) -> Any:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class _NonFinite(Exception):
    """A non-finite loss (``what="loss"``) or block output, at ``layer`` if known."""

    def __init__(self, layer: int | None, what: str = "loss") -> None:
        self.layer = layer
        self.what = what


def _raise_if_not_finite(loss: Tensor, layer: int | None = None) -> None:
    if not torch.isfinite(loss):
        raise _NonFinite(layer)


def _raise_if_any_not_finite(losses: Float[Tensor, " layer"]) -> None:
    """``_NonFinite`` naming the first layer (index into ``losses``) whose loss is NaN/inf."""
    for layer, loss in enumerate(losses):
        _raise_if_not_finite(loss, layer=layer)


class _WeightWatch:
    """Checks the trained tensors after each step: finite, and max |w| within the bound
    ``EXPLOSION_FACTOR * max(initial max |w|, 1)`` (one fused reduction per step)."""

    def __init__(self, model: Any, trained: list[nn.Parameter]) -> None:
        names = {
            id(p): name.replace("._original_component", "") for name, p in model.named_parameters()
        }
        self.trained = trained
        self.names = [names.get(id(p), f"parameter {i}") for i, p in enumerate(trained)]
        with torch.no_grad():
            self.initial = self._max_abs()
        self.bounds = EXPLOSION_FACTOR * self.initial.clamp(min=1.0)

    def _max_abs(self) -> Tensor:
        if not self.trained:
            return torch.zeros(0)
        return torch.stack(
            [norm.float() for norm in torch._foreach_norm(list[Tensor](self.trained), ord=math.inf)]
        )

    def problem(self) -> str | None:
        """None if every trained tensor is fine, else what is wrong with the first bad one."""
        with torch.no_grad():
            current = self._max_abs()
        bad = ~(current <= self.bounds.to(current.device))
        if not bool(bad.any()):
            return None
        i = int(bad.nonzero()[0, 0])
        name, value = self.names[i], float(current[i])
        match = re.search(r"\.(?:layers|blocks|h)\.(\d+)\.", f".{name}.")
        where = f"layer {match.group(1)}'s {name}" if match else name
        if not math.isfinite(value):
            return f"{where} holds non-finite values"
        return (
            f"{where} exploded: max |w| = {value:.3g}, over {EXPLOSION_FACTOR:g}x its initial "
            f"{float(self.initial[i]):.3g} (bound {float(self.bounds[i]):.3g})"
        )


def finetune(model: Any, demo_ids: list[Int[Tensor, " _tok"]], **options: Any) -> Any:
    """Return a copy of ``model`` finetuned on ``demo_ids`` (one SGD step per demonstration);
    ``options`` are ``finetune_with_losses``'s (method, lr, params, seed, compute_dtype,
    progress)."""
    return finetune_with_losses(model, demo_ids, **options)[0]


def finetune_with_losses(
    model: Any,
    demo_ids: list[Int[Tensor, " _tok"]],
    *,
    method: str = "gd",
    lr: float = 1e-3,
    params: str = "kv",
    seed: int = 0,
    compute_dtype: str = "float32",
    progress: bool = False,
) -> tuple[Any, list[float]]:
    """A copy of ``model`` finetuned on ``demo_ids`` (one SGD step per demonstration) and each
    step's training loss (before that step's update; for LCGD the sum over layers).

    ``compute_dtype="bfloat16"`` runs the forward passes under bfloat16 autocast (weights,
    gradients and updates stay float32): ~2-3x faster on CPUs with AVX512-BF16, gradients
    accurate to ~1e-2 relative; ``"auto"`` picks it where the hardware supports it
    (``resolve_compute_dtype``). Raises ``UserError`` naming the step and demonstration when
    the run diverges (a NaN/inf loss or block output, or a trained tensor that is non-finite
    or beyond ``EXPLOSION_FACTOR`` after a step; see the module docstring).
    """
    config = FinetuneConfig(
        method=method, lr=lr, params=params, seed=seed, compute_dtype=compute_dtype
    )
    _check_demos(demo_ids, model)
    tuned = copy_model(model)
    tuned.eval()
    for parameter in tuned.parameters():
        parameter.requires_grad_(False)
    trained = trainable_parameters(tuned, config.params)
    for parameter in trained:
        parameter.requires_grad_(True)
    optimizer = torch.optim.SGD(trained, lr=config.lr, momentum=0.0)
    watch = _WeightWatch(tuned, trained)
    step_loss = (
        _gd_step_loss
        if config.method == "gd"
        else partial(_lcgd_step_loss, scratch=_LogitsScratch())
    )
    device = next(tuned.parameters()).device
    dtype = getattr(torch, resolve_compute_dtype(config.compute_dtype, device))
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        steps = progress_bar(
            demo_ids, desc=f"{config.method} finetuning", disable=None if progress else True
        )
        for step, ids in enumerate(steps):
            at = f"at step {step + 1} (demonstration {step}) with lr={config.lr:g}"
            optimizer.zero_grad(set_to_none=True)
            try:
                loss = step_loss(tuned, ids[None].to(device), dtype)
            except _NonFinite as err:
                where = "" if err.layer is None else f" (layer {err.layer}'s {err.what})"
                raise UserError(
                    f"{config.method} finetuning diverged: non-finite {err.what}{where} {at}; "
                    "try a lower learning rate"
                ) from None
            optimizer.step()
            problem = watch.problem()
            if problem is not None:
                raise UserError(
                    f"{config.method} finetuning diverged {at}: {problem}; "
                    "try a lower learning rate"
                )
            losses.append(float(loss))
            steps.set_postfix(loss=f"{losses[-1]:.3f}")
    for parameter in tuned.parameters():
        parameter.requires_grad_(False)
    forget_cast_unembedding(tuned)
    return tuned, losses


def untrained_baseline(model: Any, seed: int) -> Any:
    """Return a copy of ``model`` whose attention and MLP linear weights are re-drawn at random.

    Weights ~ N(0, initializer_range^2) (the HF config's init scale, 0.02 if absent), biases 0;
    embeddings, all norms and the unembedding are kept.
    """
    untrained = copy_model(model)
    untrained.eval()
    hf_config = getattr(getattr(untrained, "original_model", None), "config", None)
    std = float(getattr(hf_config, "initializer_range", 0.02))
    generator = torch.Generator().manual_seed(seed)
    reinit_modules = adapter(untrained).reinit_modules
    with torch.no_grad():
        for block in untrained.blocks:
            for module in reinit_modules(block):
                weight: Tensor = module.weight  # type: ignore[assignment]
                weight.copy_(torch.randn(weight.shape, generator=generator) * std)
                bias = getattr(module, "bias", None)
                if bias is not None:
                    bias.zero_()
    return untrained
