"""Batched training of many models in one process equals training each model alone."""

import pytest
import torch

from icl_interp.errors import UserError
from icl_interp.synthetic.batched import build_group, group_indices, train_batched
from icl_interp.synthetic.config import ExperimentConfig
from icl_interp.synthetic.model import ModelConfig
from icl_interp.synthetic.tasks import TASKS
from icl_interp.synthetic.train import TrainConfig, eval_data, evaluate, train
from tests.helpers import assert_close

# Stated tolerance: vmapped (batched) matrix products round differently from unbatched
# ones; after 12 AdamW steps at lr 1e-2 parameters differ by ~1e-5 at most.
PARAM_ATOL = 1e-4


def _cfg(task: str, mask: str, shared: bool, seed: int = 0) -> TrainConfig:
    model = ModelConfig(
        n_layers=2, d_model=8, n_heads=2, d_mlp=16, n_context=6, n_queries=3,
        d_y=TASKS.get(task).d_y, mask_kind=mask, shared_layers=shared,
    )  # fmt: skip
    return TrainConfig(
        task=task, model=model, n_train=64, n_eval=8, epochs=3, batch_size=16, lr=1e-2, seed=seed
    )


def test_table1_models_form_four_groups() -> None:
    plan = ExperimentConfig(preset="paper")
    cfgs = [plan.train_config(*spec) for spec in plan.runs()]
    groups = group_indices(cfgs)
    assert len(cfgs) == 12 and sorted(len(g) for g in groups) == [2, 2, 4, 4]
    for members in groups:
        assert len({cfgs[i].model.shared_layers for i in members}) == 1
        assert len({cfgs[i].model.d_y for i in members}) == 1


def test_batched_training_equals_per_model_training() -> None:
    cfgs = [
        _cfg(task, mask, shared, seed)
        for task, seed in (("linear", 0), ("nonlinear", 1), ("classification", 0))
        for mask in ("prefix", "causal")
        for shared in (True, False)
    ]
    run = train_batched(cfgs)
    assert run.steps == cfgs[0].total_steps == 12 and run.timed_steps == 9
    order = [i for members in group_indices(cfgs) for i in members]
    trained = [model for group in run.groups for model in group.trained_models()]
    for index, model in zip(order, trained, strict=True):
        cfg = cfgs[index]
        alone = train(cfg).model
        for (name, expected), actual in zip(
            alone.named_parameters(), model.parameters(), strict=True
        ):
            assert_close(actual, expected, atol=PARAM_ATOL, what=f"{cfg.task} {name}")
        data, task = eval_data(cfg), TASKS.get(cfg.task)
        assert_close(
            torch.tensor(evaluate(model, task, data)["value"].to_numpy()),
            torch.tensor(evaluate(alone, task, data)["value"].to_numpy()),
            atol=1e-3, rtol=1e-3, what=f"{cfg.task} eval",
        )  # fmt: skip


def test_time_and_step_limits() -> None:
    cfgs = [_cfg("linear", "prefix", True), _cfg("linear", "causal", True)]
    assert train_batched(cfgs, max_steps=4).steps == 4
    assert train_batched(cfgs, max_seconds=0.0).steps == 10


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_equals_eager_and_bf16_trains() -> None:
    cfgs = [_cfg(task, mask, shared) for task in ("linear", "nonlinear")
            for mask in ("prefix", "causal") for shared in (True, False)]  # fmt: skip
    eager = train_batched(cfgs, "cuda")
    graphed = train_batched(cfgs, "cuda", cuda_graph=True)
    bf16 = train_batched(cfgs, "cuda", cuda_graph=True, bf16=True)
    for a, b, c in zip(eager.groups, graphed.groups, bf16.groups, strict=True):
        for name, value in a.params.items():
            assert_close(b.params[name], value, atol=1e-5, what=f"graphed vs eager {name}")
            assert torch.isfinite(c.params[name]).all(), f"bf16 {name} not finite"


@pytest.mark.parametrize(
    ("cfgs", "kwargs", "message"),
    [
        ([_cfg("linear", "prefix", True), _cfg("linear", "prefix", False)], {}, "differ only"),
        ([_cfg("linear", "prefix", True)], {"bf16": True}, "CUDA"),
    ],
)
def test_mistakes_are_refused(cfgs, kwargs, message) -> None:
    with pytest.raises(UserError, match=message):
        build_group(cfgs, **kwargs)
