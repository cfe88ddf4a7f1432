"""``icl-interp lsa``: the paper's Figure 2/4 claims at default settings, CLI, determinism, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from icl_interp.cli import main
from icl_interp.errors import UserError
from icl_interp.lsa.experiment import LSAConfig, run_experiment
from tests.helpers import run_notebook

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "--d", "4", "--n-context", "10", "--n-queries", "5", "--n-sequences", "3",
    "--n-layers", "6", "--max-context", "20", "--mu-x", "0", "2", "--eta", "0.5",
]  # fmt: skip


def series(table: pd.DataFrame, panel: str, variant: str, mu_x: float = 0.0) -> pd.Series:
    rows = table[(table["panel"] == panel) & (table["variant"] == variant)]
    rows = rows[rows["mu_x"] == mu_x]
    index = "n_context" if panel.startswith("stationary") else "layer"
    return rows.set_index(rows[index].astype(int))["value"]


def test_default_settings_reproduce_figure2_claims() -> None:
    """Paper defaults (d=16, n=40, 200 queries, 64 sequences, eta=1.6, 50 layers), no figures.

    prefix query MSE falls geometrically: < 1e-3 at layer 50 and >= 100x below layer 10;
    causal query MSE stalls above 1e-1 and changes < 1% over the last 20 layers; the
    causal stationary query MSE at n=300 is lower for mu_x=0 than for mu_x=3.
    """
    start = time.perf_counter()
    table = run_experiment(LSAConfig(), out=None)
    elapsed = time.perf_counter() - start
    prefix = series(table, "query_mse_vs_layer", "prefix")
    causal = series(table, "query_mse_vs_layer", "causal")
    assert prefix[50] < 1e-3, prefix[50]
    assert prefix[10] / prefix[50] >= 100, (prefix[10], prefix[50])
    log_mse = np.log(prefix.to_numpy())
    assert (np.diff(log_mse[10:]) < 0).all(), "prefix query MSE must fall at every layer"
    slope_early, slope_late = (log_mse[30] - log_mse[10]) / 20, (log_mse[50] - log_mse[30]) / 20
    assert 0.5 < slope_late / slope_early < 2, "geometric: a straight line on a log scale"
    assert causal[50] > 1e-1, causal[50]
    last = causal[30:51]
    assert last.max() / last.min() < 1.01, last.describe()
    assert (series(table, "context_mse_vs_layer", "causal")[50]) < 1e-3, "causal fits its context"
    stationary = {
        mu: series(table, "stationary_query_mse_vs_n", "causal", mu)[300] for mu in (0, 1, 2, 3)
    }
    assert stationary[0.0] < stationary[3.0], stationary
    assert stationary[0.0] < 1e-2, "mu_x=0 reaches 1e-2 within 300 examples"
    stationary2 = series(table, "stationary_query_mse_vs_n", "causal2", 0.0)[300]
    assert stationary2 > stationary[0.0], "causalLM2 converges slower than causalLM (Figure 4)"
    assert elapsed < 30, f"default computation took {elapsed:.1f}s"


def test_matrix_and_recursion_forms_give_the_same_table() -> None:
    """--form matrix (explicit K,Q,V,P) and the recursion agree to rtol 1e-9 on every plotted point."""
    settings = dict(n_queries=20, n_sequences=4, n_layers=20, stationary_max_context=30)
    recursion = run_experiment(LSAConfig(**settings), out=None)
    matrix = run_experiment(LSAConfig(**settings, form="matrix"), out=None)
    pd.testing.assert_frame_equal(matrix, recursion, rtol=1e-9, atol=0)


def test_cli_writes_tidy_csv_config_and_figures(tmp_path: Path) -> None:
    out = tmp_path / "lsa"
    assert main(["lsa", *TINY, "--out", str(out)]) == 0
    for name in ("results.csv", "config.json", "figure2.png", "figure2.pdf", "figure4.png"):
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "results.csv")
    layer_rows = table[table["panel"].str.endswith("vs_layer")]
    assert len(layer_rows) == 3 * 2 * 7, "3 variants x (context, query) x layers 0..6"
    stationary_rows = table[table["panel"] == "stationary_query_mse_vs_n"]
    assert len(stationary_rows) == 2 * 2 * 20, "2 variants x 2 mu_x x n = 1..20"
    assert set(table["mean_over"]) == {"sequences x context positions", "sequences x queries"}
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["d"] == 4 and config["config"]["stationary_mu_x"] == [0.0, 2.0]
    assert "stationary panel" in config["averaging"]
    assert set(config["contraction_factor"]) == {"prefix", "causal", "causal2"}


def test_same_seed_gives_byte_identical_csv_and_other_seed_differs(tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        argv = ["lsa", *TINY, "--seed", seed, "--no-figures", "--out", str(tmp_path / name)]
        assert main(argv) == 0
        runs[name] = (tmp_path / name / "results.csv").read_bytes()
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


def test_analysis_driver_runs_the_same_command(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "analyses"))
    try:
        from lsa_figures import _main
    finally:
        sys.path.remove(str(REPO / "analyses"))
    assert _main([*TINY, "--no-figures", "--out", str(tmp_path / "a")]) == 0
    assert main(["lsa", *TINY, "--no-figures", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "results.csv").read_bytes() == (
        tmp_path / "b" / "results.csv"
    ).read_bytes()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n-context", "-3"], "n_context must be >= 1"),
        (["--d", "0"], "d must be >= 1"),
        (["--n-layers", "-1"], "n_layers must be >= 0"),
        (["--eta", "-0.1"], "eta must be a positive number"),
        (["--eta", "100"], "diverges for prefixLM"),
        (["--eta-causal2", "5"], "diverges for causalLM2"),
        (["--layer-mu-x", "3"], "diverges for prefixLM"),
        (["--mu-x", "nan"], "mu_x values must be finite"),
    ],
)
def test_bad_values_are_one_line_errors_with_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lsa", *TINY, *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "results.csv").exists()


def test_divergence_message_names_the_condition_and_the_largest_stable_eta(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["lsa", "--eta", "20", "--n-layers", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "lambda_max(X X^T) < 2" in err and "largest stable eta here is" in err


def test_unknown_option_and_bad_choice_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["lsa", "--bogus", "1"], ["lsa", "--dtype", "float16"], ["lsa", "--d", "x"]):
        assert main(argv) == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_config_validation_and_round_trip() -> None:
    config = LSAConfig(d=3, stationary_mu_x=[0.0, 1.0])
    assert config.stationary_mu_x == (0.0, 1.0)
    assert LSAConfig.from_dict(config.to_dict()) == config
    with pytest.raises(UserError, match="unknown LSAConfig fields"):
        LSAConfig.from_dict({"depth": 3})
    with pytest.raises(UserError, match="valid forms: recursion, matrix"):
        LSAConfig(form="loop")


def test_lsa_command_in_a_fresh_process_never_imports_transformers(tmp_path: Path) -> None:
    code = (
        "import sys; from icl_interp.cli import main; "
        f"rc = main(['lsa', *{TINY!r}, '--no-figures', '--out', {str(tmp_path)!r}]); "
        "heavy = [m for m in ('transformers', 'transformer_lens') if m in sys.modules]; "
        "print(rc, heavy)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.stdout.strip().splitlines()[-1] == "0 []", proc.stdout + proc.stderr


def test_walkthrough_notebook_executes(tmp_path: Path) -> None:
    run_notebook(REPO / "notebooks" / "lsa_walkthrough.ipynb", cwd=tmp_path, timeout=120)


def test_float32_run_tracks_float64() -> None:
    """--dtype float32 gives the same curves as float64 to rtol 1e-3 (well above rounding)."""
    settings = dict(n_queries=20, n_sequences=4, n_layers=15, stationary_max_context=25)
    double = run_experiment(LSAConfig(**settings), out=None)
    single = run_experiment(LSAConfig(**settings, dtype="float32"), out=None)
    np.testing.assert_allclose(single["value"], double["value"], rtol=1e-3, atol=1e-7)
