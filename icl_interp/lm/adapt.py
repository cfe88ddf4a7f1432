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
  keep their windows (``capture.attention_mask_for``).

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
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from icl_interp.errors import UserError
from icl_interp.lm.adapt_config import (
    RESUME_IGNORES,
    AdaptConfig,
    config_from_args,
)
from icl_interp.lm.arch import projection_modules
from icl_interp.progress import progress as progress_bar
from icl_interp.results import (
    LOCK_NAME,
    lock_folder,
    package_versions,
    read_torch,
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


# --------------------------------------------------------------------------- episodes


@dataclass(frozen=True)
class Episode:
    """One training sequence: token ids, their position ids, their segment (0 for ``[bos] +
    demonstrations``, ``j`` for query ``j``), the prefix length and the loss positions (position
    ``p`` predicts token ``ids[p + 1]``; the last ``n_queries`` are the queries' answers)."""

    ids: Int[Tensor, " seq"]
    positions: Int[Tensor, " seq"]
    segments: Int[Tensor, " seq"]
    n_prefix: int
    loss_positions: Int[Tensor, " n_loss"]
    dataset: str
    k_used: int
    n_queries: int

    @property
    def targets(self) -> Int[Tensor, " n_loss"]:
        return self.ids[self.loss_positions + 1]

    @property
    def answer_positions(self) -> Int[Tensor, " n_queries"]:
        return self.loss_positions[-self.n_queries :]


@dataclass
class EpisodeStream:
    """Episodes of a mixture, episode ``i`` a pure function of ``(seed, split, i)``.

    Each episode picks a data set uniformly, draws ``k`` label-balanced demonstrations and
    ``queries`` queries with other inputs from that data set's ``split`` pool, and packs them so
    that the demonstrations plus the longest query fit ``max_len`` tokens (demonstrations
    dropped from the end; ``k_used`` says how many remain).
    """

    tokenizer: Any
    mixture: tuple[str, ...]
    k: int
    max_len: int
    seed: int
    queries: int = 1
    loss_on: str = "answer"
    split: str = "train"
    data_dir: str | None = None
    source: str = "auto"
    pools: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from icl_interp.lm.data import get_dataset, label_token_ids, load_examples

        self.specs = {name: get_dataset(name) for name in self.mixture}
        for name, spec in self.specs.items():
            label_token_ids(self.tokenizer, spec.label_words)
            if name not in self.pools:
                self.pools[name] = load_examples(
                    name, self.split, self.data_dir, source=self.source
                )
            if len(self.pools[name]) < self.k + self.queries:
                raise UserError(
                    f"{name} {self.split} split has {len(self.pools[name])} examples; an episode "
                    f"needs k + queries = {self.k + self.queries}"
                )

    def __getitem__(self, index: int) -> Episode:
        from icl_interp.lm.data import build_prompts, sample_demonstrations, select_eval

        rng = random.Random(f"icl_interp-adapt-{self.split}-{self.seed}-{index}")
        name = self.mixture[rng.randrange(len(self.mixture))]
        spec, pool = self.specs[name], self.pools[name]
        demos = sample_demonstrations(pool, self.k, seed=rng.randrange(2**31))
        queries = select_eval(pool, self.queries, seed=rng.randrange(2**31), exclude=demos)
        prompts = build_prompts(self.tokenizer, spec, demos, queries, max_len=self.max_len - 1)
        n_prefix = len(prompts.prefix_ids)
        pieces, positions, segments, answers = (
            [prompts.prefix_ids],
            [torch.arange(n_prefix)],
            [torch.zeros(n_prefix, dtype=torch.long)],
            [],
        )
        start = n_prefix
        for j, (query, label) in enumerate(zip(prompts.query_ids, prompts.labels, strict=True)):
            segment = torch.cat([query, prompts.label_token_ids[label : label + 1]])
            pieces.append(segment)
            positions.append(torch.arange(n_prefix, n_prefix + len(segment)))
            segments.append(torch.full((len(segment),), j + 1, dtype=torch.long))
            start += len(segment)
            answers.append(start - 2)
        loss_positions = answers
        if self.loss_on == "labels" and prompts.k_used:
            # prefix = [bos] + sum(input_i + [label_i] + separator); demo_ids[i] = [bos] + input_i + [label_i]
            inputs = [len(demo) - 2 for demo in prompts.demo_ids]
            separator = (n_prefix - 1 - sum(n + 1 for n in inputs)) // prompts.k_used
            label_positions, at = [], 1
            for n in inputs:
                label_positions.append(at + n)
                at += n + 1 + separator
            loss_positions = [p - 1 for p in label_positions] + answers
        return Episode(
            ids=torch.cat(pieces),
            positions=torch.cat(positions),
            segments=torch.cat(segments),
            n_prefix=n_prefix,
            loss_positions=torch.tensor(loss_positions, dtype=torch.long),
            dataset=name,
            k_used=prompts.k_used,
            n_queries=len(answers),
        )


# --------------------------------------------------------------------------- model pieces


def trainable_parameters(
    model: Any, trained_model: Any, params: str
) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) pairs of ``trained_model`` (the bridge's HF model, LoRA-wrapped for
    ``lora``) to train, in its own order: the LoRA matrices, or the parameters of every block
    of the bridge ``model`` (``blocks``) or of every block's attention (``attn``), so the groups
    are the same for every architecture family."""
    named = list(trained_model.named_parameters())
    if params == "lora":
        chosen = [(n, p) for n, p in named if "lora_" in n]
    else:
        parts = [block.attn if params == "attn" else block for block in model.blocks]
        group = {id(p) for part in parts for p in part.parameters()}
        chosen = [(n, p) for n, p in named if id(p) in group]
    if not chosen:
        raise UserError(f"--params {params}: no such parameters in {type(trained_model).__name__}")
    return chosen


def _lora_targets(model: Any) -> list[str]:
    """The HF module names of every layer's q/k/v/o projection (``arch.projection_modules``)."""
    projections = {id(module) for module in projection_modules(model)}
    targets = [n for n, m in model.original_model.named_modules() if id(m) in projections]
    if not targets:
        raise UserError(
            f"--params lora: no q/k/v/o projections in {type(model.original_model).__name__}; "
            "use --params blocks or attn"
        )
    return targets


