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
accuracy over the test queries. Zero-shot, ICL and the vectors' source prompts run through
:func:`icl_interp.lm.capture.capture` (the demonstrations' keys/values computed once per
prompt set, queries batched); patching goes through
:func:`icl_interp.lm.patching.patched_last_logits`.

Cost. A forward of T tokens costs about 2 N T + 4 L T^2 d + 2 d V T FLOPs (N non-embedding
parameters, L layers, width d, vocabulary V; the last term because every position's logits
are computed). Every source prompt set costs one forward of its k-shot prefix plus its dummy
queries' tokens. The patched forwards of one query, L x (number of sources) of them, share the
zero-shot keys/values of its first T_q - 1 tokens (computed once: a patch of the last position
does not change them) and run as one batch of single-token forwards: about 2 N + 4 L T_q d +
2 d V FLOPs each, against 2 N T_q + ... for a full forward. The floor is the last position
above block l only, 2 N (L - l - 1) / L + 4 (L - l - 1) T_q d + 2 d C (C label tokens): the
blocks below l are recomputed for the last token, about twice the floor on average.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from icl_interp.errors import UserError
from icl_interp.lm.capture import capture
from icl_interp.lm.data import Example, PromptSet, build_prompts
from icl_interp.lm.metrics.accuracy import layer_accuracy
from icl_interp.lm.patching import patched_last_logits
from icl_interp.lm.record import Capture
from icl_interp.masks import MASKS
from icl_interp.progress import progress
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


def _accuracy(result: Capture) -> float:
    """The model's own (last-layer) accuracy."""
    return float(layer_accuracy(result.layer_label_logits, result.labels)[-1])


def source_vectors(
    model: Any, source: PromptSet, n_queries: int, *, mask: str, batch_size: int = 8
) -> Float[Tensor, "query layer d_model"]:
    """Per test query i, the last-position residual of every block for ``source``'s
    demonstrations + its dummy query (i + 1) mod the source's query count (one ``capture``:
    the demonstrations' keys/values are computed once and reused)."""
    dummies = [(index + 1) % source.n_examples for index in range(n_queries)]
    unique = sorted(set(dummies))
    result = capture(
        model, source.prefix_ids, [source.query_ids[j] for j in unique], source.labels[unique],
        source.label_token_ids, mask=mask, batch_size=batch_size, desc=f"task vectors {mask}",
    )  # fmt: skip
    row = {j: position for position, j in enumerate(unique)}
    return result.resid[[row[j] for j in dummies]]


def task_vector_accuracy(
    model: Any,
    prompts: PromptSet,
    *,
    mask: str,
    sources: Mapping[str, PromptSet],
    batch_size: int = 8,
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
    labels, label_ids = prompts.labels, prompts.label_token_ids
    n, n_layers = prompts.n_examples, model.cfg.n_layers
    bos = torch.tensor([prompts.bos_id], dtype=torch.long)
    options: dict[str, Any] = {"batch_size": batch_size, "desc": f"zero-shot / ICL {mask}"}
    accuracy: dict[tuple[str, int | None], float] = {
        ("zero_shot", None): _accuracy(
            capture(model, bos, prompts.query_ids, labels, label_ids, mask="causal", **options)
        ),
        ("icl", None): _accuracy(
            capture(model, prompts.prefix_ids, prompts.query_ids, labels, label_ids, mask=mask,
                    **options)
        ),
    }  # fmt: skip
    vectors = {
        name: source_vectors(model, s, n, mask=mask, batch_size=batch_size)
        for name, s in sources.items()
    }
    keys = [(name, layer) for name in sources for layer in range(n_layers)]
    correct = dict.fromkeys(keys, 0)
    for index in progress(range(n), desc=f"patched task vectors {mask}", unit="example"):
        values = torch.stack([vectors[name][index, layer] for name, layer in keys])
        logits = patched_last_logits(
            model, prompts.zsl_ids(index).to(device), [layer for _, layer in keys], values
        )[:, label_ids.to(device)]
        hits = (logits.argmax(dim=-1).cpu() == labels[index]).tolist()
        for key, hit in zip(keys, hits, strict=True):
            correct[key] += int(hit)
    accuracy.update({key: count / n for key, count in correct.items()})
    order: list[tuple[str, int | None]] = [("zero_shot", None), ("icl", None), *keys]
    return [
        {"mask": mask, "condition": name, "layer": layer, "value": accuracy[(name, layer)], "n": n}
        for name, layer in order
    ]  # fmt: skip
