"""Task vectors (Hendel et al., 2310.15916): does one residual vector carry the task?

For each test query x of a ``PromptSet`` and each layer l, under one mask kind:

- ``zero_shot``: ``[bos] + x``, the model's own output (no layer);
- ``icl``: demonstrations + x under the mask (no layer);
- ``task_vector``: the zero-shot forward of x with its last position's residual after block
  l replaced by the task vector: the last-position residual after block l of demonstrations
  + a dummy query x' under the mask (x' = the next test query, so x never sees itself);
- controls, the same with the vector taken from another prompt: ``other_data`` (another
  data set's demonstrations and dummy query) and ``rotated_labels`` (the same demonstrations
  with every label y replaced by y + 1 mod C).

The readout is the final output's argmax over the data set's label tokens; the value is
accuracy over the test queries. Patching goes through :mod:`icl_interp.lm.patching`.

Cost. A forward of T tokens costs about 2 N T + 4 L T^2 d + 2 d V T FLOPs (N non-embedding
parameters, L layers, width d, vocabulary V; the last term because every position's logits
are computed). Here every patched forward is a full zero-shot forward of the T_q query tokens:
n_queries x L x (1 + controls) of them, plus n_queries vector-source forwards of k-shot prompts
per source. The minimum a patched forward needs is the last position above layer l, with the
zero-shot keys/values below it reused (they do not depend on the patch): about
2 N (L - l - 1) / L + 4 (L - l - 1) T_q d + 2 d C FLOPs; not exploited yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from icl_interp.errors import UserError
from icl_interp.lm.capture import run_with_mask
from icl_interp.lm.data import Example, PromptSet, build_prompts
from icl_interp.lm.patching import Patch, read_residuals, run_patched
from icl_interp.masks import MASKS
from icl_interp.registry import Registry


@dataclass(frozen=True)
class TaskVectorCondition:
    """One line of the task-vector figure: a baseline, ICL, or a patched vector's source."""

    name: str
    label: str
    per_layer: bool


TV_CONDITIONS: Registry[TaskVectorCondition] = Registry("task-vector condition")
for _condition in (
    TaskVectorCondition("zero_shot", "zero-shot", False),
    TaskVectorCondition("icl", "ICL", False),
    TaskVectorCondition("task_vector", "task vector", True),
    TaskVectorCondition("other_data", "task vector from another data set", True),
    TaskVectorCondition("rotated_labels", "task vector, labels rotated", True),
):
    TV_CONDITIONS.add(_condition.name, _condition)


def rotate_labels(tokenizer: Any, spec: Any, prompts: PromptSet) -> PromptSet:
    """``prompts`` with every demonstration's label y replaced by y + 1 mod C (same inputs,
    queries and packing)."""
    n_classes = len(spec.label_words)
    rotated = [
        Example(fields=example.fields, label=(example.label + 1) % n_classes)
        for example in prompts.demonstrations
    ]
    return build_prompts(tokenizer, spec, rotated, prompts.queries, max_len=prompts.max_len)


def _predicted_label(logits: Float[Tensor, "1 pos vocab"], label_ids: Int[Tensor, " label"]) -> int:
    return int(logits[0, -1, label_ids.to(logits.device)].argmax())


def source_vectors(
    model: Any, source: PromptSet, n_queries: int, *, mask: str
) -> Float[Tensor, "query layer d_model"]:
    """Per test query i, the last-position residual of every block for ``source``'s
    demonstrations + its dummy query (i + 1) mod the source's query count."""
    device = torch.device(model.cfg.device)
    n_prefix = len(source.prefix_ids)
    cache: dict[int, Tensor] = {}
    vectors = []
    for index in range(n_queries):
        dummy = (index + 1) % source.n_examples
        if dummy not in cache:
            ids = source.icl_ids(dummy)[None].to(device)
            cache[dummy] = read_residuals(model, ids, mask=mask, n_prefix=n_prefix)[0]
        vectors.append(cache[dummy])
    return torch.stack(vectors)


def task_vector_accuracy(
    model: Any,
    prompts: PromptSet,
    *,
    mask: str,
    sources: Mapping[str, PromptSet],
) -> list[dict[str, Any]]:
    """Tidy rows (mask, condition, layer, value, n): accuracy of zero-shot, ICL and of the
    zero-shot query patched at each layer with the vector from each of ``sources``
    (condition name -> the ``PromptSet`` whose demonstrations make the vector; see
    ``TV_CONDITIONS``). ``layer`` is None for zero-shot and ICL (the model's output)."""
    MASKS.get(mask)
    for name in sources:
        if not TV_CONDITIONS.get(name).per_layer:
            raise UserError(f"{name!r} is not a task-vector source; valid: task_vector, controls")
    if prompts.n_examples < 2:
        raise UserError("task vectors need at least 2 test queries (one is the other's dummy)")
    device = torch.device(model.cfg.device)
    labels = prompts.labels.tolist()
    label_ids = prompts.label_token_ids
    n, n_layers = prompts.n_examples, model.cfg.n_layers
    n_prefix = len(prompts.prefix_ids)
    correct: dict[tuple[str, int | None], int] = {}

    def score(key: tuple[str, int | None], logits: Tensor, index: int) -> None:
        correct[key] = correct.get(key, 0) + int(
            _predicted_label(logits, label_ids) == labels[index]
        )

    with torch.no_grad():
        vectors = {name: source_vectors(model, s, n, mask=mask) for name, s in sources.items()}
        for index in range(n):
            zero_shot = prompts.zsl_ids(index)[None].to(device)
            score(("zero_shot", None), run_with_mask(model, zero_shot, mask="causal"), index)
            icl_ids = prompts.icl_ids(index)[None].to(device)
            score(("icl", None), run_with_mask(model, icl_ids, mask=mask, n_prefix=n_prefix), index)
            for name, vector in vectors.items():
                for layer in range(n_layers):
                    patch = Patch(layer, -1, vector[index, layer][None])
                    score((name, layer), run_patched(model, zero_shot, [patch]), index)
    keys: list[tuple[str, int | None]] = [("zero_shot", None), ("icl", None)]
    keys += [(name, layer) for name in sources for layer in range(n_layers)]
    return [
        {"mask": mask, "condition": name, "layer": layer, "value": correct.get((name, layer), 0) / n,
         "n": n}
        for name, layer in keys
    ]  # fmt: skip