def check_params(model: Any, params: str) -> None:
    """A one-line ``UserError`` unless ``params`` names parameters the bridge ``model`` has
    (checked before anything is written; nothing is changed)."""
    if params == "lora":
        _lora_targets(model)
    else:
        trainable_parameters(model, model.original_model, params)


def add_lora(model: Any, rank: int) -> Any:
    """The bridge ``model``'s HF model wrapped with rank-``rank`` LoRA on every q/k/v/o
    projection (``peft``)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UserError("--params lora needs the package peft: pip install peft") from None
    targets = _lora_targets(model)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets)
    return get_peft_model(model.original_model, config)


def hf_state_dict(hf_model: Any) -> dict[str, Tensor]:
    """The model's weights under plain Hugging Face names (the bridge wraps modules, adding
    ``_original_component`` and alias names); keys a fresh model of the same config has."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        expected = set(AutoModelForCausalLM.from_config(hf_model.config).state_dict())
    clean: dict[str, Tensor] = {}
    for name, tensor in hf_model.state_dict().items():
        plain = name.replace("._original_component", "")
        if plain in expected and plain not in clean:
            clean[plain] = tensor
    missing = expected - set(clean)
    if missing:
        raise RuntimeError(f"could not map weights {sorted(missing)[:5]} to Hugging Face names")
    return clean


def episode_mask(model: Any, episode: Episode, objective: str) -> Tensor | dict[str, Tensor]:
    """``objective``'s additive mask(s) for a multi-query episode: the single-query mask (with
    sliding windows) looked up at the position ids, and nothing across query segments."""
    from icl_interp.lm.capture import attention_mask_for

    positions, segments = episode.positions, episode.segments
    single = attention_mask_for(
        model, objective, int(positions.max()) + 1, n_prefix=episode.n_prefix
    )
    crossing = (segments[:, None] != segments[None, :]) & (segments[None, :] != 0)

    def expand(mask: Tensor) -> Tensor:
        full = mask[0, 0][positions[:, None], positions[None, :]]
        return full.masked_fill(crossing, float("-inf"))[None, None]

    if isinstance(single, dict):
        return {layer_type: expand(mask) for layer_type, mask in single.items()}
    return expand(single)


