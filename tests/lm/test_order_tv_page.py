"""The real-LM order / task-vector page on hand-made units: the leave-one-data-set-out layer,
the endpoints' values, partial draws left out, and the same archive giving the same page."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analyses import lm_order_tv_report
from icl_interp.lm.order_tv_page import (
    _at_chosen,
    adapted_endpoints,
    chosen_layers,
    finetuning_endpoints,
    order_endpoints,
    order_ratios,
    tv_endpoints,
)
from icl_interp.results import write_csv

DATA = ("sst2", "mr", "agnews")
LAYERS = 3
# per data set, the task-vector accuracy per layer: each data set's own best layer differs
# from the best layer of the other two
CURVES = {"sst2": [0.5, 0.9, 0.7], "mr": [0.5, 0.6, 0.95], "agnews": [0.4, 0.8, 0.7]}


def _tv_unit(data: str, seed: int, mask: str) -> pd.DataFrame:
    rows = [
        {"condition": "zero_shot", "layer": None, "value": 0.5},
        {"condition": "icl", "layer": None, "value": 0.8 + 0.01 * seed},
    ]
    for layer in range(LAYERS):
        tv = CURVES[data][layer] + (0.05 if mask == "prefix" else 0.0) + 0.01 * seed
        rows += [
            {"condition": "task_vector", "layer": layer, "value": tv},
            {"condition": "rotated_labels", "layer": layer, "value": 0.3},
        ]
    frame = pd.DataFrame(rows)
    return frame.assign(model="m", data=data, seed=seed, mask=mask, n=32)[
        ["model", "data", "seed", "mask", "condition", "layer", "value", "n"]
    ]


def _order_unit(data: str, seed: int, mask: str) -> pd.DataFrame:
    rows = []
    for layer in range(LAYERS):
        ratio = (0.4 if mask == "causal" else 0.1) + 0.01 * seed + 0.1 * layer
        rows += [
            {"layer": layer, "statistic": "across_orders", "value": ratio * 2.0},
            {"layer": layer, "statistic": "across_sets", "value": 2.0},
        ]
    frame = pd.DataFrame(rows).assign(model="m", data=data, seed=seed, method="icl", mask=mask)
    return frame[["model", "data", "seed", "method", "mask", "layer", "statistic", "value"]]


def _finetuning_unit(data: str, seed: int, method: str) -> pd.DataFrame:
    """GD's order ratio is causal ICL's + 0.5; LCGD's is causal ICL's + 0.01 (seed - 2)."""
    rows = []
    for layer in range(LAYERS):
        icl = 0.4 + 0.01 * seed + 0.1 * layer
        ratio = icl + (0.5 if method == "gd" else 0.01 * (seed - 2))
        rows += [
            {"layer": layer, "statistic": "across_orders", "value": ratio * 2.0},
            {"layer": layer, "statistic": "across_sets", "value": 2.0},
        ]
    frame = pd.DataFrame(rows).assign(model="m", data=data, seed=seed, method=method)
    return frame.assign(mask="causal", lr=1e-3)


def _archive(folder: Path, seeds: range, partial_seed: int | None = None) -> Path:
    for run, make, command in (
        ("task_vectors", _tv_unit, "analyses/task_vectors.py"),
        ("order", _order_unit, "analyses/lm_order_sensitivity.py"),
    ):
        (folder / run / "units").mkdir(parents=True)
        plan = {"models": ["m"], "seeds": list(seeds), "datasets": list(DATA),
                "masks": ["causal", "prefix"]}  # fmt: skip
        config = {"command": command, "config": plan}
        (folder / run / "config.json").write_text(json.dumps(config))
        for data in DATA:
            for seed in seeds:
                for mask in ("causal", "prefix"):
                    write_csv(folder / run / "units" / f"m_{data}_seed{seed}_{mask}.csv",
                              make(data, seed, mask))  # fmt: skip
        if partial_seed is not None:  # one unit of a draw that is not finished
            write_csv(folder / run / "units" / f"m_sst2_seed{partial_seed}_causal.csv",
                      make("sst2", partial_seed, "causal"))  # fmt: skip
    return folder


def _tv_table(seeds: range) -> pd.DataFrame:
    frames = [_tv_unit(d, s, m) for d in DATA for s in seeds for m in ("causal", "prefix")]
    return pd.concat(frames, ignore_index=True)


def test_the_task_vector_layer_is_chosen_on_the_other_data_sets() -> None:
    layers = chosen_layers(_tv_table(range(3)))
    chosen = layers[layers["mask"] == "causal"].set_index("data")["layer"]
    # sst2: mr + agnews mean per layer = [0.45, 0.70, 0.825] -> 2, though sst2's own best is 1
    assert chosen.to_dict() == {"agnews": 2, "mr": 1, "sst2": 2}


def test_task_vector_endpoints_have_the_hand_computed_means() -> None:
    table = _tv_table(range(5))
    rows = {
        (r["mask"], r["endpoint"]): r for r in tv_endpoints(_at_chosen(table, chosen_layers(table)))
    }
    # causal, at L*: sst2 0.7, mr 0.6, agnews 0.7 (+0.01 seed): mean 2/3 + 0.01 seed
    tv = (0.7 + 0.6 + 0.7) / 3 + 0.02
    assert rows[("causal", "TV - ZS")]["estimate"].mean == pytest.approx(tv - 0.5)
    assert rows[("causal", "ICL - TV")]["estimate"].mean == pytest.approx(0.82 - tv)
    assert rows[("causal", "TV - rotated TV")]["estimate"].mean == pytest.approx(tv - 0.3)
    prefix = rows[("prefix vs causal", "TV prefix - causal")]
    assert prefix["estimate"].mean == pytest.approx(0.05)
    assert prefix["verdict"] == "prefix higher"
    assert rows[("causal", "TV - ZS")]["verdict"] == "TV higher"


def test_order_endpoints_pair_masks_by_draw() -> None:
    frames = [_order_unit(d, s, m) for d in DATA for s in range(5) for m in ("causal", "prefix")]
    ratios = order_ratios(pd.concat(frames, ignore_index=True))
    assert ratios["ratio"].max() == pytest.approx(0.4 + 0.04 + 0.2)
    rows = order_endpoints(ratios)
    assert [r["estimate"].mean for r in rows] == pytest.approx([0.3, 0.3])
    assert rows[0]["endpoint"] == "ratio causal - prefix, layer 2"
    assert all(r["verdict"] == "causal higher" for r in rows)


def test_page_leaves_partial_draws_out_and_is_byte_identical(tmp_path: Path) -> None:
    pages, figures = [], []
    for name in ("a", "b"):
        archive = _archive(tmp_path / name, range(3), partial_seed=3)
        doc = tmp_path / name / "page.md"
        assert lm_order_tv_report._main(["--archive", str(archive), "--doc", str(doc)]) == 0
        pages.append(doc.read_text())
        figures.append({p.name: p.read_bytes() for p in (archive / "figures").glob("*.png")})
    assert pages[0] == pages[1] and figures[0] == figures[1]
    assert set(figures[0]) == {"task_vectors__m.png", "order_ratio.png"}
    assert (
        "| task vectors | m | 3 | 3 | 3 | 3 |" in pages[0]
        and "| order | m | 3 | 3 | 3 | 3 |" in pages[0]
    )
    assert "causal mask: the vector carries the labels and part of ICL" in pages[0]
    assert "as the GD account predicts" in pages[0]


def test_without_a_complete_draw_the_page_says_so(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "a", range(2))
    for unit in archive.glob("*/units/m_agnews_*"):
        unit.unlink()  # agnews not run yet: no complete draw, no pooled endpoint
    doc = tmp_path / "page.md"
    assert lm_order_tv_report._main(["--archive", str(archive), "--doc", str(doc)]) == 0
    page = doc.read_text()
    assert page.count("The endpoints wait for every planned draw") == 2
    assert "| task vectors | m | 2 | 2 | 0 | 0 |" in page


def test_an_archive_without_units_is_a_one_line_error(tmp_path: Path) -> None:
    archive = tmp_path / "empty"
    assert (
        lm_order_tv_report._main(["--archive", str(archive), "--doc", str(tmp_path / "p.md")]) == 2
    )
    assert not (tmp_path / "p.md").exists()


def test_each_reading_of_the_task_vector_endpoints() -> None:
    def reading(zs: str, rotated: str = "inconclusive", icl: str = "inconclusive") -> str:
        names = ("TV - ZS", "TV - rotated TV", "ICL - TV")
        claims = {n: {"verdict": v} for n, v in zip(names, (zs, rotated, icl), strict=True)}
        from icl_interp.lm import order_tv_page

        return order_tv_page._tv_reading(claims)  # noqa: SLF001

    assert "no better" in reading("equivalent within ±0.05")
    assert "do not show" in reading("inconclusive (detectable effect ±0.1)")
    assert "not through the demonstrated labels" in reading("TV higher", "equivalent within ±0.05")
    assert "account fits:" not in reading("TV higher", "TV higher", "ICL higher")
    assert "fits in part" in reading("TV higher", "TV higher", "ICL higher")
    assert "task-vector account fits" in reading(
        "TV higher", "TV higher", "equivalent within ±0.05"
    )


def _finetuning_run(archive: Path, seeds: range, datasets: tuple[str, ...]) -> None:
    run = archive / "order_finetuning"
    (run / "units").mkdir(parents=True)
    plan = {"models": ["m"], "seeds": list(seeds), "datasets": list(datasets),
            "methods": ["gd", "lcgd"], "lr": "chosen", "masks": ["causal", "prefix"]}  # fmt: skip
    (run / "config.json").write_text(
        json.dumps({"command": "analyses/lm_order_sensitivity.py", "config": plan})
    )
    for data in datasets:
        for seed in seeds:
            for method in ("gd", "lcgd"):
                write_csv(run / "units" / f"m_{data}_seed{seed}_{method}.csv",
                          _finetuning_unit(data, seed, method))  # fmt: skip


def test_finetuning_order_endpoints_pair_each_finetuning_with_causal_icl() -> None:
    icl = order_ratios(pd.concat(
        [_order_unit(d, s, m) for d in DATA for s in range(5) for m in ("causal", "prefix")]
    ))  # fmt: skip
    units = [
        _finetuning_unit(d, s, m) for d in ("sst2", "mr") for s in range(5) for m in ("gd", "lcgd")
    ]
    units.append(_finetuning_unit("mr", 5, "gd"))  # draw 5: unfinished, left out
    table = pd.concat(units, ignore_index=True)
    tuned = pd.concat([order_ratios(table, m).assign(method=m) for m in ("gd", "lcgd")])
    rows = {r["endpoint"]: r for r in finetuning_endpoints(icl, tuned, ["sst2", "mr"])}
    gd, lcgd = rows["ratio GD - ICL causal, layer 2"], rows["ratio LCGD - ICL causal, layer 2"]
    assert gd["estimate"].mean == pytest.approx(0.5) and gd["estimate"].n == 5
    assert gd["verdict"] == "GD higher"
    assert lcgd["estimate"].mean == pytest.approx(0.0, abs=1e-12)
    assert lcgd["verdict"] == "equivalent within ±0.25"


def test_the_page_shows_the_finetuning_run_when_there_is_one(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "a", range(3))
    _finetuning_run(archive, range(3), ("sst2", "mr"))
    doc = tmp_path / "a" / "page.md"
    assert lm_order_tv_report._main(["--archive", str(archive), "--doc", str(doc)]) == 0
    page = doc.read_text()
    assert "## Order sensitivity of GD and LCGD" in page
    assert "--methods gd lcgd" in page and "m sst2 GD 0.001" in page
    assert "| GD and LCGD order | m | 3 | 3 | 3 |" in page
    assert (archive / "figures" / "order_ratio_finetuning.png").is_file()
    assert "- ratio GD - ICL causal, layer 2: against what the online-GD account predicts" in page
    assert "- ratio LCGD - ICL causal, layer 2: as the online-GD account predicts" in page


def _adapted_run(archive: Path, seeds: range) -> None:
    """Under its own mask, the prefix-adapted model's order ratio is 0.2 below the
    causal-adapted model's at every layer."""
    run = archive / "order_adapted"
    (run / "units").mkdir(parents=True)
    models = ["gemma-prefix-adapted", "gemma-causal-adapted"]
    plan = {"models": models, "seeds": list(seeds), "datasets": ["sst5"],
            "masks": ["causal", "prefix"], "methods": ["icl"]}  # fmt: skip
    (run / "config.json").write_text(
        json.dumps({"command": "analyses/lm_order_sensitivity.py", "config": plan})
    )
    for model in models:
        for seed in seeds:
            for mask in ("causal", "prefix"):
                unit = _order_unit("sst5", seed, mask).assign(model=model)
                if model == models[0] and mask == "prefix":
                    unit.loc[unit["statistic"] == "across_orders", "value"] += 0.5 * 2.0
                write_csv(run / "units" / f"{model}_sst5_seed{seed}_{mask}.csv", unit)


