"""``icl-interp adapt``: continue training a copy of a causal LM on ICL episodes, under a
prefix or a causal attention mask (the open, small analog of Ding et al.'s Table 2 finetuning).

An *episode* is ``[bos] + k demonstrations`` followed by ``queries`` query + answer segments, in a
registered data set's own template, drawn from the *train* split of a training mixture. Each
query segment sees the demonstrations and itself, never another query, and its position ids
continue from the demonstrations (as if it were the only query): one forward pass scores
``queries`` answers on a shared prefix. Episode ``i`` of seed ``s`` is a
pure function of ``(s, i)`` (data set, demonstrations, query), so every objective sees the same
episodes in the same order, and a resumed run sees exactly what an uninterrupted one would.

- ``objective="causal"``: the usual causal mask.
- ``objective="prefix"``: the toolkit's prefix mask with ``n_prefix = len([bos] +
  demonstrations)``: demonstrations attend to each other bidirectionally, the query attends
  to every demonstration and causally to itself (docs/definitions.md). Sliding-window layers
  keep their windows (``arch.attention_mask_for``).

The mask is the only difference between the objectives. The loss is the next-token
cross-entropy (full vocabulary) of the queries' answer tokens (FLAN-style input -> target);
``loss_on="labels"`` also scores every demonstration's label token, which is only valid under
the causal mask (under the prefix mask a demonstration's label is visible to the position
that predicts it). Logits are computed at the loss positions only.

The output folder is an ordinary Hugging Face model folder (``load_model(out)`` and every
command accept it) plus ``adapt_card.json`` (base model, objective, the mask it expects,
mixture, steps, lr, seed, loss curve, config and package versions) and ``train_log.csv``.
While training, ``checkpoint.pt`` holds the trained parameters, the optimizer state and the
logs; ``max_minutes`` stops at a step boundary and the same call resumes, bit-identical to an
uninterrupted run (same thread count).

A run owns its folder (``icl_interp.results.lock_folder``: a second run on it refuses while the
first runs). The checkpoint and the card record the base model's identity and a fingerprint of
the training and validation data; a resume on other weights or other data is refused. The run
watches itself: a non-finite loss or gradient, a loss frozen at the uniform-output level
(``ln(vocabulary)``) or a vanishing gradient norm stops it with one line naming the step.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from icl_interp.errors import UserError
from icl_interp.lm.adapt.config import (
    RESUME_IGNORES,
    AdaptConfig,
    config_from_args,
)
from icl_interp.lm.adapt.episodes import EpisodeStream
from icl_interp.lm.adapt.training import (
    _causal_lm,
    add_lora,
    episode_loss,
    hf_state_dict,
    learning_rate,
    trainable_parameters,
    validation_chance,
    validation_metrics,
)
from icl_interp.progress import progress as progress_bar
from icl_interp.results import (
    LOCK_NAME,
    lock_folder,
    package_versions,
    read_torch,
    refuse_changed,
    release_locks,
    write_csv,
    write_text,
    write_torch,
)
from icl_interp.threads import torch_threads

CARD_NAME = "adapt_card.json"
CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "train_log.csv"
# collapse: this many steps in a row with the loss within UNIFORM_TOLERANCE of ln(vocabulary)
# (the loss of a uniform output) or the gradient norm below VANISHING_GRADIENT
COLLAPSE_STEPS = 3
UNIFORM_TOLERANCE = 1e-3
VANISHING_GRADIENT = 1e-8
# or validation accuracy back at chance after having been this many guessing SEs above it
ABOVE_CHANCE_SE = 3.0


# --------------------------------------------------------------------------- the run


def _check_out(out: Path, config: AdaptConfig) -> str:
    """'new', 'resume' or 'done'; UserError if ``out`` holds anything else (a corrupt card or
    checkpoint is named)."""
    card, checkpoint = out / CARD_NAME, out / CHECKPOINT_NAME
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; pass a folder path")
    if card.exists():
        stored = _stored_config(card, lambda: json.loads(card.read_text(encoding="utf-8")))
    elif checkpoint.exists():
        stored = _stored_config(checkpoint, lambda: _read_checkpoint(checkpoint))
    elif out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise UserError(
            f"{out} exists and is not an adaptation folder; choose another --out or delete it"
        )
    else:
        return "new"
    refuse_changed(
        f"{out} holds an adaptation made with other settings",
        stored,
        config.identity(),
        "rerun with the same options to resume, or pass a new --out",
        skip=RESUME_IGNORES,
    )
    return "done" if card.exists() else "resume"


def _read_checkpoint(path: Path) -> dict[str, Any]:
    checkpoint = read_torch(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or not {"config", "step", "trainable"} <= set(checkpoint):
        raise UserError(
            f"{path} is corrupt or unreadable (not an adaptation checkpoint); delete it to "
            "start over, or pass a new --out"
        )
    return checkpoint


def _stored_config(path: Path, read: Any) -> dict[str, Any]:
    try:
        stored = read()["config"]
    except (OSError, ValueError, KeyError, TypeError):
        stored = None
    if not isinstance(stored, dict):
        raise UserError(
            f"{path} is corrupt or unreadable; delete it to start over, or pass a new --out"
        )
    return stored


def _inputs(config: AdaptConfig) -> dict[str, Any]:
    """What the run reads, by content: the base model's identity and each data set's train
    and test examples' fingerprints."""
    from icl_interp.lm.data import examples_fingerprint, load_examples
    from icl_interp.lm.models import model_identity

    return {
        "base_model": model_identity(config.base),
        "data": {
            f"{name} {split}": examples_fingerprint(
                load_examples(name, split, config.data_dir, source=config.source)
            )
            for split in ("train", "test")
            for name in config.mixture
        },
    }


