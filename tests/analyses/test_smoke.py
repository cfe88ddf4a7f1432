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


def test_icl_gd_report_driver(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from analyses import icl_gd_report

    archive = tmp_path / "docs" / "icl_vs_gd" / "units"
    doc = tmp_path / "docs" / "icl_vs_gd.md"
    doc.parent.mkdir(parents=True)
    (doc.parent / "analysis_plan.md").write_text("plan\n")
    argv = ["--models", "tiny-gemma3", "--datasets", "mr", "--seeds", "0", "1", "--full-draws", "1",
            "--lr-grid", "1e-3", "1e-2", "--out", str(tmp_path / "runs"), "--archive", str(archive),
            "--", *TINY_DATA, "--k", "2", "--n-test", "3"]  # fmt: skip
    assert icl_gd_report._main(argv) == 0
    cell = archive / "tiny-gemma3" / "mr"
    assert {p.name for p in cell.iterdir()} == {
        "chosen_lrs.csv", "seed0.json", "seed0.metrics.csv.gz", "seed0.lr_sweep.csv",
        "seed0.lr_sensitivity.csv.gz", "seed1.json", "seed1.metrics.csv.gz",
    }  # fmt: skip
    chosen = pd.read_csv(cell / "chosen_lrs.csv").set_index("finetuning")["lr"].to_dict()
    assert set(chosen) == {"gd", "lcgd", "untrained gd"}
    assert json.loads((cell / "seed1.json").read_text())["lr"] == chosen
    assert json.loads((cell / "seed0.json").read_text())["lr"] == chosen
    sweep = pd.read_csv(cell / "seed0.lr_sweep.csv")
    assert len(sweep) >= 6 and {"val_label_loss", "update_norm", "icl_update_norm_causal"} <= set(
        sweep
    )
    draw1 = pd.read_csv(cell / "seed1.metrics.csv.gz")
    assert "untrained" not in set(draw1["method"]), "the controls subset runs on draw 0 only"
    assert {"mismatched_lcgd", "icl_vs_icl"} <= set(draw1["method"])
    sensitivity = pd.read_csv(cell / "seed0.lr_sensitivity.csv.gz")
    assert set(sensitivity["lr"]) == set(sweep.loc[sweep["finetuning"] == "gd", "lr"]) | set(
        sweep.loc[sweep["finetuning"] == "lcgd", "lr"]
    )
    capsys.readouterr()
    assert icl_gd_report._main(argv) == 0  # every unit archived: nothing runs again
    assert "2 of 2 units archived; 0 to run" in capsys.readouterr().out
    report_only = ["--report-only", "--archive", str(archive), "--doc", str(doc)]
    assert icl_gd_report._main(report_only) == 0
    text = doc.read_text()
    assert "## The answer, per model (primary endpoint, causal mask)" in text
    assert "**tiny-gemma3** (data sets: mr; complete draws: 2)" in text
    assert "Fewer than 5 complete draws: no conclusion" in text
    figure = doc.parent / "figures" / "icl_vs_gd" / "layer_curves__tiny-gemma3.png"
    drawn = figure.read_bytes()
    shutil.rmtree(tmp_path / "runs")  # a fresh clone: the page comes back from the archive
    assert icl_gd_report._main(report_only) == 0
    assert doc.read_text() == text and figure.read_bytes() == drawn
    empty = ["--report-only", "--archive", str(tmp_path / "none"), "--doc", str(doc)]
    assert icl_gd_report._main(empty) == 2