def test_adapted_endpoints_pair_each_model_under_its_own_mask(tmp_path: Path) -> None:
    _adapted_run(tmp_path, range(4))
    table = pd.concat([pd.read_csv(p) for p in (tmp_path / "order_adapted" / "units").glob("*")])
    rows = adapted_endpoints(order_ratios(table))
    # prefix-adapted under prefix: 0.1 + 0.5; causal-adapted under causal: 0.4 -> +0.2
    assert [r["estimate"].mean for r in rows] == pytest.approx([0.2, 0.2])
    assert rows[0]["endpoint"] == "ratio prefix-adapted - causal-adapted, layer 2"
    assert rows[0]["verdict"] == "prefix-adapted higher"


def test_the_page_shows_the_adapted_run_when_there_is_one(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "a", range(3))
    _adapted_run(archive, range(3))
    doc = tmp_path / "a" / "page.md"
    assert lm_order_tv_report._main(["--archive", str(archive), "--doc", str(doc)]) == 0
    page = doc.read_text()
    assert "## Order sensitivity of the prefix- and causal-adapted models" in page
    assert "| adapted models' order | gemma-prefix-adapted | 3 | 3 |" in page
    assert (archive / "figures" / "order_ratio_adapted.png").is_file()
    assert "layer 2: against what the theory predicts (+0.200" in page


