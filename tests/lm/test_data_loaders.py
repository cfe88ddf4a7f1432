"""File formats and their traps: encodings, blank lines, CSV quoting, unlabelled splits, malformed lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icl_interp.errors import UserError
from icl_interp.lm.data import Example, PooledFiles, clean_text, heldout_split
from icl_interp.lm.data.loaders import (
    coarse_label,
    int_label,
    read_csv,
    read_jsonl,
    read_label_prefixed,
    read_sentences,
)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_latin1_and_utf8_lines_decode_to_the_same_text(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mixed.txt",
        "caf\u00e9 latin\n".encode("latin-1") + "caf\u00e9 utf8\n".encode() + b"plain\n",
    )
    texts = [ex.fields["text"] for ex in read_sentences(path, label=1)]
    assert texts == ["caf\u00e9 latin", "caf\u00e9 utf8", "plain"]


def test_blank_and_whitespace_only_lines_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "s.txt", b"one \n\n   \n\t\r\ntwo\r\n  three  four \n\n")
    examples = read_sentences(path, label=0)
    assert [ex.fields["text"] for ex in examples] == ["one", "two", "three four"]
    assert {ex.label for ex in examples} == {0}


def test_label_prefixed_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "sst.txt", b"1 a fine film .\n\n0 a  dull\tone\n")
    examples = read_label_prefixed(path, int_label(2))
    assert examples == [Example({"text": "a fine film ."}, 1), Example({"text": "a dull one"}, 0)]


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (b"1 ok\n7 label too large\n", 2, "0..1"),
        (b"1 ok\n\nx not a label\n", 3, "integer label"),
        (b"1 ok\n1\n", 2, "expected 'LABEL text'"),
    ],
)
def test_malformed_label_prefixed_line_names_file_and_line(
    tmp_path: Path, content: bytes, line: int, message: str
) -> None:
    path = write(tmp_path / "bad.txt", content)
    with pytest.raises(UserError, match=message) as info:
        read_label_prefixed(path, int_label(2))
    assert f"{path}:{line}:" in str(info.value)


def test_trec_coarse_labels(tmp_path: Path) -> None:
    path = write(tmp_path / "trec.txt", b"NUM:dist How far ?\nHUM:ind Who ?\nXYZ:foo Bad ?\n")
    parse = coarse_label(("HUM", "NUM"))
    with pytest.raises(UserError, match=f"{path}:3:.*HUM, NUM"):
        read_label_prefixed(path, parse)
    path.write_bytes(b"NUM:dist How far ?\nHUM:ind Who ?\n")
    assert [ex.label for ex in read_label_prefixed(path, parse)] == [1, 0]


AG_HEADER = b"Class Index,Title,Description\n"


def read_ag(path: Path) -> list[Example]:
    return read_csv(
        path,
        text_columns={"text": ("Title", "Description")},
        label_column="Class Index",
        label_values={"1": 0, "2": 1},
    )


def test_csv_quoted_fields_with_commas_quotes_and_newlines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ag.csv",
        AG_HEADER
        + b'2,"Title, with comma","He said ""hi"", then\nleft"\n'
        + b"\n"
        + b"1,Plain,text\n",
    )
    examples = read_ag(path)
    assert examples == [
        Example({"text": 'Title, with comma He said "hi", then left'}, 1),
        Example({"text": "Plain text"}, 0),
    ]


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        (b"1,a,b\n1,a,b,c\n", 3, "expected 3 CSV fields, got 4"),
        (b"1,a,b\n\n5,a,b\n", 4, "label '5' not one of 1, 2"),
        (b'1,a,b\n2,"x"y,z\n', 3, "malformed CSV row"),
    ],
)
def test_malformed_csv_row_names_file_and_line(
    tmp_path: Path, rows: bytes, line: int, message: str
) -> None:
    path = write(tmp_path / "ag.csv", AG_HEADER + rows)
    with pytest.raises(UserError, match=message) as info:
        read_ag(path)
    assert f"{path}:{line}:" in str(info.value)


def test_csv_missing_column_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "ag.csv", b"Class Index,Title\n1,a\n")
    with pytest.raises(UserError, match=f"{path}:1: .*lacks column.*Description"):
        read_ag(path)


def test_pooled_source_rereads_a_changed_file(tmp_path: Path) -> None:
    (tmp_path / "toy").mkdir()
    source = PooledFiles("toy", {"ag.csv": read_ag}, test_fraction=0.5)
    write(tmp_path / "toy" / "ag.csv", AG_HEADER + b"1,a,b\n2,c,d\n")
    assert len(source.load(tmp_path, "train") + source.load(tmp_path, "test")) == 2
    write(tmp_path / "toy" / "ag.csv", AG_HEADER + b"1,a,b\n2,c,d\n2,e,f\n1,g,h\n")
    assert len(source.load(tmp_path, "train") + source.load(tmp_path, "test")) == 4


CB_LABELS = ("entailment", "contradiction", "neutral")


def read_cb(path: Path) -> list[Example]:
    return read_jsonl(
        path, field_keys={"premise": "premise", "hypothesis": "hypothesis"}, label_names=CB_LABELS
    )


def jsonl(*records: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def test_jsonl_labels_and_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path / "cb.jsonl",
        jsonl({"premise": "P\nq", "hypothesis": "h", "label": "neutral", "idx": 0}) + b"\n  \n",
    )
    assert read_cb(path) == [Example({"premise": "P q", "hypothesis": "h"}, 2)]


def test_unlabelled_jsonl_split_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path / "test.jsonl",
        jsonl(
            {"premise": "p", "hypothesis": "h", "label": "entailment"},
            {"premise": "p", "hypothesis": "h"},
        ),
    )
    with pytest.raises(
        UserError, match=f"{path}:2: no 'label' key: this file is an unlabelled split"
    ):
        read_cb(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"premise": "p", "hypothesis": "h", "label": "maybe"}\n', "label 'maybe' not one of"),
        (b'{"premise": "p", "label": "neutral"}\n', "missing or non-string key 'hypothesis'"),
        (b'{"premise": "p", "hypothesis": \n', "invalid JSON"),
        (b"[1, 2]\n", "expected a JSON object"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path: Path, line: bytes, message: str) -> None:
    path = write(
        tmp_path / "cb.jsonl", jsonl({"premise": "p", "hypothesis": "h", "label": "neutral"}) + line
    )
    with pytest.raises(UserError, match=message) as info:
        read_cb(path)
    assert f"{path}:2:" in str(info.value)


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data file not found"):
        read_sentences(tmp_path / "nope.txt", label=0)


def test_clean_text_removes_html_breaks_and_whitespace_runs() -> None:
    assert clean_text("  a<br /><br />b\tc\n d  ") == "a b c d"


def test_heldout_split_is_fixed_stratified_and_partitions_the_pool() -> None:
    pool = [Example({"text": f"s{i}"}, int(i % 10 == 0)) for i in range(100)]
    train = heldout_split(pool, "train", test_fraction=0.2, key="toy")
    test = heldout_split(pool, "test", test_fraction=0.2, key="toy")
    assert set(train) | set(test) == set(pool) and not set(train) & set(test)
    assert sum(ex.label for ex in test) == 2 and len(test) == 20
    assert test == heldout_split(pool, "test", test_fraction=0.2, key="toy")
    assert test != heldout_split(pool, "test", test_fraction=0.2, key="other")
    assert [pool.index(ex) for ex in test] == sorted(pool.index(ex) for ex in test)


def test_heldout_split_keeps_repeated_inputs_on_one_side() -> None:
    pool = [Example({"text": f"s{i % 30}"}, int(i % 30 < 10)) for i in range(90)]
    test = heldout_split(pool, "test", test_fraction=0.2, key="dups")
    train = heldout_split(pool, "train", test_fraction=0.2, key="dups")
    assert len(test) == 3 * 6 and len(train) == 3 * 24
    assert not {ex.content_key for ex in test} & {ex.content_key for ex in train}


def test_examples_compare_and_hash_by_content() -> None:
    a = Example({"text": "x", "y": "z"}, 1)
    b = Example({"y": "z", "text": "x"}, 1)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Example({"text": "x", "y": "z"}, 0)
    with pytest.raises(ValueError):
        Example({"text": "x"}, -1)
