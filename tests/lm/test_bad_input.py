"""compare and layers: every user mistake is one line on stderr and exit 2, and a run that
fails leaves its --out folder as it was (nothing is written before validation passes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from icl_interp.cli import main

COMPARE_MISTAKES = [
    ["--bogus"], ["--seeds", "0", "0"], ["--seeds", "-1"], ["--seeds", "abc"],
    ["--masks", "bidirectional"], ["--masks", "causal", "causal"], ["--methods", "adam"],
    ["--metrics", "simaoo"], ["--datasets", "nope"], ["--n-test", "0"], ["--k", "0"],
    ["--lr", "-1"], ["--lr", "inf"], ["--lr", "nan"], ["--lr", "0.1", "--lr-grid", "0.1"],
    ["--lr-grid", "0"], ["--n-val", "0"], ["--params", "qk"], ["--finetune-dtype", "float16"],
    ["--max-len", "1"], ["--batch-size", "0"], ["--bootstrap", "-1"],
    ["--heatmap-examples", "-1"], ["--source", "ftp"],
]  # fmt: skip
LAYERS_MISTAKES = [
    ["--bogus"], ["--n-test", "0"], ["--k", "-1"], ["--seed", "-3"], ["--masks", "nope"],
    ["--masks", "causal", "causal"], ["--limit", "0"], ["--threads", "0"], ["--batch-size", "0"],
    ["--dataset", "nope"],
]  # fmt: skip
TINY = ["--source", "package", "--n-test", "2", "--k", "2"]
RUN_MISTAKES = [
    ["compare", "--device", "cuda", "--models", "tiny-gemma3", *TINY],
    ["compare", "--models", "/nonexistent/model", *TINY],
    ["compare", "--models", "tiny-nope", *TINY],
    ["compare", "--data-dir", "/nonexistent", "--models", "tiny-gemma3", "--k", "2"],
    ["layers", "--model", "tiny-nope", *TINY],
    ["layers", "--device", "cuda", "--model", "tiny-gemma3", *TINY],
]


def one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err, err


@pytest.mark.parametrize("argv", COMPARE_MISTAKES, ids=" ".join)
def test_compare_option_mistakes(argv, capsys, tmp_path: Path) -> None:
    one_line_exit_2(capsys, ["compare", "--out", str(tmp_path / "out"), *argv])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", LAYERS_MISTAKES, ids=" ".join)
def test_layers_option_mistakes(argv, capsys, tmp_path: Path) -> None:
    one_line_exit_2(capsys, ["layers", "--out", str(tmp_path / "out"), *argv])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", RUN_MISTAKES, ids=" ".join)
def test_mistakes_found_when_running_leave_no_folder(argv, capsys, tmp_path: Path) -> None:
    one_line_exit_2(capsys, [*argv, "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["compare", "layers"])
def test_out_that_is_a_file_or_under_one(command, capsys, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("mine")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        one_line_exit_2(capsys, [command, "--out", str(out)])
    assert (tmp_path / "file").read_text() == "mine"