def test_a_finetuning_run_with_one_method_finished_shows_no_complete_draw(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "a", range(3))
    _finetuning_run(archive, range(3), ("sst2", "mr"))
    for unit in (archive / "order_finetuning" / "units").glob("*_lcgd.csv"):
        unit.unlink()
    doc = tmp_path / "a" / "page.md"
    assert lm_order_tv_report._main(["--archive", str(archive), "--doc", str(doc)]) == 0
    assert "| GD and LCGD order | m | 0 | 0 | 0 |" in doc.read_text()
    # both methods on one data set only: no complete draw, no endpoint
    lcgd = archive / "order_finetuning" / "units" / "m_sst2_seed0_lcgd.csv"
    write_csv(lcgd, _finetuning_unit("sst2", 0, "lcgd"))
    assert lm_order_tv_report._main(["--archive", str(archive), "--doc", str(doc)]) == 0
    page = doc.read_text()
    assert "| GD and LCGD order | m | 1 | 0 | 0 |" in page
    assert page.rstrip().endswith("no verdict is drawn from part of the sample.")


def test_endpoints_of_a_model_with_planned_draws_missing_wait() -> None:
    from icl_interp.lm.order_tv_page import all_planned
    from icl_interp.stats import estimate

    rows = [{"model": "a", "estimate": estimate([0.1, 0.2, 0.3])},
            {"model": "b", "estimate": estimate([0.1, 0.2])}]  # fmt: skip
    assert [r["model"] for r in all_planned(rows, 3)] == ["a"]
