"""Task vectors on tiny models: the rows, and a known answer. At the last block the patched
last position gives the vector's source prompt's output (test_patching), so the task vector's
accuracy there is that of ICL's prediction on the dummy query (the next test query) scored
against this query's label."""

from __future__ import annotations

import pytest
import torch

from icl_interp.errors import UserError
from icl_interp.lm.capture import run_with_mask
from icl_interp.lm.data import Example, build_prompts, get_dataset
from icl_interp.lm.models import tiny_random_model
from icl_interp.lm.task_vectors import rotate_labels, task_vector_accuracy

TEXTS = ["a good film", "a bad movie", "it was great", "boring and dull", "fun story",
         "the worst plot", "very funny", "dull acting", "best movie", "awful story"]  # fmt: skip


def _prompts(model, n_demos: int = 4):
    spec = get_dataset("mr")
    examples = [Example({"text": t}, i % 2) for i, t in enumerate(TEXTS)]
    return spec, build_prompts(model.tokenizer, spec, examples[:n_demos], examples[n_demos:], None)


@pytest.mark.parametrize("arch", ["gemma3", "gpt2"])
@pytest.mark.parametrize("mask", ["causal", "prefix"])
def test_task_vector_rows_and_last_layer_known_answer(arch: str, mask: str) -> None:
    model = tiny_random_model(arch)
    spec, prompts = _prompts(model)
    rotated = rotate_labels(model.tokenizer, spec, prompts)
    assert [e.label for e in rotated.demonstrations] == [1, 0, 1, 0]
    assert not torch.equal(rotated.prefix_ids, prompts.prefix_ids)
    sources = {"task_vector": prompts, "rotated_labels": rotated}
    rows = task_vector_accuracy(model, prompts, mask=mask, sources=sources)
    n_layers, n = model.cfg.n_layers, prompts.n_examples
    assert len(rows) == 2 + 2 * n_layers
    assert all(0.0 <= row["value"] <= 1.0 and row["n"] == n for row in rows)
    value = {(row["condition"], row["layer"]): row["value"] for row in rows}
    n_prefix = len(prompts.prefix_ids)
    with torch.no_grad():
        icl_pred = [
            int(run_with_mask(model, prompts.icl_ids(i)[None], mask=mask, n_prefix=n_prefix)[
                0, -1, prompts.label_token_ids].argmax())
            for i in range(n)
        ]  # fmt: skip
    labels = prompts.labels.tolist()
    assert value[("icl", None)] == sum(p == y for p, y in zip(icl_pred, labels, strict=True)) / n
    expected = sum(icl_pred[(i + 1) % n] == labels[i] for i in range(n)) / n
    assert value[("task_vector", n_layers - 1)] == expected


def test_bad_sources_are_user_errors() -> None:
    model = tiny_random_model("llama")
    _, prompts = _prompts(model)
    with pytest.raises(UserError, match="not a task-vector source"):
        task_vector_accuracy(model, prompts, mask="causal", sources={"icl": prompts})
    with pytest.raises(UserError, match="causal, prefix"):
        task_vector_accuracy(model, prompts, mask="full", sources={})
