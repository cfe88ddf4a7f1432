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
prompt set, queries batched); patching goes through :mod:`icl_interp.lm.patching`.

Cost. A forward of T tokens costs about 2 N T + 4 L T^2 d + 2 d V T FLOPs (N non-embedding
parameters, L layers, width d, vocabulary V; the last term because every position's logits
are computed). Here every patched forward is a full zero-shot forward of the T_q query tokens:
n_queries x L x (number of sources) of them; each source prompt set costs one forward of its
k-shot prefix plus its dummy queries' tokens. The minimum a patched forward needs is the last
position above layer l, with the zero-shot keys/values below it reused (they do not depend on
the patch): about 2 N (L - l - 1) / L + 4 (L - l - 1) T_q d + 2 d C FLOPs (C label tokens);
not exploited yet.
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
from icl_interp.lm.patching import Patch, run_patched
from icl_interp.lm.record import Capture
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
    correct = {(name, layer): 0 for name in sources for layer in range(n_layers)}
    for index in range(n):
        zero_shot = prompts.zsl_ids(index)[None].to(device)
        for name, vector in vectors.items():
            for layer in range(n_layers):
                patch = Patch(layer, -1, vector[index, layer][None])
                logits = run_patched(model, zero_shot, [patch])[0, -1, label_ids.to(device)]
                correct[(name, layer)] += int(int(logits.argmax()) == int(labels[index]))
    accuracy.update({key: count / n for key, count in correct.items()})
    keys: list[tuple[str, int | None]] = [("zero_shot", None), ("icl", None)]
    keys += [(name, layer) for name in sources for layer in range(n_layers)]
    return [
        {"mask": mask, "condition": name, "layer": layer, "value": accuracy[(name, layer)], "n": n}
        for name, layer in keys
    ]  # fmt: skip
