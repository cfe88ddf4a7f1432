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
