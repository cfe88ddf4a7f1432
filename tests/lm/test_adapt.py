"""Prefix vs causal adaptation (``icl-interp adapt``, ``adapt-table``) on tiny random models."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import icl_interp.lm.adapt.run as adapt_module
from analyses import adapt_table2
from icl_interp.cli import main as cli_main
from icl_interp.errors import UserError
from icl_interp.lm.adapt.config import AdaptConfig
from icl_interp.lm.adapt.episodes import Episode, EpisodeStream
from icl_interp.lm.adapt.run import adapt, read_card
from icl_interp.lm.adapt.table import paired_differences, run_table
from icl_interp.lm.adapt.table_config import TableConfig
from icl_interp.lm.adapt.training import (
    add_lora,
    episode_hidden,
    hf_state_dict,
    learning_rate,
    trainable_parameters,
)
from icl_interp.lm.models import TINY_ARCHS, load_model, tiny_random_model
from tests.helpers import SHARED_DATA, tiny_table

needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")


def tiny_config(out: Path, **overrides) -> AdaptConfig:
    values = dict(
        base="tiny-gemma3",
        objective="prefix",
        mixture=("sst2", "mr"),
        k=3,
        max_len=160,
        steps=6,
        lr=1e-3,
        warmup=2,
        val_episodes=2,
        eval_every=3,
        checkpoint_every=3,
        data_dir=str(SHARED_DATA),
        progress=False,
        out=str(out),
    )
    values.update(overrides)
    return AdaptConfig(**values)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


@pytest.fixture(scope="module")
def model():
    return tiny_random_model("gemma3", seed=0)


@pytest.fixture(scope="module")
def stream(model):
    if not SHARED_DATA.is_dir():
        pytest.skip("needs ../shared/data")
    return EpisodeStream(model.tokenizer, ("sst2", "mr"), 3, 160, seed=0, data_dir=str(SHARED_DATA))


# --------------------------------------------------------------------------- masks


@needs_data
@pytest.mark.parametrize("objective", ["prefix", "causal"])
def test_early_demonstration_sees_later_one_only_under_prefix(model, stream, objective):
    """Changing a token of the last demonstration changes the first demonstration's hidden
    states under the prefix objective's mask, and leaves them untouched under the causal one.
    The tiny Gemma has sliding windows of 4, so the change must travel over several layers."""
    episode = stream[0]
    hf_model = model.original_model
    changed_ids = episode.ids.clone()
    changed_ids[episode.n_prefix - 3] = (changed_ids[episode.n_prefix - 3] + 1) % 50
    changed = dataclasses.replace(episode, ids=changed_ids)
    with torch.no_grad():
        before = episode_hidden(model, hf_model, episode, objective)
        after = episode_hidden(model, hf_model, changed, objective)
    early = slice(1, 3)
    moved = (before[early] - after[early]).abs().max()
    if objective == "prefix":
        assert moved > 1e-4, "prefix mask: an early demonstration must see a later one"
    else:
        assert moved == 0, "causal mask: an early demonstration must not see a later one"
    assert (before[-1] - after[-1]).abs().max() > 1e-4, "the query sees the demonstrations"


@needs_data
@pytest.mark.parametrize("objective", ["prefix", "causal"])
def test_each_query_of_an_episode_sees_only_the_demonstrations_and_itself(model, objective):
    """A 3-query episode gives every query segment the hidden states it has as the only query
    after the same demonstrations (the tiny Gemma's sliding window of 4 included)."""
    stream = EpisodeStream(
        model.tokenizer, ("sst2",), 3, 160, seed=0, queries=3, data_dir=str(SHARED_DATA)
    )
    episode = stream[0]
    assert episode.n_queries == 3 and len(episode.answer_positions) == 3
    hf_model = model.original_model
    with torch.no_grad():
        together = episode_hidden(model, hf_model, episode, objective)
        for j in (1, 2, 3):
            segment = episode.segments == j
            ids = torch.cat([episode.ids[: episode.n_prefix], episode.ids[segment]])
            alone = Episode(
                ids=ids,
                positions=torch.arange(len(ids)),
                segments=(torch.arange(len(ids)) >= episode.n_prefix).long(),
                n_prefix=episode.n_prefix,
                loss_positions=torch.tensor([len(ids) - 2]),
                dataset=episode.dataset,
                k_used=episode.k_used,
                n_queries=1,
            )
            single = episode_hidden(model, hf_model, alone, objective)
            torch.testing.assert_close(together[segment], single[episode.n_prefix :])
            torch.testing.assert_close(together[: episode.n_prefix], single[: episode.n_prefix])
    assert (episode.targets == episode.ids[episode.answer_positions + 1]).all()


@needs_data
def test_training_uses_the_objective_mask(tmp_path, monkeypatch):
    import icl_interp.lm.arch as arch_module

    seen: list[tuple[str, int]] = []
    original = arch_module.attention_mask_for

    def spy(model, kind, seq_len, **kwargs):
        seen.append((kind, kwargs.get("n_prefix", 0)))
        return original(model, kind, seq_len, **kwargs)

    monkeypatch.setattr(arch_module, "attention_mask_for", spy)
    adapt(tiny_config(tmp_path / "p", steps=2, val_episodes=0))
    assert seen and all(kind == "prefix" and n_prefix > 1 for kind, n_prefix in seen)


# --------------------------------------------------------------------------- episodes


@needs_data
def test_episode_stream_is_deterministic_and_packs(model, stream):
    again = EpisodeStream(model.tokenizer, ("sst2", "mr"), 3, 160, seed=0, pools=stream.pools)
    for index in range(4):
        assert torch.equal(stream[index].ids, again[index].ids)
        assert stream[index].targets.tolist() == [int(stream[index].ids[-1])]
    other_seed = EpisodeStream(model.tokenizer, ("sst2", "mr"), 3, 160, seed=1, pools=stream.pools)
    assert not torch.equal(stream[0].ids, other_seed[0].ids)
    short = EpisodeStream(model.tokenizer, ("sst2",), 8, 48, seed=0, pools=stream.pools)
    episode = short[0]
    assert episode.ids.shape[0] <= 48 and episode.k_used < 8, "packed into the context"


@needs_data
def test_label_loss_positions_score_every_demonstration_label(model):
    labels_stream = EpisodeStream(
        model.tokenizer, ("sst2",), 3, 160, seed=0, loss_on="labels", data_dir=str(SHARED_DATA)
    )
    episode = labels_stream[0]
    words = model.tokenizer.convert_ids_to_tokens(episode.targets.tolist())
    assert len(words) == episode.k_used + 1
    assert set(words) <= {"Negative", "Positive", "ĠNegative", "ĠPositive"}


@needs_data
def test_both_objectives_see_the_same_episode_stream(tmp_path, monkeypatch):
    streams: dict[str, list[tuple[list[int], list[int]]]] = {"prefix": [], "causal": []}
    original = adapt_module.episode_loss

    def recording(model, hf_model, episode: Episode, objective: str):
        if torch.is_grad_enabled():
            streams[objective].append((episode.ids.tolist(), episode.loss_positions.tolist()))
        return original(model, hf_model, episode, objective)

    monkeypatch.setattr(adapt_module, "episode_loss", recording)
    for objective in ("prefix", "causal"):
        adapt(tiny_config(tmp_path / objective, objective=objective, val_episodes=0))
    assert len(streams["prefix"]) == 6
    assert streams["prefix"] == streams["causal"]
    logs = {o: pd.read_csv(tmp_path / o / "train_log.csv") for o in ("prefix", "causal")}
    for column in ("step", "lr", "dataset", "k_used", "tokens"):
        assert logs["prefix"][column].tolist() == logs["causal"][column].tolist()
    assert not torch.equal(
        weights(tmp_path / "prefix")["model.layers.0.self_attn.q_proj.weight"],
        weights(tmp_path / "causal")["model.layers.0.self_attn.q_proj.weight"],
    ), "same data, different masks: different models"


# --------------------------------------------------------------------------- parameter groups


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_trained_lora_and_block_weights_are_what_gets_saved(arch):
    """LoRA on every q/k/v/o (GPT-2: on the split views of its fused c_attn, and its Conv1D
    output) changes the model, and the merged weights under HF names reproduce the trained
    model's logits; for ``blocks`` every layer is trained, for ``attn`` only attention."""
    from transformers import AutoModelForCausalLM

    model = tiny_random_model(arch, seed=0)
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    before = model(ids).detach()
    blocks = trainable_parameters(model, model.original_model, "blocks")
    attn = {id(p) for _, p in trainable_parameters(model, model.original_model, "attn")}
    assert attn < {id(p) for _, p in blocks}
    assert all(any(f".{i}." in n for n, _ in blocks) for i in range(model.cfg.n_layers))
    torch.manual_seed(1)
    wrapped = add_lora(model, 4)
    with torch.no_grad():
        for _, parameter in trainable_parameters(model, wrapped, "lora"):
            parameter.add_(0.3 * torch.randn_like(parameter))
    trained = model(ids).detach()
    assert (trained - before).abs().max() > 0.05
    fresh = AutoModelForCausalLM.from_config(model.original_model.config)
    fresh.load_state_dict(hf_state_dict(wrapped.merge_and_unload()))
    saved = fresh.eval()(ids).logits.detach()
    torch.testing.assert_close(saved, trained, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- resume, output


@needs_data
@pytest.mark.parametrize("params", ["blocks", "lora"])
def test_resume_is_bit_identical(tmp_path, monkeypatch, params):
    reference = adapt(tiny_config(tmp_path / "straight", params=params))
    interrupted = tiny_config(tmp_path / "resumed", params=params)
    original = adapt_module.episode_loss
    calls = {"n": 0}

    def crash_at_step_5(model, hf_model, episode, objective):
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 5:
                raise KeyboardInterrupt
        return original(model, hf_model, episode, objective)

    monkeypatch.setattr(adapt_module, "episode_loss", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        adapt(interrupted)
    monkeypatch.setattr(adapt_module, "episode_loss", original)
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert read_card(tmp_path / "resumed") is None
    adapt(interrupted)
    expected, actual = weights(reference), weights(tmp_path / "resumed")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()
    straight_log = pd.read_csv(reference / "train_log.csv")
    pd.testing.assert_frame_equal(straight_log, pd.read_csv(tmp_path / "resumed" / "train_log.csv"))


@needs_data
def test_max_minutes_stops_and_the_same_call_finishes(tmp_path):
    config = tiny_config(tmp_path / "run", max_minutes=1e-9)
    adapt(config)
    assert (tmp_path / "run" / "checkpoint.pt").exists() and read_card(tmp_path / "run") is None
    adapt(dataclasses.replace(config, max_minutes=None))
    card = read_card(tmp_path / "run")
    assert card["steps"] == 6 and len(card["loss_curve"]) == 6 and card["expects_mask"] == "prefix"


@needs_data
def test_adapted_folder_loads_and_runs_through_capture_and_compare(tmp_path):
    from icl_interp.lm.capture import capture_condition
    from icl_interp.lm.compare import CompareConfig, run_compare
    from icl_interp.lm.conditions import icl
    from icl_interp.lm.data import (
        build_prompts,
        get_dataset,
        load_examples,
        sample_demonstrations,
        select_eval,
    )

    folder = adapt(tiny_config(tmp_path / "adapted", params="lora"))
    card = read_card(folder)
    assert {
        "base_model",
        "objective",
        "mixture",
        "steps",
        "lr",
        "seed",
        "loss_curve",
    } <= card.keys()
    loaded = load_model(str(folder))
    spec = get_dataset("sst2")
    demos = sample_demonstrations(load_examples("sst2", "train", SHARED_DATA), 2, seed=0)
    queries = select_eval(load_examples("sst2", "test", SHARED_DATA), 3, seed=0, exclude=demos)
    prompts = build_prompts(loaded.tokenizer, spec, demos, queries, max_len=256)
    result = capture_condition(loaded, prompts, icl("prefix"))
    assert result.layer_label_logits.shape == (3, loaded.cfg.n_layers, 2)
    table = run_compare(
        CompareConfig(
            models=(str(folder),),
            datasets=("sst2",),
            masks=("prefix",),
            methods=("gd",),
            n_test=2,
            k=2,
            data_dir=str(SHARED_DATA),
            finetune_dtype="float32",
            heatmap_examples=0,
        ),
        tmp_path / "compare",
        figures=False,
    )
    assert set(table["mask"]) == {"prefix"} and table["value"].notna().any()


# --------------------------------------------------------------------------- bad input


def test_config_errors():
    with pytest.raises(UserError, match="objective"):
        AdaptConfig(objective="bidirectional")
    with pytest.raises(UserError, match="causal objective"):
        AdaptConfig(objective="prefix", loss_on="labels")
    with pytest.raises(UserError, match="params"):
        AdaptConfig(params="everything")
    with pytest.raises(UserError, match="also in the training mixture"):
        TableConfig(training=AdaptConfig(mixture=("sst2", "trec")), heldout=("trec", "rte"))
    with pytest.raises(UserError, match="layer-dataset"):
        TableConfig(layer_dataset="mr")


def test_cli_unknown_dataset_is_one_line(tmp_path, capsys):
    code = cli_main(["adapt", "--mixture", "sst2", "nosuchdata", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nosuchdata" in err
    assert not (tmp_path / "x").exists()
    code = cli_main(["adapt-table", "--heldout", "trec", "sst2", "--out", str(tmp_path / "y")])
    assert code == 2 and "also in the training mixture" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


@needs_data
def test_other_settings_and_foreign_folders_are_refused(tmp_path):
    adapt(tiny_config(tmp_path / "run", steps=2))
    with pytest.raises(UserError, match="other settings.*lr"):
        adapt(tiny_config(tmp_path / "run", steps=2, lr=5e-4))
    before = weights(tmp_path / "run")
    adapt(tiny_config(tmp_path / "run", steps=2, threads=1))  # same numbers: nothing to do
    assert all(torch.equal(before[n], t) for n, t in weights(tmp_path / "run").items())
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an adaptation folder"):
        adapt(tiny_config(foreign))
    assert (foreign / "notes.txt").read_text() == "keep me"


@needs_data
def test_label_words_that_are_not_single_tokens_are_refused(tmp_path):
    from icl_interp.lm.data import get_dataset, register_dataset
    from icl_interp.lm.data.specs import DATASETS

    register_dataset(
        dataclasses.replace(
            get_dataset("sst2"),
            name="sst2oddwords",
            label_words=(" Nega-tive", " Posi-tive"),
        )
    )
    try:
        config = tiny_table({"mixture": ("sst2oddwords",)})
        with pytest.raises(UserError, match="sst2oddwords.*one token"):
            run_table(config, tmp_path / "table")
    finally:
        DATASETS.remove("sst2oddwords")  # the registry is global: leave it as it was
    assert not (tmp_path / "table").exists(), "nothing written before validation"


@needs_data
def test_divergence_names_the_step(tmp_path, monkeypatch):
    original = adapt_module.episode_loss
    calls = {"n": 0}

    def nan_at_step_2(model, hf_model, episode, objective):
        loss = original(model, hf_model, episode, objective)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 2:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(adapt_module, "episode_loss", nan_at_step_2)
    with pytest.raises(UserError, match="diverged.*step 2"):
        adapt(tiny_config(tmp_path / "run", val_episodes=0))


# --------------------------------------------------------------------------- statistics


def test_learning_rate_schedule():
    config = AdaptConfig(steps=10, warmup=2, lr=1.0)
    rates = [learning_rate(config, step) for step in range(10)]
    assert rates[:2] == [0.5, 1.0] and rates[-1] == pytest.approx(1 / 8) and min(rates) > 0


def test_paired_differences_interval():
    rows = []
    for seed, (p, c) in enumerate([(0.6, 0.5), (0.7, 0.5), (0.8, 0.5)]):
        rows += [
            {
                "model": "prefix",
                "mask": "prefix",
                "data": "trec",
                "k": 4,
                "seed": seed,
                "accuracy": p,
            },
            {
                "model": "causal",
                "mask": "causal",
                "data": "trec",
                "k": 4,
                "seed": seed,
                "accuracy": c,
            },
        ]
    paired = paired_differences(pd.DataFrame(rows))
    row = paired[paired["data"] == "trec"].iloc[0]
    assert row["diff_mean"] == pytest.approx(0.2)
    se = 0.1 / 3**0.5
    assert row["diff_se"] == pytest.approx(se)
    assert row["ci95_high"] - row["diff_mean"] == pytest.approx(4.302653 * se)


# --------------------------------------------------------------------------- end to end


@needs_data
def test_adapt_table_tiny_end_to_end(tmp_path):
    """Serial on one thread; then the same on two worker processes gives the same tables."""
    config = tiny_table(ks=(2,), threads=1)
    result = run_table(config, tmp_path / "table")
    assert result["finished"]
    out = tmp_path / "table"
    for name in (
        "config.json",
        "accuracy.csv",
        "table2.md",
        "paired.csv",
        "layers.csv",
        "report.md",
    ):
        assert (out / name).exists(), name
    assert (out / "figures" / "table2.png").exists() and (out / "figures" / "layers.png").exists()
    table = pd.read_csv(out / "table2.csv")
    assert set(table["data"]) == {"sst5", "trec", "mean"}
    assert json.loads((out / "config.json").read_text())["config"]["heldout"] == ["sst5", "trec"]
    again = run_table(config, out)  # resumes: everything on disk
    pd.testing.assert_frame_equal(
        again["table"].reset_index(drop=True), result["table"].reset_index(drop=True)
    )
    with pytest.raises(UserError, match="other settings"):
        run_table(dataclasses.replace(config, n_test=5), out)
    parallel = tmp_path / "processes"
    assert run_table(dataclasses.replace(config, backend="processes", workers=2), parallel)[
        "finished"
    ]
    for name in ("accuracy.csv", "table2.csv", "paired.csv", "layers.csv", "table2.md"):
        assert (parallel / name).read_bytes() == (out / name).read_bytes(), name
    archive, doc = tmp_path / "docs" / "table2", tmp_path / "docs" / "table2.md"
    pages = ["--archive", str(archive), "--doc", str(doc)]
    assert adapt_table2._main(["--archive-from", str(out), *pages]) == 0
    page = doc.read_text()
    assert "](table2/figures/table2.png)" in page and "](table2/figures/layers.png)" in page
    assert "prefix − causal" in page and "## Layer by layer" in page
    shutil.rmtree(out)  # a fresh clone: the page comes back from the archive
    assert adapt_table2._main(["--report-only", *pages]) == 0
    assert doc.read_text() == page


@needs_data
def test_adapt_table_refuses_a_model_folder_made_with_other_settings(tmp_path):
    """A finished adaptation dropped into ``models/`` is used only if it was made with the
    table's settings; one with another lr is an error naming the difference."""
    config = tiny_table(ks=(2,))
    folder = tmp_path / "table" / "models" / "causal_seed0"
    adapt(config.adapt_config("causal", 0, folder, lr=config.training.lr / 2))
    with pytest.raises(UserError, match=r"other settings \(lr: 0.0005 -> 0.001\)"):
        run_table(config, tmp_path / "table")


# --------------------------------------------------------------------------- lr pilot


def test_the_adaptation_lr_rule_by_hand():
    from icl_interp.lm.lr_rule import choose_adaptation_lr

    assert choose_adaptation_lr({1e-4: [0.5, 0.4], 3e-4: [0.3, 0.4]}) == 3e-4
    assert choose_adaptation_lr({3e-4: [0.4, 0.4], 1e-4: [0.3, 0.5]}) == 1e-4, "tie: smaller lr"
    assert choose_adaptation_lr({1e-3: [float("nan"), 0.1], 1e-4: [9.0, 9.0]}) == 1e-4
    with pytest.raises(UserError):
        choose_adaptation_lr({})


def test_lr_and_lr_grid_are_one_or_the_other(capsys):
    with pytest.raises(UserError, match="distinct lrs > 0"):
        tiny_table(lr_grid=(1e-3, 1e-3))
    code = cli_main(["adapt-table", "--preset", "tiny", "--lr", "1e-3", "--lr-grid", "1e-3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--lr or --lr-grid, not both" in err and "\n" not in err


@needs_data
def test_the_lr_pilot_chooses_by_the_rule_and_its_models_are_the_tables(tmp_path):
    from icl_interp.lm.lr_rule import choose_adaptation_lr

    config = tiny_table({"steps": 2}, ks=(2,), seeds=(0,), layer_seeds=(), lr_grid=(1e-3, 3e-2))
    out = tmp_path / "table"
    assert run_table(config, out)["finished"]
    pilot = pd.read_csv(out / "lr_pilot.csv")
    losses = {lr: group["val_loss"].tolist() for lr, group in pilot.groupby("lr")}
    chosen = choose_adaptation_lr(losses)
    assert pilot.loc[pilot["chosen"], "lr"].unique().tolist() == [chosen]
    for objective in ("causal", "prefix"):
        table_model = out / "models" / f"{objective}_seed0"
        pilot_model = out / "pilot" / f"{objective}_seed0_lr{chosen:g}"
        assert read_card(table_model)["config"]["lr"] == chosen
        assert (table_model / "model.safetensors").read_bytes() == (
            pilot_model / "model.safetensors"
        ).read_bytes()
    report = (out / "report.md").read_text()
    assert "## lr pilot" in report and f"lr {chosen:g}, params" in report
