import filecmp
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from analyses.synthetic_table1 import _main
from icl_interp.cli import main
from icl_interp.synthetic.config import ExperimentConfig
from icl_interp.synthetic.report import (
    paired_differences,
    paired_interval,
    summarize,
    table1_markdown,
)

TINY = ["--preset", "tiny", "--tasks", "linear", "--sharing", "SL", "--epochs", "1"]
RESULT_FILES = (
    "results.csv",
    "table1.csv",
    "table1.md",
    "paired.csv",
    "figure3.png",
    "figure3.pdf",
)


def test_driver_writes_table_figure_config_and_resumes(tmp_path) -> None:
    argv = [*TINY, "--out", str(tmp_path)]
    assert _main(argv) == 0
    for name in ("config.json", "timings.json", *RESULT_FILES):
        assert (tmp_path / name).exists(), name
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["command"] == "synthetic"
    assert config["config"]["preset"] == "tiny" and config["config"]["seeds"] == [0]
    assert config["train_configs"]["linear-prefix-SL-seed0"]["epochs"] == 1
    results = pd.read_csv(tmp_path / "results.csv")
    assert set(results["mask"]) == {"prefix", "causal"}
    assert len(results) == 2 * (1 + 2 + 2), "model, 2 probes, trivial and least squares per run"
    assert "seconds" not in " ".join(results.columns)
    markdown = (tmp_path / "table1.md").read_text()
    assert "| PrefixLM-SL |" in markdown and "| CausalLM-SL |" in markdown and "UL" not in markdown
    assert markdown.index("PrefixLM-SL") < markdown.index("CausalLM-SL")
    assert "over the held-out sequences of one seed" in markdown
    run_dir = tmp_path / "runs" / "linear-prefix-SL-seed0"
    recorded = json.loads((run_dir / "train_config.json").read_text())
    assert recorded["epochs"] == 1 and recorded["seed"] == 0
    stamp = (run_dir / "eval.csv").stat().st_mtime_ns
    before = {name: (tmp_path / name).read_bytes() for name in RESULT_FILES}
    assert _main(argv) == 0
    assert (run_dir / "eval.csv").stat().st_mtime_ns == stamp, "a finished run was retrained"
    for name in RESULT_FILES:
        assert (tmp_path / name).read_bytes() == before[name], f"{name} changed on a rerun"


def test_same_command_twice_gives_byte_identical_results_and_figures(tmp_path) -> None:
    """Two folders, one trained run by run and one by two worker processes."""
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["synthetic", *TINY, "--seeds", "0", "1", "--out", str(first)]) == 0
    assert (
        main(
            [
                "synthetic",
                *TINY,
                "--seeds",
                "0",
                "1",
                "--workers",
                "2",
                "--threads",
                "1",
                "--out",
                str(second),
            ]
        )
        == 0
    )
    for name in RESULT_FILES:
        assert filecmp.cmp(first / name, second / name, shallow=False), f"{name} differs"


def test_another_seed_trains_its_own_runs_and_reports_them(tmp_path) -> None:
    assert main(["synthetic", *TINY, "--out", str(tmp_path)]) == 0
    seed0 = (tmp_path / "results.csv").read_bytes()
    stamp = (tmp_path / "runs" / "linear-prefix-SL-seed0" / "eval.csv").stat().st_mtime_ns
    assert main(["synthetic", *TINY, "--seed", "1", "--out", str(tmp_path)]) == 0
    results = pd.read_csv(tmp_path / "results.csv")
    assert set(results["seed"]) == {1} and (tmp_path / "results.csv").read_bytes() != seed0
    assert json.loads((tmp_path / "config.json").read_text())["config"]["seeds"] == [1]
    assert (tmp_path / "runs" / "linear-prefix-SL-seed1" / "eval.csv").exists()
    assert (tmp_path / "runs" / "linear-prefix-SL-seed0" / "eval.csv").stat().st_mtime_ns == stamp
    assert main(["synthetic", *TINY, "--seeds", "0", "1", "--out", str(tmp_path)]) == 0
    assert set(pd.read_csv(tmp_path / "results.csv")["seed"]) == {0, 1}


