import math

import pytest
import torch

from icl_interp.errors import UserError
from icl_interp.synthetic.model import ModelConfig
from icl_interp.synthetic.tasks import TASKS, TRAIN_STREAM, make_dataset
from icl_interp.synthetic.train import (
    TrainConfig,
    eval_data,
    evaluate,
    fresh_batch,
    lr_factor,
    train,
)
from tests.helpers import assert_close


def _cfg(**overrides) -> TrainConfig:
    model = ModelConfig(n_layers=2, d_model=8, n_heads=2, d_mlp=16, n_context=6, n_queries=3)
    values = {"model": model, "n_train": 64, "n_eval": 8, "epochs": 3, "batch_size": 16, "lr": 1e-2}
    return TrainConfig(**{**values, **overrides})


def _same_state(a, b) -> None:
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q), f"parameter {name} differs"
    sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    for key in sa:
        for field in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(sa[key][field]), torch.as_tensor(sb[key][field]))


def test_lr_schedule_by_hand() -> None:
    total, warm = 10, 0.2
    assert [lr_factor(s, total, warm) for s in (0, 1)] == [0.5, 1.0]
    assert lr_factor(2, total, warm) == 1.0
    assert math.isclose(lr_factor(6, total, warm), 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert math.isclose(lr_factor(10, total, warm), 0.0, abs_tol=1e-12)


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path) -> None:
    cfg = _cfg()
    straight = train(cfg)
    ckpt = tmp_path / "ckpt.pt"
    first = train(cfg, checkpoint=ckpt, max_steps=5)
    assert first.step == 5 and ckpt.exists()
    resumed = train(cfg, checkpoint=ckpt)
    assert resumed.step == straight.step == cfg.total_steps == 12
    _same_state(straight, resumed)


def test_same_seed_same_model_other_seed_other_model() -> None:
    a, b, c = train(_cfg(epochs=1)), train(_cfg(epochs=1)), train(_cfg(epochs=1, seed=1))
    _same_state(a, b)
    assert not torch.equal(a.model.read_in.weight, c.model.read_in.weight)


def test_checkpoint_of_another_config_is_refused(tmp_path) -> None:
    ckpt = tmp_path / "ckpt.pt"
    train(_cfg(), checkpoint=ckpt, max_steps=2)
    with pytest.raises(UserError, match="different config"):
        train(_cfg(lr=3e-3), checkpoint=ckpt)


def test_training_fits_the_training_pool() -> None:
    cfg = _cfg(epochs=80, n_train=16, batch_size=16)
    m = cfg.model
    pool = make_dataset(
        TASKS.get(cfg.task), 16, n_context=m.n_context, n_queries=m.n_queries, d_x=m.d_x,
        seed=cfg.seed, stream=TRAIN_STREAM,
    )  # fmt: skip
    task = TASKS.get(cfg.task)
    before = evaluate(train(cfg, max_steps=0).model, task, pool)
    after = evaluate(train(cfg).model, task, pool)
    at = lambda t: t[t["readout"] == "model"]["value"].item()  # noqa: E731
    assert at(after) < 0.5 * at(before)


def test_evaluate_rows_match_direct_computation() -> None:
    cfg = _cfg(
        task="classification",
        model=ModelConfig(
            n_layers=2, d_model=8, n_heads=2, d_mlp=16, d_y=3, n_context=6, n_queries=3
        ),
    )
    state = train(cfg, max_steps=3)
    data = eval_data(cfg)
    table = evaluate(state.model, TASKS.get("classification"), data)
    assert list(table["readout"]) == ["model", "probe", "probe", "trivial", "least_squares"]
    assert list(table["layer"]) == [2, 1, 2, 0, 0]
    output, probes = state.model.predict_queries(data.tokens)
    wrong = (output.argmax(-1) != data.query_targets.argmax(-1)).float().mean() * 100
    assert table["value"][0] == pytest.approx(wrong.item(), abs=1e-4)
    per_seq = (output.argmax(-1) != data.query_targets.argmax(-1)).float().mean(-1) * 100
    assert table["se"][0] == pytest.approx(per_seq.std().item() / 8**0.5, abs=1e-4)
    wrong1 = (probes[0].argmax(-1) != data.query_targets.argmax(-1)).float().mean() * 100
    assert table["value"][1] == pytest.approx(wrong1.item(), abs=1e-4)
    class_share = data.query_targets.reshape(-1, 3).mean(0) * 100
    assert table["value"][3] == pytest.approx(100 - class_share.max().item(), abs=1e-4)


def test_bad_train_configs_are_user_errors() -> None:
    with pytest.raises(UserError, match="d_y=3"):
        _cfg(task="classification")
    with pytest.raises(UserError, match="epochs"):
        _cfg(epochs=0)
    with pytest.raises(UserError, match="exceeds n_train"):
        _cfg(batch_size=128)
    with pytest.raises(UserError, match="unknown task"):
        _cfg(task="sorting")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_step_matches_eager_step() -> None:
    cfg = _cfg(epochs=2)
    eager = train(cfg, device="cuda")
    graphed = train(cfg, device="cuda", cuda_graph=True)
    for p, q in zip(eager.model.parameters(), graphed.model.parameters(), strict=True):
        assert_close(q, p, atol=1e-6, what="graphed vs eager parameters")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graphed_run_resumes_an_eager_checkpoint(tmp_path) -> None:
    cfg = _cfg(epochs=2)
    eager = train(cfg, device="cuda")
    ckpt = tmp_path / "ckpt.pt"
    train(cfg, device="cuda", checkpoint=ckpt, max_steps=3)
    resumed = train(cfg, device="cuda", checkpoint=ckpt, cuda_graph=True)
    for p, q in zip(eager.model.parameters(), resumed.model.parameters(), strict=True):
        assert_close(q, p, atol=1e-6, what="eager vs eager-then-graphed parameters")


def test_least_squares_baseline_recovers_noise_free_linear_labels() -> None:
    cfg = _cfg(
        model=ModelConfig(
            n_layers=1, d_model=8, n_heads=2, d_mlp=16, d_x=4, n_context=12, n_queries=3
        )
    )
    table = evaluate(train(cfg, max_steps=0).model, TASKS.get("linear"), eval_data(cfg))
    least_squares = table[table["readout"] == "least_squares"]["value"].item()
    trivial = table[table["readout"] == "trivial"]["value"].item()
    assert least_squares < 1e-6 * trivial


def test_fresh_data_resumes_bit_identically_and_never_repeats_a_batch(tmp_path) -> None:
    cfg = _cfg(fresh_data=True)
    assert not torch.equal(fresh_batch(cfg, 0).tokens, fresh_batch(cfg, 1).tokens)
    assert torch.equal(fresh_batch(cfg, 3).tokens, fresh_batch(cfg, 3).tokens)
    ckpt = tmp_path / "checkpoint.pt"
    train(cfg, checkpoint=ckpt, max_steps=5)
    resumed = train(cfg, checkpoint=ckpt)
    _same_state(resumed, train(cfg))
    assert not torch.equal(train(cfg).model.read_in.weight, train(_cfg()).model.read_in.weight), (
        "fresh data trains another model than the fixed pool"
    )
