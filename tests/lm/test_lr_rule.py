"""The learning-rate rule: argmax of validation accuracy, ties to the smaller lr, divergence
never chosen, validation data from the train split only; compare --lr-grid end to end."""

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
from icl_interp.lm.lr_rule import LrTrial, choose, sweep


def test_highest_accuracy_wins_and_ties_go_to_the_smaller_lr() -> None:
    trials = [LrTrial(1e-3, 0.5, 1.0), LrTrial(1e-2, 0.7, 0.9), LrTrial(1e-1, 0.7, 0.8)]
    assert choose(trials) == 1e-2
    assert choose([LrTrial(1e-1, 0.6, 1.0), LrTrial(1e-4, 0.6, 1.0)]) == 1e-4


def test_a_diverging_lr_is_never_chosen_and_all_diverging_is_an_error() -> None:
    def score(lr: float) -> tuple[float, float]:
        if lr > 0.05:
            raise UserError("diverged")
        return 0.5, 1.0

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
