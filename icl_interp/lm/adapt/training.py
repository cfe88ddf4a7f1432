"""What one adaptation step needs: the trained parameters (LoRA targets and ``--params``
groups from the architecture adapter), an episode's mask under each objective, its loss at the
answer positions, validation, and the lr schedule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from icl_interp.errors import UserError
from icl_interp.lm.adapt.config import (
    AdaptConfig,
)
from icl_interp.lm.adapt.episodes import Episode
from icl_interp.lm.arch import projection_modules


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
    from icl_interp.lm.arch import attention_mask_for

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
