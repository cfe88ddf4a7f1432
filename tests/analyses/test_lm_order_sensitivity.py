"""analyses/lm_order_sensitivity.py through its ``_main(argv)`` on a tiny model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analyses import lm_order_sensitivity


def test_lm_order_sensitivity_driver_on_a_tiny_model(tmp_path: Path) -> None:
    argv = ["--models", "tiny-llama", "--datasets", "mr", "--source", "package", "--k", "3",
            "--n-test", "3", "--seeds", "0", "--n-orders", "3", "--out", str(tmp_path)]  # fmt: skip
    assert lm_order_sensitivity._main(argv) == 0
    table = pd.read_csv(tmp_path / "order_sensitivity.csv")
    assert len(table) == 2 * 3 * 2, "masks x layers x statistics"
    assert (table["value"] >= 0).all() and set(table["statistic"]) == {
        "across_orders",
        "across_sets",
    }
    assert lm_order_sensitivity._main(["--n-orders", "1", "--out", str(tmp_path)]) == 2
    assert lm_order_sensitivity._main(["--methods", "sgd", "--out", str(tmp_path / "x")]) == 2


def test_finetuning_orders_through_the_driver(tmp_path: Path) -> None:
    argv = ["--models", "tiny-llama", "--datasets", "mr", "--source", "package", "--k", "3",
            "--n-test", "3", "--seeds", "0", "--n-orders", "3", "--methods", "icl", "gd",
            "lcgd", "--lr", "0.1", "--masks", "causal", "--out", str(tmp_path)]  # fmt: skip
    assert lm_order_sensitivity._main(argv) == 0
    table = pd.read_csv(tmp_path / "order_sensitivity.csv")
    assert set(zip(table["method"], table["mask"], strict=True)) == {
        ("icl", "causal"),
        ("gd", "causal"),
        ("lcgd", "causal"),
    }
    assert len(table) == 3 * 3 * 2, "(ICL causal, GD, LCGD) x layers x statistics"
    assert (table.loc[table["method"] != "icl", "lr"] == 0.1).all()


def test_chosen_lrs_come_from_the_packaged_table_and_a_missing_one_is_one_line(
    tmp_path: Path,
) -> None:
    assert lm_order_sensitivity.finetune_lr("chosen", "smollm2-135m", "mr", "lcgd") == 1e-4
    assert lm_order_sensitivity.finetune_lr(3e-3, "any", "mr", "gd") == 3e-3
    argv = ["--models", "tiny-llama", "--datasets", "mr", "--source", "package", "--k", "3",
            "--n-test", "3", "--seeds", "0", "--n-orders", "2", "--methods", "gd",
            "--lr", "chosen", "--out", str(tmp_path / "chosen")]  # fmt: skip
    assert lm_order_sensitivity._main(argv) == 2  # tiny-llama has no chosen lr
    assert not (tmp_path / "chosen").exists(), "refused before anything is written"
    assert lm_order_sensitivity._main([*argv[:-2], "--lr", "fast", "--out", str(tmp_path)]) == 2