def episode_hidden(
    model: Any, hf_model: Any, episode: Episode, objective: str
) -> Float[Tensor, "seq d_model"]:
    """The last block's (normed) hidden states of one episode under ``objective``'s mask."""
    device = next(hf_model.parameters()).device
    mask = episode_mask(model, episode, objective)
    if isinstance(mask, dict):
        mask = {layer_type: m.to(device) for layer_type, m in mask.items()}
    else:
        mask = mask.to(device)
    return hf_model.base_model(
        input_ids=episode.ids.to(device)[None],
        attention_mask=mask,
        position_ids=episode.positions.to(device)[None],
        use_cache=False,
    ).last_hidden_state[0]


def _logits_at(hf_model: Any, hidden: Tensor, rows: Tensor | None = None) -> Tensor:
    """Unembedding (all rows, or ``rows`` only) of ``hidden``, soft-capped like the model."""
    weight = hf_model.lm_head.weight if rows is None else hf_model.lm_head.weight[rows]
    logits = F.linear(hidden, weight).float()
    softcap = getattr(hf_model.config, "final_logit_softcapping", None)
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def episode_loss(model: Any, hf_model: Any, episode: Episode, objective: str) -> Tensor:
    """Mean next-token cross-entropy (full vocabulary) at the episode's loss positions, under
    ``objective``'s mask; logits only at those positions."""
    hidden = episode_hidden(model, hf_model, episode, objective)
    positions = episode.loss_positions.to(hidden.device)
    logits = _logits_at(hf_model, hidden[positions])
    return F.cross_entropy(logits, episode.targets.to(hidden.device))


def _causal_lm(hf_model: Any) -> Any:
    """The causal-LM module under a peft wrapper (or the model itself)."""
    return hf_model.get_base_model() if hasattr(hf_model, "get_base_model") else hf_model


def validation_metrics(
    model: Any, hf_model: Any, episodes: Sequence[Episode], objective: str
) -> dict[str, float]:
    """Mean answer loss and label-word accuracy (argmax over the data set's label tokens) over
    every query of the validation episodes (answer positions only)."""
    if not episodes:
        return {}
    from icl_interp.lm.data import get_dataset, label_token_ids

    losses, correct = [], []
    with torch.no_grad():
        for episode in episodes:
            hidden = episode_hidden(model, hf_model, episode, objective)
            positions = episode.answer_positions.to(hidden.device)
            logits = _logits_at(hf_model, hidden[positions])
            answers = episode.ids.to(hidden.device)[positions + 1]
            losses += F.cross_entropy(logits, answers, reduction="none").tolist()
            labels = label_token_ids(model.tokenizer, get_dataset(episode.dataset).label_words)
            labels = labels.to(logits.device)
            correct += (labels[logits[:, labels].argmax(-1)] == answers).float().tolist()
    return {"val_loss": sum(losses) / len(losses), "val_acc": sum(correct) / len(correct)}


def validation_chance(episodes: Sequence[Episode]) -> tuple[float, float]:
    """The validation accuracy of guessing uniformly among each query's label words, and its
    binomial standard error over the validation queries."""
    from icl_interp.lm.data import get_dataset

    guesses = [
        1 / len(get_dataset(episode.dataset).label_words)
        for episode in episodes
        for _ in range(len(episode.answer_positions))
    ]
    if not guesses:
        return 0.0, 0.0
    spread = math.sqrt(sum(p * (1 - p) for p in guesses)) / len(guesses)
    return sum(guesses) / len(guesses), spread


def learning_rate(config: AdaptConfig, step: int) -> float:
    """lr at 0-based ``step``: linear warm-up, then linear decay to 0 at ``config.steps``."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    remaining = config.steps - step
    return config.lr * remaining / max(1, config.steps - config.warmup)


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
    stored_identity = {k: v for k, v in stored.items() if k not in RESUME_IGNORES}
    differs = sorted(k for k, v in config.identity().items() if stored_identity.get(k) != v)
    if differs:
        raise UserError(
            f"{out} holds an adaptation made with other settings (differs in: "
            f"{', '.join(differs)}); rerun with the same options to resume, or pass a new --out"
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
    for key in ("base_model", "data"):
        if recorded.get(key) == current[key]:
            continue
        if key == "data":
            changed = sorted(
                name
                for name in set(recorded["data"]) | set(current["data"])
                if recorded["data"].get(name) != current["data"].get(name)
            )
            what = f"the training data ({', '.join(changed)})"
        else:
            what = f"the base model ({recorded.get(key)} -> {current[key]})"
        raise UserError(
            f"{what} changed since {where} in {out} was written; restore it, or pass a new --out"
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
