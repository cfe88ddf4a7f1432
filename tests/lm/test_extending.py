"""The README's extension paths, each proven in one place: a mask kind, a metric, a model family.

Registering a mask kind (``register_mask``) makes a new ICL condition in compare's metrics,
the layers CSV, the attention heatmaps and the synthetic report; registering a metric
(``register_metric``) puts it in ``summary.md`` and in the per-layer figure; a non-rotary
family (GPT-2) runs through compare.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from jaxtyping import Float
from torch import Tensor

from icl_interp.cli import main
from icl_interp.lm.compare import CompareConfig, run_compare
from icl_interp.lm.metrics import METRICS, Conditions, register_metric
from icl_interp.lm.plots import plot_layer_curves
from icl_interp.masks import MASKS, MaskKind, register_mask


def tiny(**overrides: object) -> CompareConfig:
    """A small compare config, built after the test's registrations (defaults read them)."""
    settings: dict = {
        "models": ("tiny-gemma3",),
        "datasets": ("mr",),
        "n_test": 2,
        "k": 2,
        "lr": 0.05,
        "heatmap_examples": 1,
        "batch_size": 2,
        "finetune_dtype": "float32",
        "source": "package",
        "methods": ("gd",),
    }
    return CompareConfig(**{**settings, **overrides})


@pytest.fixture
def hidden_demos() -> Iterator[str]:
    """A mask kind under which the query cannot see the demonstrations (only BOS and itself)."""

    def rule(q: Tensor, k: Tensor, n_prefix: int) -> Tensor:
        return (k <= q) & ((q < n_prefix) | (k == 0) | (k >= n_prefix))

    register_mask(
        MaskKind("hidden_demos", "demonstrations hidden from the query", "HiddenLM", rule)
    )
    yield "hidden_demos"
    MASKS.remove("hidden_demos")


@pytest.fixture
def attn_norm_ratio() -> Iterator[str]:
    @register_metric("attn_norm_ratio", label="|h ICL| / |h ZSL|", uses=("zsl", "icl", "ft"))
    def ratio(c: Conditions) -> Float[Tensor, " layer"]:
        return (c.icl.attn_out.norm(dim=-1) / c.zsl.attn_out.norm(dim=-1)).mean(dim=0)

    yield "attn_norm_ratio"
    METRICS.remove("attn_norm_ratio")


def test_a_registered_mask_kind_reaches_compare_layers_heatmaps_and_synthetic(
    hidden_demos: str, tmp_path: Path
) -> None:
    run_compare(tiny(), tmp_path / "compare")
    table = pd.read_csv(tmp_path / "compare" / "metrics.csv")
    assert set(table["mask"]) == {"causal", "prefix", hidden_demos}
    attention = pd.read_csv(tmp_path / "compare" / "attention.csv", keep_default_na=False)
    assert f"icl_{hidden_demos}" in set(attention["condition"])
    assert "ICL mask: hidden_demos" in (tmp_path / "compare" / "summary.md").read_text()

    layers = ["layers", "--model", "tiny-gemma3", "--k", "2", "--n-test", "3",
              "--source", "package", "--out", str(tmp_path / "layers")]  # fmt: skip
    assert main(layers) == 0
    accuracy = pd.read_csv(tmp_path / "layers" / "layer_accuracy.csv")
    assert f"icl_{hidden_demos}" in set(accuracy["condition"])

    synthetic = ["synthetic", "--preset", "tiny", "--tasks", "linear", "--masks", hidden_demos,
                 "--out", str(tmp_path / "synthetic")]  # fmt: skip
    assert main(synthetic) == 0
    assert "HiddenLM-SL" in (tmp_path / "synthetic" / "table1.md").read_text()


def test_under_the_hidden_mask_icl_equals_zero_shot_at_the_query(
    hidden_demos: str, tmp_path: Path
) -> None:
    """A sanity check of the new kind itself: at layer 0 the query's q.k over its own tokens
    depends only on their embeddings and relative positions (RoPE), so with the demonstrations
    hidden it equals the zero-shot logits (later layers see BOS at another distance)."""
    run_compare(tiny(masks=(hidden_demos,)), tmp_path)
    attention = pd.read_csv(tmp_path / "attention.csv", keep_default_na=False)
    layer0 = attention[attention["layer"] == 0]
    zsl = layer0[layer0["condition"] == "zsl"]["logit"].to_numpy()
    hidden = layer0[layer0["condition"] == f"icl_{hidden_demos}"]["logit"].to_numpy()
    assert torch.allclose(torch.tensor(zsl), torch.tensor(hidden), atol=1e-4)


def test_a_registered_metric_reaches_the_summary_and_the_layer_figure(
    attn_norm_ratio: str, tmp_path: Path
) -> None:
    run_compare(tiny(masks=("causal",)), tmp_path, figures=False)
    assert "|h ICL| / |h ZSL| GD" in (tmp_path / "summary.md").read_text()
    figure = plot_layer_curves(pd.read_csv(tmp_path / "metrics.csv"), "tiny-gemma3")
    titles = [ax.get_title() for ax in figure.axes]
    assert any("|h ICL| / |h ZSL|" in title for title in titles), titles


def test_a_non_rotary_model_runs_through_compare(tmp_path: Path) -> None:
    config = tiny(models=("tiny-gpt2",), methods=("gd", "lcgd", "untrained"))
    table = run_compare(config, tmp_path, figures=False)
    assert set(table["method"]) == {"gd", "lcgd", "untrained", "none"}
    defined = table[table["metric"] != "recall2ftp"]  # 0/0 when GD fixes no example
    assert defined["value"].notna().all()