def _check_inputs(out: Path, recorded: Any, current: dict[str, Any], where: str) -> None:
    if recorded is None:  # made before inputs were recorded
        return

    def flat(inputs: dict[str, Any]) -> dict[str, Any]:
        data = inputs.get("data") or {}
        return {"base model": inputs.get("base_model"), **{f"data {k}": v for k, v in data.items()}}

    refuse_changed(
        f"the inputs changed since {where} in {out} was written",
        flat(recorded),
        flat(current),
        "restore them, or pass a new --out",
    )


class Collapsed(UserError):
    """Adaptation diverged or collapsed: the run's checkpoint is of no use to any rerun."""


class _Watch:
    """Stops a run that diverged or collapsed, with one line naming the step."""

    def __init__(
        self, config: AdaptConfig, out: Path, vocabulary: int, chance: tuple[float, float] = (0, 0)
    ) -> None:
        self.config, self.out = config, out
        self.uniform = math.log(vocabulary)
        self.streak: list[int] = []
        self.vanishing: list[int] = []
        self.chance, self.chance_se = chance  # validation accuracy of guessing, its binomial SE
        self.above: tuple[int, float] | None = None  # last validation clearly above chance

    def _stop(self, what: str, step: int) -> UserError:
        return Collapsed(
            f"adaptation {what} at step {step} with lr={self.config.lr:g}; its checkpoint is "
            f"removed from {self.out}, so a corrected command starts afresh; try a lower --lr "
            "(or other --params)"
        )

    def loss(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise self._stop("diverged: non-finite loss", step)
        self.streak = self.streak + [step] if abs(loss - self.uniform) < UNIFORM_TOLERANCE else []
        if len(self.streak) >= COLLAPSE_STEPS:
            raise self._stop(
                f"collapsed: loss frozen at ln(vocabulary) = {self.uniform:.4f} (a uniform "
                f"output) since step {self.streak[0]}, stopped",
                step,
            )

    def validation(self, step: int, accuracy: float) -> None:
        """Stop when validation accuracy, once clearly above chance (by ``ABOVE_CHANCE_SE``
        standard errors of guessing), falls back to chance or below."""
        if accuracy >= self.chance + ABOVE_CHANCE_SE * self.chance_se:
            self.above = (step, accuracy)
        elif self.above is not None and accuracy <= self.chance:
            raise self._stop(
                f"collapsed: validation accuracy {accuracy:.3f} back at chance "
                f"({self.chance:.3f}) after {self.above[1]:.3f} at step {self.above[0]}, stopped",
                step,
            )

    def gradient(self, step: int, norm: float) -> None:
        if not math.isfinite(norm):
            raise self._stop("diverged: non-finite gradient", step)
        self.vanishing = self.vanishing + [step] if norm < VANISHING_GRADIENT else []
        if len(self.vanishing) >= COLLAPSE_STEPS:
            raise self._stop(
                f"collapsed: gradient norm below {VANISHING_GRADIENT:g} since step "
                f"{self.vanishing[0]}, stopped",
                step,
            )


def adapt(config: AdaptConfig) -> Path:
    """Run (or resume) one adaptation; return the output folder (an HF model folder). The
    folder is locked for the run (a second run on it refuses) and released at the end."""
    out = Path(config.out)
    _check_out(out, config)  # refuse a foreign folder before making a lock file in it
    lock_folder(out)
    try:
        with torch_threads(config.threads):
            return _adapt(config)
    except Collapsed:
        (out / CHECKPOINT_NAME).unlink(missing_ok=True)  # a rerun would collapse the same way
        raise
    finally:
        release_locks(out)


def _episodes(model: Any, config: AdaptConfig) -> tuple[EpisodeStream, list[Any]]:
    """The training episode stream (train split) and the validation episodes (test split)."""
    train = EpisodeStream(
        model.tokenizer,
        config.mixture,
        config.k,
        min(config.max_len, int(model.cfg.n_ctx)),
        config.seed,
        queries=config.queries,
        loss_on=config.loss_on,
        data_dir=config.data_dir,
        source=config.source,
    )
    val_stream = EpisodeStream(
        model.tokenizer,
        config.mixture,
        config.k,
        train.max_len,
        config.seed,
        queries=config.queries,
        split="test",
        data_dir=config.data_dir,
        source=config.source,
    )
    return train, [val_stream[i] for i in range(config.val_episodes)]


def _trainable(model: Any, config: AdaptConfig) -> tuple[Any, list[tuple[str, Any]]]:
    """The model that trains (the HF model, or its LoRA wrapper) and its trained parameters;
    everything else frozen."""
    hf_model = model.original_model
    for parameter in hf_model.parameters():
        parameter.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # LoRA's random init: a function of the seed alone
        trained_model = add_lora(model, config.lora_rank) if config.params == "lora" else hf_model
    named = trainable_parameters(model, trained_model, config.params)
    for _, parameter in named:
        parameter.requires_grad_(True)
    return trained_model, named


def _restore(
    checkpoint: dict[str, Any], out: Path, named: list[tuple[str, Any]], optimizer: Any
) -> tuple[list[dict[str, Any]], int]:
    """Load a checkpoint's parameters and optimizer state; its log and step."""
    try:
        with torch.no_grad():
            for name, parameter in named:
                parameter.copy_(checkpoint["trainable"][name])
        optimizer.load_state_dict(checkpoint["optimizer"])
        return checkpoint["log"], int(checkpoint["step"])
    except (KeyError, RuntimeError, ValueError, TypeError):
        raise UserError(
            f"{out / CHECKPOINT_NAME} is corrupt or does not fit this model's parameters; "
            "delete it to start over, or pass a new --out"
        ) from None


def _train_step(
    model: Any,
    causal_lm: Any,
    episode: Any,
    optimizer: Any,
    trainable: list[Any],
    config: AdaptConfig,
    step: int,
    watch: _Watch,
) -> dict[str, Any]:
    """One optimizer step on one episode (``watch`` stops a diverging or collapsing run);
    the step's log row."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(config, step)
    optimizer.zero_grad(set_to_none=True)
    loss = episode_loss(model, causal_lm, episode, config.objective)
    watch.loss(step + 1, float(loss.detach()))
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
    watch.gradient(step + 1, float(grad_norm))
    optimizer.step()
    return {
        "step": step + 1,
        "loss": float(loss.detach()),
        "grad_norm": float(grad_norm),
        "lr": learning_rate(config, step),
        "dataset": episode.dataset,
        "k_used": episode.k_used,
        "tokens": int(episode.ids.shape[0]),
    }


def _start_watch(
    config: AdaptConfig,
    out: Path,
    model: Any,
    causal_lm: Any,
    val_episodes: list[Any],
    log: list[dict[str, Any]],
) -> _Watch:
    """The run's watch, with step 0's validation logged for a new run and a resumed run's
    logged validations replayed (so it starts where the straight run's was)."""
    if not log and val_episodes:
        log.append(
            {"step": 0, **validation_metrics(model, causal_lm, val_episodes, config.objective)}
        )
    watch = _Watch(config, out, int(model.cfg.d_vocab), validation_chance(val_episodes))
    for logged in log:
        if "val_acc" in logged:
            watch.validation(logged["step"], logged["val_acc"])
    return watch


def _adapt(config: AdaptConfig) -> Path:
    from icl_interp.lm.data import get_dataset
    from icl_interp.lm.models import load_model

    out = Path(config.out)
    for name in config.mixture:
        get_dataset(name)
    state = _check_out(out, config)
    if state == "done":
        card = read_card(out) or {}
        _check_inputs(out, card.get("inputs"), _inputs(config), CARD_NAME)
        print(f"{out} is already a finished adaptation; nothing to do")
        return out
    if state == "resume":
        checkpoint = _read_checkpoint(out / CHECKPOINT_NAME)
    model = load_model(config.base, device=config.device)
    train, val_episodes = _episodes(model, config)
    inputs = _inputs(config)
    if state == "resume":
        _check_inputs(out, checkpoint.get("inputs"), inputs, CHECKPOINT_NAME)
    trained_model, named = _trainable(model, config)
    optimizer = torch.optim.AdamW(
        [p for _, p in named], lr=config.lr, weight_decay=config.weight_decay
    )
    log: list[dict[str, Any]] = []
    start_step = 0
    if state == "resume":
        log, start_step = _restore(checkpoint, out, named, optimizer)
        print(f"resuming {out} at step {start_step} of {config.steps}")

    def save_checkpoint(step: int) -> None:
        write_torch(
            out / CHECKPOINT_NAME,
            {
                "config": config.to_dict(),
                "step": step,
                "trainable": {n: p.detach().clone() for n, p in named},
                "optimizer": optimizer.state_dict(),
                "log": log,
                "inputs": inputs,
            },
        )

    started = time.perf_counter()
    causal_lm = _causal_lm(trained_model)
    watch = _start_watch(config, out, model, causal_lm, val_episodes, log)
    progress = progress_bar(
        total=config.steps,
        initial=start_step,
        desc=f"adapt {config.objective} seed {config.seed}",
        unit="step",
        disable=None if config.progress else True,
    )
    trainable = [p for _, p in named]
    for step in range(start_step, config.steps):
        if (
            config.max_minutes is not None
            and time.perf_counter() - started > 60 * config.max_minutes
        ):
            save_checkpoint(step)
            progress.close()
            print(
                f"stopped after {config.max_minutes:g} min at step {step} of {config.steps}; "
                "rerun the same command to resume"
            )
            return out
        row = _train_step(model, causal_lm, train[step], optimizer, trainable, config, step, watch)
        if val_episodes and ((step + 1) % config.eval_every == 0 or step + 1 == config.steps):
            row.update(validation_metrics(model, causal_lm, val_episodes, config.objective))
            watch.validation(step + 1, row["val_acc"])
        log.append(row)
        progress.update(1)
        progress.set_postfix(loss=f"{row['loss']:.3f}")
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            save_checkpoint(step + 1)
    progress.close()
    _finish(config, out, model, trained_model, log, time.perf_counter() - started, inputs)
    return out


def _finish(
    config: AdaptConfig,
    out: Path,
    model: Any,
    trained_model: Any,
    log: list[dict],
    seconds: float,
    inputs: dict[str, Any],
) -> None:
    """Write the HF folder, the log and the card (last: it marks the run done); drop the
    checkpoint."""
    hf_model = trained_model.merge_and_unload() if config.params == "lora" else trained_model
    for parameter in hf_model.parameters():
        parameter.requires_grad_(False)
    hf_model.save_pretrained(out, state_dict=hf_state_dict(hf_model))
    model.tokenizer.save_pretrained(out)
    table = pd.DataFrame(log)
    write_csv(out / LOG_NAME, table)
    train_rows = table.dropna(subset=["loss"]) if "loss" in table else table.iloc[0:0]
    val_rows = table.dropna(subset=["val_loss"]) if "val_loss" in table else table.iloc[0:0]
    card = {
        "base_model": config.base,
        "objective": config.objective,
        "expects_mask": config.objective,
        "mixture": list(config.mixture),
        "steps": config.steps,
        "lr": config.lr,
        "seed": config.seed,
        "params": config.params,
        "k": config.k,
        "loss_on": config.loss_on,
        "loss_curve": [round(v, 5) for v in train_rows["loss"].tolist()],
        "validation": (
            val_rows[["step", "val_loss", "val_acc"]].round(5).to_dict("records")
            if len(val_rows)
            else []
        ),
        "k_used_mean": float(train_rows["k_used"].mean()) if len(train_rows) else None,
        "seconds_last_session": round(seconds, 1),
        "config": config.to_dict(),
        "inputs": inputs,
        "versions": package_versions(),
        "argv": sys.argv,
    }
    write_text(out / CARD_NAME, json.dumps(card, indent=2, sort_keys=True) + "\n")
    (out / CHECKPOINT_NAME).unlink(missing_ok=True)
    print(f"adapted model in {out} (expects the {config.objective} mask)")


def read_card(folder: str | Path) -> dict[str, Any] | None:
    """The ``adapt_card.json`` of an adapted model folder, or None for other models."""
    path = Path(folder) / CARD_NAME
    return json.loads(path.read_text()) if path.exists() else None


# --------------------------------------------------------------------------- CLI


def run(args: argparse.Namespace) -> int:
    adapt(config_from_args(args))
    return 0
