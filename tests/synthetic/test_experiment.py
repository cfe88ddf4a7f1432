import json

import pandas as pd
import pytest

from analyses.synthetic_table1 import _main
from icl_interp.cli import main
from icl_interp.synthetic.experiment import ExperimentConfig, table1_markdown


def test_driver_writes_table_figure_config_and_resumes(tmp_path) -> None:
    argv = [
        "--preset",
        "tiny",
        "--tasks",
        "linear",
        "--sharing",
        "SL",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
    ]
    assert _main(argv) == 0
    for name in (
        "config.json",
        "results.csv",
        "table1.csv",
        "table1.md",
        "figure3.png",
        "figure3.pdf",
    ):
        assert (tmp_path / name).exists(), name
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["config"]["preset"] == "tiny"
    assert config["train_configs"]["linear-prefix-SL"]["epochs"] == 1
    results = pd.read_csv(tmp_path / "results.csv")
    assert set(results["mask"]) == {"prefix", "causal"}
    assert len(results) == 2 * (1 + 2)
    markdown = (tmp_path / "table1.md").read_text()
    assert "| PrefixLM-SL |" in markdown and "| CausalLM-SL |" in markdown and "UL" not in markdown
    eval_file = tmp_path / "runs" / "linear-prefix-SL" / "eval.csv"
    stamp = eval_file.stat().st_mtime_ns
    assert _main(argv) == 0
    assert eval_file.stat().st_mtime_ns == stamp, "a finished run was retrained"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "results.csv"), results)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "sorting"], "valid tasks"),
        (["--masks", "bidirectional"], "valid mask kinds"),
        (["--sharing", "XL"], "valid"),
        (["--epochs", "-1"], "epochs"),
        (["--preset", "huge"], "valid presets"),
        (["--max-minutes", "0"], "max-minutes"),
        (["--cuda-graph"], "--device cuda"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, message) -> None:
    assert main(["synthetic", "--preset", "tiny", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_table1_markdown_layout() -> None:
    table = pd.DataFrame(
        {
            "variant": ["PrefixLM-SL", "CausalLM-SL", "PrefixLM-SL"],
            "task": ["linear", "linear", "classification"],
            "value": [0.0086, 0.19, 24.1],
            "se": [0.0012, float("nan"), 1.25],
        }
    )
    lines = table1_markdown(table).splitlines()
    assert lines[0] == "| variant | LR | MC |"
    assert lines[2] == "| PrefixLM-SL | 8.6e-03 ± 1.2e-03 | 24.1 ± 1.2 |"
    assert lines[3] == "| CausalLM-SL | 1.9e-01 | - |"


def test_preset_overrides_reach_the_train_config() -> None:
    cfg = ExperimentConfig(
        preset="paper", overrides={"epochs": 3, "model": {"n_layers": 5}}, seed=4
    )
    train_cfg = cfg.train_config("classification", "causal", "UL")
    assert (train_cfg.epochs, train_cfg.model.n_layers, train_cfg.model.d_model) == (3, 5, 128)
    assert (train_cfg.model.d_y, train_cfg.model.mask_kind, train_cfg.model.shared_layers) == (
        3,
        "causal",
        False,
    )
    assert (train_cfg.seed, train_cfg.n_train, train_cfg.lr) == (4, 64_000, 1e-4)