def _snapshot(folder) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--epochs", "2"], "other settings"),
        (["--n-layers", "3"], "other settings"),
        (["--preset", "cpu"], "other settings"),
    ],
)
def test_other_settings_are_refused_before_anything_is_written(
    tmp_path, capsys, change, message
) -> None:
    assert main(["synthetic", *TINY, "--out", str(tmp_path)]) == 0
    before = _snapshot(tmp_path)
    capsys.readouterr()
    argv = [*TINY, "--out", str(tmp_path)]
    argv = [a for a in argv]
    flag = change[0]
    if flag in argv:
        argv[argv.index(flag) + 1] = change[1]
    else:
        argv += change
    assert main(["synthetic", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert _snapshot(tmp_path) == before


def test_a_run_folder_made_with_another_config_is_refused(tmp_path, capsys) -> None:
    assert main(["synthetic", *TINY, "--out", str(tmp_path)]) == 0
    recorded = tmp_path / "runs" / "linear-causal-SL-seed0" / "train_config.json"
    values = json.loads(recorded.read_text())
    recorded.write_text(json.dumps({**values, "lr": 0.5}))
    before = _snapshot(tmp_path)
    capsys.readouterr()
    assert main(["synthetic", *TINY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "linear-causal-SL-seed0 was trained with another config" in err and "\n" not in err
    assert _snapshot(tmp_path) == before


def test_a_folder_of_another_program_is_refused(tmp_path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["synthetic", *TINY, "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


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
        (["--seeds", "0", "1", "0"], "repeated value(s) 0"),
        (["--seed", "-1"], "a seed must be in 0..2**63-1"),
        (["--workers", "0"], "--workers must be >= 1"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, message) -> None:
    out = tmp_path / "out"
    try:
        code = main(["synthetic", "--preset", "tiny", "--out", str(out), *args])
    except SystemExit as parser_exit:  # argparse's own checks exit (code 2, one line)
        code = parser_exit.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists(), "a refused command wrote into --out"


def _results(values: dict[tuple[str, str, int], float], trivial: float = 5.0) -> pd.DataFrame:
    rows = []
    for (task, mask, seed), value in values.items():
        metric = "query error %" if task == "classification" else "query MSE"
        base = {"task": task, "mask": mask, "sharing": "SL", "seed": seed, "metric": metric}
        rows.append({**base, "readout": "model", "layer": 2, "value": value, "se": 0.1})
        rows.append({**base, "readout": "trivial", "layer": 0, "value": trivial, "se": 0.2})
    return pd.DataFrame(rows)


def test_paired_interval_by_hand() -> None:
    mean, low, high = paired_interval(np.array([1.0, 2.0, 3.0]))
    half = 4.3027 * 1.0 / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half), abs=1e-3)
    mean, low, high = paired_interval(np.array([0.5]))
    assert mean == 0.5 and math.isnan(low) and math.isnan(high)


def test_summary_and_paired_differences_over_seeds() -> None:
    results = _results(
        {
            ("linear", "prefix", 0): 1.0,
            ("linear", "prefix", 1): 2.0,
            ("linear", "prefix", 2): 3.0,
            ("linear", "causal", 0): 2.0,
            ("linear", "causal", 1): 4.0,
            ("linear", "causal", 2): 6.0,
        }
    )
    summary = summarize(results).set_index("variant")
    assert summary.loc["PrefixLM-SL", "mean"] == pytest.approx(2.0)
    assert summary.loc["PrefixLM-SL", "se"] == pytest.approx(1.0 / math.sqrt(3))
    assert summary.loc["PrefixLM-SL", "se_over"] == "seeds"
    assert summary.loc["trivial (0 / best class)", "mean"] == 5.0
    assert summary.loc["trivial (0 / best class)", "n_seeds"] == 3
    diff = paired_differences(results).iloc[0]
    # prefix - causal per seed: -1, -2, -3 -> mean -2, sd 1
    half = 4.3027 / math.sqrt(3)
    assert (diff["mean_diff"], diff["ci_low"], diff["ci_high"]) == pytest.approx(
        (-2.0, -2.0 - half, -2.0 + half), abs=1e-3
    )
    assert not diff["excludes_zero"]
    lines = table1_markdown(summarize(results), paired_differences(results)).splitlines()
    assert lines[0] == "| variant | LR |"
    assert lines[2] == "| PrefixLM-SL | 2.0e+00 ± 5.8e-01 |"
    assert lines[3] == "| CausalLM-SL | 4.0e+00 ± 1.2e+00 |"
    assert lines[4] == "| trivial (0 / best class) | 5.0e+00 ± 0.0e+00 |"
    assert lines[5] == "| PrefixLM − CausalLM, SL | -2.0e+00 [-4.5e+00, +4.8e-01] |"
    assert "over seeds (n = 3 seeds per cell)" in lines[-1]


def test_table1_markdown_with_one_seed_and_a_missing_cell() -> None:
    results = _results(
        {
            ("linear", "prefix", 0): 0.0086,
            ("linear", "causal", 0): 0.19,
            ("classification", "prefix", 0): 24.1,
        }
    )
    lines = table1_markdown(summarize(results), paired_differences(results)).splitlines()
    assert lines[0] == "| variant | LR | MC |"
    assert lines[2] == "| PrefixLM-SL | 8.6e-03 ± 1.0e-01 | 24.1 ± 0.1 |"
    assert lines[3] == "| CausalLM-SL | 1.9e-01 ± 1.0e-01 | - |"
    assert lines[5] == "| PrefixLM − CausalLM, SL | -1.8e-01 | - |"
    assert "held-out sequences of one seed" in lines[-1]


def test_preset_overrides_reach_the_train_config() -> None:
    cfg = ExperimentConfig(preset="paper", epochs=3, n_layers=5)
    train_cfg = cfg.train_config("classification", "causal", "UL", 4)
    assert (train_cfg.epochs, train_cfg.model.n_layers, train_cfg.model.d_model) == (3, 5, 128)
    assert (train_cfg.model.d_y, train_cfg.model.mask_kind, train_cfg.model.shared_layers) == (
        3,
        "causal",
        False,
    )
    assert (train_cfg.seed, train_cfg.n_train, train_cfg.lr) == (4, 64_000, 1e-4)


def test_the_table1_page_is_rebuilt_from_its_archive_alone(tmp_path, capsys) -> None:
    run, archive, doc = tmp_path / "run", tmp_path / "docs" / "table1", tmp_path / "docs" / "t1.md"
    assert _main([*TINY, "--seeds", "0", "1", "--out", str(run)]) == 0
    pages = ["--archive", str(archive), "--doc", str(doc)]
    assert _main(["--archive-from", str(run), *pages]) == 0
    page = doc.read_text()
    assert "| PrefixLM-SL |" in page and "## The paper" in page
    assert "](table1/figure3.png)" in page and (archive / "figure3.png").exists()
    assert "LR, SL: " in page and " 2 seeds " in page
    assert "*" not in page.split("## The paper")[1].split("## What the paired")[0].replace(
        "**", ""
    ), "no significance stars"
    shutil.rmtree(run)  # a fresh clone: the page comes back from the archive
    assert _main(["--report-only", *pages]) == 0
    assert doc.read_text() == page
    (archive / "paired.csv").unlink()
    capsys.readouterr()
    assert _main(["--report-only", *pages]) == 2
    err = capsys.readouterr().err
    assert "lacks paired.csv" in err and err.count("\n") == 1
