"""Every analyses script runs through its ``_main(argv)`` on a tiny model (lsa and synthetic
drivers are exercised in tests/lsa and tests/synthetic)."""

from __future__ import annotations

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
