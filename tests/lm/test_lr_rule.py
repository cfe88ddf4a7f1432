"""The learning-rate rule: argmax of validation accuracy, ties to the lower validation label
loss and then the smaller lr, divergence never chosen, an edge choice extends the grid,
validation data from the train split only; compare --lr-grid end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import icl_interp.lm.data.pipeline as pipeline
from icl_interp.errors import UserError
from icl_interp.lm.compare import run_compare, unit_stem
from icl_interp.lm.compare_config import CompareConfig
from icl_interp.lm.data import make_prompts, tiny_tokenizer
from icl_interp.lm.lr_rule import (
    LrTrial,
    choose,
    chosen_lrs,
    chosen_table,
    sweep,
    sweep_with_edges,
)


def _scores(accuracy: float, val_loss: float = 1.0) -> dict[str, float]:
    return {"accuracy": accuracy, "val_loss": val_loss, "train_loss": 1.0, "update_norm": 1.0}


def test_highest_accuracy_wins_ties_go_to_the_lower_label_loss_then_the_smaller_lr() -> None:
    trials = [LrTrial(1e-3, 0.5, 1.0), LrTrial(1e-2, 0.7, 0.9), LrTrial(1e-1, 0.7, 0.8)]
    assert choose(trials) == 1e-1  # a tie in accuracy, broken by the validation label loss
    assert choose([LrTrial(1e-1, 0.6, 1.0), LrTrial(1e-4, 0.6, 1.0)]) == 1e-4
    assert choose([LrTrial(1e-1, 0.6, float("nan")), LrTrial(1e-2, 0.6, 2.0)]) == 1e-2


def test_an_edge_choice_extends_the_grid_a_decade_at_most_twice() -> None:
    scored: list[float] = []

    def rising(lr: float) -> dict[str, float]:  # the larger the lr, the better
        scored.append(lr)
        return _scores(lr)

    chosen, trials = sweep_with_edges([1e-5, 1e-4, 1e-3], rising)
    assert chosen == 1e-1 and [t.lr for t in trials] == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    assert sorted(scored) == [t.lr for t in trials]  # each lr scored once
    chosen, trials = sweep_with_edges([1e-5, 1e-4, 1e-3], lambda lr: _scores(-abs(lr - 1e-6)))
    assert chosen == 1e-6 and trials[0].lr == 1e-7  # the lower edge, extended to 1e-6 then 1e-7
    chosen, trials = sweep_with_edges([1e-5, 1e-4, 1e-3], lambda lr: _scores(-abs(lr - 1e-4)))
    assert chosen == 1e-4 and len(trials) == 3  # an inner choice is final


def test_a_diverging_lr_is_never_chosen_and_all_diverging_is_an_error() -> None:
    def score(lr: float) -> dict[str, float]:
        if lr > 0.05:
            raise UserError("diverged")
        return _scores(0.5)

    chosen, trials = sweep([1e-2, 1e-1, 1.0], score)
    assert chosen == 1e-2 and sum(t.accuracy != t.accuracy for t in trials) == 2
    with pytest.raises(UserError, match="every learning rate in the grid diverged"):
        sweep([1e-1, 1.0], score)


def test_validation_data_never_reads_the_test_split(monkeypatch: pytest.MonkeyPatch) -> None:
    real = pipeline.load_examples

    def train_only(name: str, split: str, *args: object, **kwargs: object):
        assert split == "train", "the lr rule read the test split"
        return real(name, split, *args, **kwargs)

    monkeypatch.setattr(pipeline, "load_examples", train_only)
    _, prompts, provenance = make_prompts(
        tiny_tokenizer(), "mr", n_test=5, seed=3, k=2, source="package", eval_split="train"
    )
    demos = {ex.content_key for ex in prompts.demonstrations}
    assert not demos & {ex.content_key for ex in prompts.queries}
    assert set(provenance.source) == {"train"}


def test_compare_with_an_lr_grid_records_the_sweep_and_the_chosen_lrs(tmp_path: Path) -> None:
    config = CompareConfig(
        models=("tiny-gemma3",), datasets=("mr",), n_test=2, k=2, heatmap_examples=0,
        batch_size=2, finetune_dtype="float32", source="package", bootstrap=0,
        methods=("gd", "untrained"), masks=("causal",), lr_grid=(1e-3, 1e-1), n_val=4,
    )  # fmt: skip
    run_compare(config, tmp_path, figures=True)
    sweep_table = pd.read_csv(tmp_path / "lr_sweep.csv")
    assert set(sweep_table["finetuning"]) == {"gd", "untrained gd"}
    assert sweep_table.groupby("finetuning")["chosen"].sum().eq(1).all()
    info = json.loads(
        (tmp_path / "units" / f"{unit_stem('tiny-gemma3', 'mr', 0)}.json").read_text()
    )
    chosen = sweep_table[sweep_table["chosen"]].set_index("finetuning")["lr"]
    assert info["lr"]["gd"] == chosen["gd"] and info["lr"]["untrained gd"] == chosen["untrained gd"]
    assert (tmp_path / "figures" / "lr_sweep__tiny-gemma3.png").exists()
    with pytest.raises(UserError, match="not both"):
        CompareConfig(lr=0.1, lr_grid=(1e-3,))


def test_the_packaged_table_applies_the_rule_to_the_mean_over_seeds(tmp_path: Path) -> None:
    """Seed 0 prefers 1e-3, seed 1 prefers 1e-2; the mean over seeds ties them (0.7 each), so
    the smaller lr wins. The lookup returns every finetuning of one model x data set."""
    rows = [
        ("m", "mr", 0, "gd", 1e-3, 0.8),
        ("m", "mr", 0, "gd", 1e-2, 0.6),
        ("m", "mr", 1, "gd", 1e-3, 0.6),
        ("m", "mr", 1, "gd", 1e-2, 0.8),
        ("m", "mr", 0, "lcgd", 1e-3, 0.5),
        ("m", "mr", 0, "lcgd", 1e-2, 0.9),
        ("m", "sst2", 0, "gd", 1e-3, 0.9),
        ("m", "sst2", 0, "gd", 1e-2, float("nan")),
        ("m", "cr", 0, "gd", 1e-3, 0.5),
        ("m", "cr", 0, "gd", 1e-2, 0.9),
        ("m", "cr", 1, "gd", 1e-3, 0.5),
        ("m", "cr", 1, "gd", 1e-2, float("nan")),
    ]
    sweep_table = pd.DataFrame(
        rows, columns=["model", "data", "seed", "finetuning", "lr", "val_accuracy"]
    )
    table = chosen_table(sweep_table).set_index(["data", "finetuning"])
    assert table.loc[("mr", "gd"), "lr"] == 1e-3
    assert table.loc[("mr", "gd"), "val_accuracy"] == pytest.approx(0.7)
    assert table.loc[("mr", "gd"), "seeds"] == "0 1"
    assert table.loc[("mr", "lcgd"), "lr"] == 1e-2
    assert table.loc[("sst2", "gd"), "lr"] == 1e-3, "a diverged lr is never chosen"
    assert table.loc[("cr", "gd"), "lr"] == 1e-3, "nor one that diverged in any seed"
    path = tmp_path / "chosen.csv"
    chosen_table(sweep_table).to_csv(path, index=False)
    assert chosen_lrs("m", "mr", path) == {"gd": 1e-3, "lcgd": 1e-2}
    assert chosen_lrs("m", "cb", path) == {}
    assert chosen_lrs("m", "mr", tmp_path / "absent.csv") == {}


def test_compare_lr_policies(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    """``chosen`` reads the packaged table (or ``--lr-table``), falling back (with a note) to
    the reference lr; ``reference`` and a number ignore the table."""
    import icl_interp.lm.lr_rule as lr_rule
    from icl_interp.lm.compare import unit_lrs
    from icl_interp.lm.data import get_dataset

    spec = get_dataset("mr")
    table = {"gd": 1e-4, "lcgd": 2e-4, "untrained gd": 3e-4}
    monkeypatch.setattr(
        lr_rule, "chosen_lrs", lambda model, data, path: table if model == "m" else {}
    )
    lrs, source, sweep_table = unit_lrs(None, "m", "mr", 0, spec, CompareConfig(lr="chosen"))
    assert lrs == table and source.startswith("chosen") and sweep_table is None
    lrs, source, _ = unit_lrs(None, "other", "mr", 0, spec, CompareConfig(lr="chosen"))
    assert set(lrs.values()) == {spec.gd_lr} and source.startswith("reference")
    assert "no chosen lr for other on mr" in capsys.readouterr().out
    own = tmp_path / "mine.csv"
    own.write_text("model,data,finetuning,lr,val_accuracy,seeds,grid\n"
                   "m,mr,gd,0.1,1,0,0.1\nm,mr,lcgd,0.2,1,0,0.2\nm,mr,untrained gd,0.3,1,0,0.3\n")  # fmt: skip
    monkeypatch.undo()  # the real reader, on a table of one's own (--lr-table)
    lrs, source, _ = unit_lrs(None, "m", "mr", 0, spec, CompareConfig(lr_table=str(own)))
    assert lrs == {"gd": 0.1, "lcgd": 0.2, "untrained gd": 0.3} and source == "chosen (mine.csv)"
    lrs, source, _ = unit_lrs(None, "m", "mr", 0, spec, CompareConfig(lr="reference"))
    assert set(lrs.values()) == {spec.gd_lr}
    lrs, source, _ = unit_lrs(None, "m", "mr", 0, spec, CompareConfig(lr=0.5))
    assert set(lrs.values()) == {0.5} and source == "fixed (--lr)"


def test_a_finished_unit_is_not_reused_after_the_packaged_lrs_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import icl_interp.lm.lr_rule as lr_rule

    config = CompareConfig(
        models=("tiny-gemma3",), datasets=("mr",), n_test=2, k=2, methods=("gd",),
        masks=("causal",), heatmap_examples=0, bootstrap=0, source="package",
    )  # fmt: skip
    monkeypatch.setattr(lr_rule, "chosen_lrs", lambda model, data, path: {})
    run_compare(config, tmp_path, figures=False)  # no row: the reference lr
    info = json.loads(
        (tmp_path / "units" / f"{unit_stem('tiny-gemma3', 'mr', 0)}.json").read_text()
    )
    assert info["lr_source"].startswith("reference")
    run_compare(config, tmp_path, figures=False)  # unchanged: reused
    table = {"gd": 1e-4, "lcgd": 1e-4, "untrained gd": 1e-4}
    monkeypatch.setattr(lr_rule, "chosen_lrs", lambda model, data, path: table)
    with pytest.raises(UserError, match="the lr table now gives"):
        run_compare(config, tmp_path, figures=False)


def test_an_interrupted_sweep_resumes_from_its_finished_trials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import icl_interp.lm.finetune as finetune_module

    config = CompareConfig(
        models=("tiny-gemma3",), datasets=("mr",), n_test=2, k=2, heatmap_examples=0,
        batch_size=2, finetune_dtype="float32", source="package", bootstrap=0,
        methods=("gd", "untrained"), masks=("causal",), lr_grid=(1e-3, 1e-1), n_val=4,
    )  # fmt: skip
    real = finetune_module.finetune_with_losses
    calls = []

    def counted(*args: object, **kwargs: object):
        calls.append(kwargs.get("lr"))
        return real(*args, **kwargs)

    monkeypatch.setattr(finetune_module, "finetune_with_losses", counted)
    run_compare(config, tmp_path, figures=False)
    first_sweep = (tmp_path / "lr_sweep.csv").read_bytes()
    first_calls = len(calls)
    stem = unit_stem("tiny-gemma3", "mr", 0)
    trials = sorted((tmp_path / "units" / f"{stem}.lr_trials").glob("*.json"))
    assert len(trials) == len(pd.read_csv(tmp_path / "lr_sweep.csv")) >= 4  # 2 x (2 lrs + edges)
    for path in (tmp_path / "units").glob(f"{stem}.*"):  # interrupted after the sweep
        if path.is_file():
            path.unlink()
    trials[0].write_text("{not json")  # an unreadable trial is computed again
    stamps = {path: path.stat().st_mtime_ns for path in trials[1:]}
    calls.clear()
    run_compare(config, tmp_path, figures=False)
    assert len(calls) == first_calls - (len(trials) - 1)
    assert {path: path.stat().st_mtime_ns for path in trials[1:]} == stamps
    assert (tmp_path / "lr_sweep.csv").read_bytes() == first_sweep
