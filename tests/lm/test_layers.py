"""``icl-interp layers``: the accuracy metric by hand, and an end-to-end run on a tiny model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from icl_interp.cli import main as cli_main
from icl_interp.errors import UserError
from icl_interp.lm.layers import LayerAccuracyConfig
from icl_interp.lm.metrics.accuracy import layer_accuracy
from tests.helpers import SHARED_DATA, assert_close


def test_layer_accuracy_by_hand() -> None:
    logits = torch.tensor(
        [
            [[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]],  # layer 0 -> 0, layer 1 -> 1
            [[0.0, 0.0, 5.0], [1.0, 0.0, 0.0]],  # layer 0 -> 2, layer 1 -> 0
            [[1.0, 1.0, 0.0], [0.0, 0.0, 2.0]],  # tie -> 0, layer 1 -> 2
            [[0.0, 4.0, 0.0], [0.0, 4.0, 0.0]],  # 1, 1
        ]
    )
    labels = torch.tensor([0, 0, 2, 1])
    assert_close(layer_accuracy(logits, labels), torch.tensor([0.5, 0.75]), atol=0.0, what="acc")


def test_config_validation() -> None:
    bad_values = ({"k": -1}, {"n_test": 0}, {"limit": 0}, {"batch_size": 0}, {"threads": 0},
                  {"workers": 0}, {"backend": "mpi"})  # fmt: skip
    for bad in bad_values:
        with pytest.raises(UserError):
            LayerAccuracyConfig(**bad)


def _args(out, *extra: str) -> list[str]:
    return ["layers", "--model", "tiny-gemma3", "--k", "2", "--n-test", "4", "--source", "package",
            "--out", str(out), *extra]  # fmt: skip


def test_layers_end_to_end_and_resume(tmp_path, capsys) -> None:
    out = tmp_path / "layers"
    assert cli_main(_args(out)) == 0
    table = pd.read_csv(out / "layer_accuracy.csv")
    assert list(table.columns) == [
        "model", "dataset", "seed", "k", "condition", "layer", "metric", "value", "n_examples",
    ]  # fmt: skip
    assert len(table) == 3 * 3
    assert set(table["condition"]) == {"zsl", "icl_causal", "icl_prefix"}
    assert table["value"].between(0, 1).all() and (table["metric"] == "accuracy").all()
    assert set(table.loc[table["condition"] == "zsl", "k"]) == {0}
    assert set(table.loc[table["condition"] != "zsl", "k"]) == {2}
    for name in ("config.json", "layer_accuracy.png", "layer_accuracy.pdf"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["k"] == 2 and config["k_used"] == 2
    logits = torch.load(out / "logits_icl_prefix.pt")
    assert logits.shape == (4, 3, 2)

    first = (out / "layer_accuracy.csv").read_text()
    (out / "logits_zsl.pt").unlink()
    assert cli_main(_args(out, "--threads", "1")) == 0
    assert (out / "layer_accuracy.csv").read_text() == first

    assert cli_main(_args(out, "--seed", "1")) == 2
    assert "other settings (seed: 0 -> 1)" in capsys.readouterr().err
    assert cli_main(_args(tmp_path / "bad", "--n-test", "0")) == 2


def test_layers_on_two_processes_writes_the_serial_runs_files(tmp_path) -> None:
    """The conditions are run-kernel units: 2 local processes (each loading its own model)
    give the serial run's logits and table byte for byte, and resume the serial folder."""
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert cli_main(_args(serial, "--threads", "1")) == 0
    assert cli_main(_args(parallel, "--workers", "2")) == 0
    for name in (
        "layer_accuracy.csv",
        "logits_zsl.pt",
        "logits_icl_causal.pt",
        "logits_icl_prefix.pt",
    ):
        assert (serial / name).read_bytes() == (parallel / name).read_bytes(), name
    (serial / "logits_icl_prefix.pt").unlink()
    assert cli_main(_args(serial, "--backend", "processes", "--workers", "2")) == 0
    assert (serial / "layer_accuracy.csv").read_bytes() == (
        parallel / "layer_accuracy.csv"
    ).read_bytes()


@pytest.mark.skipif(not (SHARED_DATA / "cb").is_dir(), reason="needs ../shared/data (CB)")
def test_layers_on_cb_uses_the_56_evaluation_examples_with_the_default_n_test(tmp_path) -> None:
    out = tmp_path / "cb"
    args = ["layers", "--model", "tiny-gemma3", "--dataset", "cb", "--k", "2", "--masks", "causal",
            "--data-dir", str(SHARED_DATA), "--out", str(out)]  # fmt: skip
    assert cli_main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["prompts"]["n_test"] == 56 - 0 or config["prompts"]["n_test"] >= 50
    assert any("instead of 200" in note for note in config["prompts"]["notes"])
