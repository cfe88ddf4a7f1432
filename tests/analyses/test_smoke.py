"""Every analyses script runs through its ``_main(argv)`` on a tiny model (lsa and synthetic
drivers are exercised in tests/lsa and tests/synthetic)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from analyses import bench_prefix_reuse, compare_icl_gd, layer_accuracy

TINY_DATA = ["--source", "package"]


def test_compare_icl_gd_driver(tmp_path: Path) -> None:
    argv = ["--models", "tiny-gemma3", "--datasets", "mr", *TINY_DATA, "--n-test", "2", "--k", "2",
            "--methods", "gd", "--masks", "causal", "--no-figures", "--out", str(tmp_path)]  # fmt: skip
    assert compare_icl_gd._main(argv) == 0
    assert set(pd.read_csv(tmp_path / "metrics.csv")["data"]) == {"mr"}


def test_layer_accuracy_driver(tmp_path: Path) -> None:
    argv = ["--model", "tiny-gemma3", "--ks", "2", "--seeds", "0", "1", "--n-test", "3",
            *TINY_DATA, "--out", str(tmp_path)]  # fmt: skip
    assert layer_accuracy._main(argv) == 0
    table = pd.read_csv(tmp_path / "layer_accuracy_all.csv")
    assert set(table["seed"]) == {0, 1} and (tmp_path / "layer_accuracy.png").exists()


def test_bench_prefix_reuse_driver(tmp_path: Path) -> None:
    argv = ["--model", "tiny-gemma3", "--k", "2", "--n", "3", "--batch-size", "2", *TINY_DATA,
            "--out", str(tmp_path)]  # fmt: skip
    assert bench_prefix_reuse._main(argv) == 0
    table = pd.read_csv(tmp_path / "bench_prefix_reuse.csv")
    assert (table["max_abs_diff_vs_full"] < 1e-4).all()


@pytest.mark.parametrize("module", [bench_prefix_reuse, layer_accuracy])
def test_bad_options_are_one_line_errors(module, capsys, tmp_path: Path) -> None:
    assert module._main(["--bogus", "--out", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_prompt_attention_figures_driver(tmp_path: Path) -> None:
    from analyses import prompt_attention_figures
    from icl_interp.lm.attention import attention_table, prompt_attention
    from icl_interp.lm.conditions import conditions
    from icl_interp.lm.data import make_prompts
    from icl_interp.lm.models import tiny_random_model
    from icl_interp.results import write_csv

    model = tiny_random_model("gemma3")
    _, prompts, _ = make_prompts(model.tokenizer, "mr", n_test=1, seed=0, k=2, source="package")
    frames = [prompt_attention(model, prompts, condition, 1) for condition in conditions()]
    write_csv(
        tmp_path / "prompt_attention.csv", attention_table(frames, model="tiny", data="mr", seed=0)
    )
    assert prompt_attention_figures._main([str(tmp_path), "--layer", "1"]) == 0
    assert (tmp_path / "figures" / "prompt_attention_heads_layer1__tiny__mr__seed0.png").exists()
    assert prompt_attention_figures._main([str(tmp_path), "--layer", "7"]) == 2


def test_icl_gd_report_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyses import icl_gd_report
    from icl_interp.lm import lr_rule

    monkeypatch.setattr(lr_rule, "CHOSEN_LRS", tmp_path / "chosen_lrs.csv")
    doc = tmp_path / "docs" / "icl_vs_gd.md"
    argv = ["--model", "tiny-gemma3", "--datasets", "mr", "--seeds", "0", "1", "--n-test", "3",
            "--lr-grid", "1e-3", "1e-2", "--out", str(tmp_path / "runs"), "--doc", str(doc),
            "--update-chosen-lrs", "--", *TINY_DATA, "--k", "2", "--bootstrap", "20",
            "--heatmap-examples", "0"]  # fmt: skip
    assert icl_gd_report._main(argv) == 0
    text = doc.read_text()
    assert "## tiny-gemma3, ICL mask causal: SimAOU" in text and "LCGD closer" in text
    chosen = pd.read_csv(tmp_path / "chosen_lrs.csv")
    assert set(chosen["finetuning"]) == {"gd", "lcgd", "untrained gd"}
    assert set(chosen["lr"]) <= {1e-3, 1e-2}
    assert (doc.parent / "figures" / "icl_vs_gd" / "layer_curves__tiny-gemma3.png").exists()
    cell = tmp_path / "runs" / "tiny-gemma3" / "mr"
    chosen_here = pd.read_csv(cell / "chosen_lrs.csv").set_index("finetuning")["lr"].to_dict()
    unit = json.loads((cell / "seeds" / "units" / "tiny-gemma3__mr__seed1.json").read_text())
    assert unit["lr"] == chosen_here and unit["lr_source"] == "chosen (chosen_lrs.csv)"
    swept = json.loads((cell / "sweep" / "units" / "tiny-gemma3__mr__seed0.json").read_text())
    assert swept["lr"] == chosen_here  # one seed's sweep: its choice is the table
    assert "| tiny-gemma3 | mr |" in text and "Not finished" not in text
    stopped = tmp_path / "runs" / "tiny-gemma3" / "stopped"  # a cell stopped after its sweep
    shutil.copytree(cell / "sweep", stopped / "sweep")
    report_only = ["--report-only", "--seeds", "0", "1", "--out", str(tmp_path / "runs")]
    assert icl_gd_report._main([*report_only, "--doc", str(doc)]) == 0
    line = "\nNot finished, left out of every table: tiny-gemma3/stopped (seeds done: 0 of 0 1).\n"
    assert doc.read_text().replace(line, "") == text  # the page is otherwise unchanged
    archive = doc.parent / "icl_vs_gd" / "cells" / "tiny-gemma3" / "mr"
    kept = {"metrics.csv.gz", "bootstrap.csv.gz", "lr_sweep.csv", "wall_times.csv", "commands.txt"}
    assert {p.name for p in archive.iterdir()} == kept  # the command is sys.argv: pytest's here
    figure = doc.parent / "figures" / "icl_vs_gd" / "layer_curves__tiny-gemma3.png"
    drawn = figure.read_bytes()
    shutil.rmtree(tmp_path / "runs")  # a fresh clone: the page comes back from the archive
    assert icl_gd_report._main([*report_only, "--doc", str(doc)]) == 0
    assert doc.read_text() == text and figure.read_bytes() == drawn
    three_seeds = [*report_only[:1], "--seeds", "0", "1", "2", *report_only[4:], "--doc", str(doc)]
    assert icl_gd_report._main(three_seeds) == 2
