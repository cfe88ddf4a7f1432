"""``icl-interp compare``: ICL vs gradient descent (GD, layer-causal GD) in pretrained LMs.

For every model x data set x seed (one resumable *unit*): sample k demonstrations and the test
examples, capture ZSL, ICL (causal and/or prefix mask), GD-finetuned and LCGD-finetuned models,
plus the untrained baseline (ZSL, ICL and GD all on a model whose attention and MLP weights are
re-drawn), and compute every registered metric per layer. Writes into ``--out``:

- ``config.json``: the config and package versions;
- ``units/<model>__<data>__seed<seed>.csv`` (+ ``.attention.csv``, ``.json``): one per unit,
  written atomically, so a rerun skips finished units;
- ``metrics.csv``: tidy, one row per model x data x seed x mask x method x layer x metric;
- ``attention.csv``: attention logits over the query tokens for the first ``--heatmap-examples``
  test examples, per condition x layer x head x token;
- ``summary.md`` / ``summary.csv``: mean over layers (last layer for accuracies) and seeds;
- ``figures/``: per-layer metric curves and attention heatmaps (PNG + PDF).

``method`` in the table names the finetuned model compared with ICL: ``gd``, ``lcgd``, or
``untrained`` (GD vs ICL, both inside the untrained model).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from icl_interp.errors import UserError
from icl_interp.lm.finetune import COMPUTE_DTYPES
from icl_interp.lm.metrics import METRICS, Conditions, compute_metrics
from icl_interp.masks import MASKS, mask_names
from icl_interp.results import (
    done,
    seed_everything,
    to_jsonable,
    write_config,
    write_csv,
    write_text,
)

METHODS: tuple[str, ...] = ("gd", "lcgd", "untrained")
DEFAULT_OUT = Path("runs/compare")
UNIT_COLUMNS = ["model", "data", "seed", "mask", "method", "layer", "metric", "value"]
ATTENTION_COLUMNS = [
    "model",
    "data",
    "seed",
    "example",
    "condition",
    "layer",
    "head",
    "position",
    "token",
    "logit",
]
SUMMARY_QUANTITIES: tuple[tuple[str, str, str], ...] = (
    ("SimAOU random", "simaou_random", "gd"),
    ("SimAOU GD", "simaou", "gd"),
    ("SimAOU LCGD", "simaou", "lcgd"),
    ("SimAOU untrained", "simaou", "untrained"),
    ("SimAM ZSL", "simam_zsl", "gd"),
    ("SimAM GD", "simam", "gd"),
    ("SimAM LCGD", "simam", "lcgd"),
    ("SimAM untrained", "simam", "untrained"),
    ("SimAM∆ GD", "simam_delta", "gd"),
    ("SimAM∆ LCGD", "simam_delta", "lcgd"),
    ("SimAM∆ untrained", "simam_delta", "untrained"),
    ("acc ZSL", "accuracy_zsl", "gd"),
    ("acc ICL", "accuracy_icl", "gd"),
    ("acc GD", "accuracy_ft", "gd"),
    ("acc LCGD", "accuracy_ft", "lcgd"),
    ("Recall2FTP GD", "recall2ftp", "gd"),
    ("Recall2FTP LCGD", "recall2ftp", "lcgd"),
)


@dataclass(frozen=True)
class CompareConfig:
    """What to compare. ``k``/``lr`` of None use each data set's defaults (DESIGN.md section 5).

    ``seeds`` drive everything random in a unit: the demonstrations, the test examples, the
    untrained baseline's weights and the random SimAOU baseline.
    """

    models: tuple[str, ...] = ("gemma-3-270m",)
    datasets: tuple[str, ...] = ("mr",)
    seeds: tuple[int, ...] = (0,)
    masks: tuple[str, ...] = field(default_factory=lambda: tuple(mask_names()))
    methods: tuple[str, ...] = METHODS
    n_test: int = 24
    k: int | None = None
    lr: float | None = None
    params: str = "kv"
    finetune_dtype: str = "auto"
    max_len: int = 2048
    batch_size: int = 8
    heatmap_examples: int = 2
    data_dir: str | None = None
    source: str = "auto"
    device: str = "cpu"
    metrics: tuple[str, ...] = field(default_factory=lambda: tuple(METRICS.names()))

    def __post_init__(self) -> None:
        for name in ("models", "datasets", "seeds", "masks", "methods", "metrics"):
            if not getattr(self, name):
                raise UserError(f"--{name.replace('_', '-')} needs at least one value")
        for mask in self.masks:
            MASKS.get(mask)
        for method in self.methods:
            if method not in METHODS:
                raise UserError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
        for metric in self.metrics:
            METRICS.get(metric)
        if self.n_test < 1:
            raise UserError(f"--n-test must be >= 1, got {self.n_test}")
        if self.k is not None and self.k < 1:
            raise UserError(f"--k must be >= 1, got {self.k}")
        if self.lr is not None and not self.lr > 0:
            raise UserError(f"--lr must be > 0, got {self.lr}")
        if self.finetune_dtype not in COMPUTE_DTYPES:
            raise UserError(
                f"unknown --finetune-dtype {self.finetune_dtype!r}; valid: {', '.join(COMPUTE_DTYPES)}"
            )
        if self.max_len < 2:
            raise UserError(f"--max-len must be >= 2, got {self.max_len}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.heatmap_examples < 0:
            raise UserError(f"--heatmap-examples must be >= 0, got {self.heatmap_examples}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CompareConfig:
        tuples = ("models", "datasets", "seeds", "masks", "methods", "metrics")
        fields: dict[str, Any] = {k: tuple(v) if k in tuples else v for k, v in values.items()}
        return cls(**fields)


# --------------------------------------------------------------------------- one unit


def unit_stem(model: str, data: str, seed: int) -> str:
    safe_model = "".join(c if c.isalnum() or c in "-." else "_" for c in model)
    return f"{safe_model}__{data}__seed{seed}"


def _prompts(model: Any, data: str, seed: int, config: CompareConfig) -> Any:
    from icl_interp.lm.data import (
        build_prompts,
        get_dataset,
        load_examples,
        sample_demonstrations,
        select_eval,
    )

    spec = get_dataset(data)
    train = load_examples(spec.name, "train", config.data_dir, source=config.source)
    test = load_examples(spec.name, "test", config.data_dir, source=config.source)
    demos = sample_demonstrations(train, config.k or spec.k, seed=seed)
    queries = select_eval(test, config.n_test, seed=seed, exclude=demos, at_most=True)
    if len(queries) < config.n_test:
        tqdm.write(
            f"{spec.name}: only {len(queries)} evaluation examples remain after excluding the "
            f"demonstrations; using {len(queries)} instead of {config.n_test}"
        )
    return spec, build_prompts(model.tokenizer, spec, demos, queries, max_len=config.max_len)


def _capture_all(
    model: Any, prompts: Any, spec: Any, seed: int, config: CompareConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Captures of every condition the unit needs; info: lr, finetuning losses per step and
    seconds per stage."""
    from icl_interp.lm.capture import capture_condition
    from icl_interp.lm.finetune import (
        finetune_with_losses,
        resolve_compute_dtype,
        untrained_baseline,
    )

    lr = config.lr or spec.gd_lr
    captures: dict[str, Any] = {}
    train_losses: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}

    def cap(m: Any, condition: str, name: str) -> None:
        started = time.perf_counter()
        captures[name] = capture_condition(
            m, prompts, condition, batch_size=config.batch_size, desc=name
        )
        seconds[name] = round(time.perf_counter() - started, 1)

    def finetuned(m: Any, method: str, name: str) -> Any:
        started = time.perf_counter()
        tuned, losses = finetune_with_losses(
            m,
            prompts.demo_ids,
            method=method,
            lr=lr,
            params=config.params,
            seed=seed,
            compute_dtype=config.finetune_dtype,
            progress=True,
        )
        train_losses[name] = [round(loss, 5) for loss in losses]
        seconds[f"{name} finetuning"] = round(time.perf_counter() - started, 1)
        return tuned

    icl_conditions = [f"icl_{mask}" for mask in config.masks]
    for condition in ["zsl", *icl_conditions]:
        cap(model, condition, condition)
    for method in ("gd", "lcgd"):
        if method in config.methods:
            cap(finetuned(model, method, method), method, method)
    if "untrained" in config.methods:
        untrained = untrained_baseline(model, seed=seed)
        for condition in ["zsl", *icl_conditions]:
            cap(untrained, condition, f"untrained/{condition}")
        cap(finetuned(untrained, "gd", "untrained_gd"), "gd", "untrained/gd")
    info = {
        "lr": lr,
        "finetune_dtype": resolve_compute_dtype(config.finetune_dtype, config.device),
        "train_loss_per_step": train_losses,
        "seconds_per_stage": seconds,
    }
    return captures, info


def unit_metrics(
    captures: dict[str, Any], config: CompareConfig, *, model: str, data: str, seed: int
) -> pd.DataFrame:
    """The tidy metric rows of one unit, from its captures."""
    frames = []
    for mask in config.masks:
        for method in config.methods:
            scope = "untrained/" if method == "untrained" else ""
            conditions = Conditions(
                zsl=captures[f"{scope}zsl"],
                icl=captures[f"{scope}icl_{mask}"],
                ft=captures[f"{scope}gd" if method == "untrained" else method],
                seed=seed,
            )
            frame = compute_metrics(conditions, config.metrics)
            frames.append(frame.assign(mask=mask, method=method))
    table = pd.concat(frames, ignore_index=True).assign(model=model, data=data, seed=seed)
    return table[UNIT_COLUMNS]


def attention_rows(
    captures: dict[str, Any], tokenizer: Any, prompts: Any, n_examples: int
) -> pd.DataFrame:
    """Attention logits over the query tokens for the first ``n_examples`` examples (tidy)."""
    rows = []
    conditions = [c for c in captures if "/" not in c]
    for example in range(min(n_examples, prompts.n_examples)):
        tokens = tokenizer.convert_ids_to_tokens(prompts.query_ids[example].tolist())
        for condition in conditions:
            logits = captures[condition].attn_logits[example]
            n_layers, n_heads, n_tokens = logits.shape
            for layer in range(n_layers):
                for head in range(n_heads):
                    for position in range(n_tokens):
                        rows.append(
                            (
                                example,
                                condition,
                                layer,
                                head,
                                position,
                                tokens[position],
                                float(logits[layer, head, position]),
                            )
                        )
    return pd.DataFrame(rows, columns=ATTENTION_COLUMNS[3:])


def run_unit(
    model: Any, model_name: str, data: str, seed: int, config: CompareConfig, units: Path
) -> None:
    """Compute and write one model x data x seed unit (metrics CSV last: it marks the unit done)."""
    stem = unit_stem(model_name, data, seed)
    started = time.perf_counter()
    seed_everything(seed)
    spec, prompts = _prompts(model, data, seed, config)
    captures, info = _capture_all(model, prompts, spec, seed, config)
    attention = attention_rows(captures, model.tokenizer, prompts, config.heatmap_examples)
    key = {"model": model_name, "data": spec.name, "seed": seed}
    write_csv(units / f"{stem}.attention.csv", attention.assign(**key)[ATTENTION_COLUMNS])
    info.update(
        key,
        k_requested=prompts.k_requested,
        k_used=prompts.k_used,
        prefix_tokens=int(prompts.prefix_ids.shape[0]),
        n_test=prompts.n_examples,
        seconds=round(time.perf_counter() - started, 1),
    )
    write_text(units / f"{stem}.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    metrics = unit_metrics(captures, config, model=model_name, data=spec.name, seed=seed)
    write_csv(units / f"{stem}.csv", metrics)


# --------------------------------------------------------------------------- summary


def layer_reduced(table: pd.DataFrame) -> pd.DataFrame:
    """One value per model x data x seed x mask x method x metric: mean over layers, or the
    last layer for metrics registered with ``over_layers="last"``."""
    keys = ["model", "data", "seed", "mask", "method", "metric"]
    over = table["metric"].map(
        lambda name: METRICS.get(name).over_layers if name in METRICS else "mean"
    )
    mean = table[over == "mean"].groupby(keys, as_index=False)["value"].mean()
    last_rows = table[over == "last"]
    last = last_rows[last_rows["layer"] == last_rows.groupby(keys)["layer"].transform("max")]
    return pd.concat([mean, last[[*keys, "value"]]], ignore_index=True)


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rows model x mask x data (plus a per-model/mask mean row); columns SUMMARY_QUANTITIES."""
    reduced = layer_reduced(table)
    per_data = reduced.groupby(["model", "mask", "method", "metric", "data"], as_index=False)[
        "value"
    ].mean()
    columns = {}
    for label, metric, method in SUMMARY_QUANTITIES:
        chosen = per_data[(per_data["metric"] == metric) & (per_data["method"] == method)]
        if not chosen.empty:
            columns[label] = chosen.set_index(["model", "mask", "data"])["value"]
    wide = pd.DataFrame(columns)
    means = wide.groupby(level=["model", "mask"]).mean()
    means.index = pd.MultiIndex.from_tuples(
        [(model, mask, "mean") for model, mask in means.index], names=wide.index.names
    )
    return (
        pd.concat([wide, means])
        .sort_index(level=["model", "mask"], sort_remaining=False)
        .reset_index()
    )


def summary_markdown(
    summary: pd.DataFrame, config: CompareConfig, n_test: dict[str, int] | None = None
) -> str:
    """The summary table as Markdown; ``n_test``: test examples used per data set (when some
    evaluation split held fewer than ``config.n_test``)."""
    counts = ", ".join(f"{data} {n}" for data, n in sorted((n_test or {}).items()))
    used = f" (used: {counts})" if counts else ""
    parts = [
        "# ICL vs GD: summary",
        "",
        f"Mean over layers (accuracy and Recall2FTP: last layer) and over seeds {list(config.seeds)}; "
        f"up to {config.n_test} test examples per data set{used}. Rows: data sets; "
        "'mean' = mean over data sets.",
    ]
    for (model, mask), block in summary.groupby(["model", "mask"], sort=False):
        parts += ["", f"## {model}, ICL mask: {mask}", ""]
        parts.append(_markdown(block.drop(columns=["model", "mask"])))
    return "\n".join(parts) + "\n"


def _markdown(frame: pd.DataFrame) -> str:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return "nan" if value != value else f"{value:.3f}"
        return str(value)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


# --------------------------------------------------------------------------- driver


UNIT_KEYS = ("models", "datasets", "seeds")


def _check_same_settings(out: Path, config: CompareConfig) -> None:
    """Units from an earlier run are reused only if every setting but the unit plan matches."""
    previous_file = out / "config.json"
    if not previous_file.exists():
        return
    previous = json.loads(previous_file.read_text())["config"]
    current = to_jsonable(config)
    differ = sorted(k for k in current if k not in UNIT_KEYS and previous.get(k) != current[k])
    if differ:
        raise UserError(
            f"{out} holds results made with other settings ({', '.join(differ)}); "
            "rerun with the same options to resume, or pass a new --out"
        )


def run_compare(config: CompareConfig, out: Path, *, figures: bool = True) -> pd.DataFrame:
    """Run (or resume) every unit, then write the combined tables, summary and figures."""
    out = Path(out)
    units = out / "units"
    _check_same_settings(out, config)
    write_config(out, config)
    plan = [(m, d, s) for m in config.models for d in config.datasets for s in config.seeds]
    todo = [unit for unit in plan if not done(units / f"{unit_stem(*unit)}.csv")]
    if len(todo) < len(plan):
        print(f"resuming: {len(plan) - len(todo)} of {len(plan)} units already done in {units}")
    loaded: dict[str, Any] = {}
    for model_name, data, seed in tqdm(todo, desc="units", unit="unit"):
        if model_name not in loaded:
            from icl_interp.lm.models import load_model

            loaded.clear()
            loaded[model_name] = load_model(model_name, device=config.device)
        run_unit(loaded[model_name], model_name, data, seed, config, units)
    loaded.clear()

    table = pd.concat(
        [pd.read_csv(units / f"{unit_stem(*unit)}.csv") for unit in plan], ignore_index=True
    )
    attention = pd.concat(
        [
            pd.read_csv(units / f"{unit_stem(*unit)}.attention.csv", keep_default_na=False)
            for unit in plan
        ],
        ignore_index=True,
    )
    write_csv(out / "metrics.csv", table)
    write_csv(out / "attention.csv", attention)
    summary = summary_table(table)
    write_csv(out / "summary.csv", summary)
    n_test: dict[str, int] = {}
    for unit in plan:
        info = json.loads((units / f"{unit_stem(*unit)}.json").read_text())
        n_test[info["data"]] = min(info["n_test"], n_test.get(info["data"], info["n_test"]))
    markdown = summary_markdown(summary, config, n_test)
    write_text(out / "summary.md", markdown)
    print(markdown)
    if figures:
        from icl_interp.lm.plots import write_compare_figures

        write_compare_figures(table, attention, out / "figures")
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = CompareConfig()
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(defaults.models),
        help="packaged name, tiny-<arch>, HF dir or .gguf",
    )
    parser.add_argument("--datasets", "--data", nargs="+", default=list(defaults.datasets))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(defaults.seeds))
    parser.add_argument(
        "--masks", nargs="+", default=list(defaults.masks), help="ICL masks: " + ", ".join(mask_names())
    )
    parser.add_argument(
        "--methods", nargs="+", default=list(defaults.methods), help="gd, lcgd, untrained"
    )
    parser.add_argument("--metrics", nargs="+", default=list(defaults.metrics))
    parser.add_argument(
        "--n-test", type=int, default=defaults.n_test, help="test examples per data set"
    )
    parser.add_argument(
        "--k", type=int, default=None, help="demonstrations (default: per data set)"
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="GD/LCGD learning rate (default: per data set)"
    )
    parser.add_argument(
        "--params", default=defaults.params, help="trained parameters: v, kv, attn, all"
    )
    parser.add_argument(
        "--finetune-dtype",
        default=defaults.finetune_dtype,
        help="auto, float32 or bfloat16 (GD/LCGD forward passes under bf16 autocast, ~2-3x "
        "faster on CPUs with AVX512-BF16); auto = bfloat16 where the hardware supports it",
    )
    parser.add_argument(
        "--max-len",
        type=int,
        default=defaults.max_len,
        help="prompt budget; demonstrations are dropped to fit",
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--heatmap-examples", type=int, default=defaults.heatmap_examples)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--source", default=defaults.source, help="auto, folder, package or hub")
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-figures", action="store_true")


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    from icl_interp.lm.finetune import PARAM_GROUP_NAMES

    if args.params not in PARAM_GROUP_NAMES:
        raise UserError(
            f"unknown parameter group {args.params!r}; valid groups: {', '.join(PARAM_GROUP_NAMES)}"
        )
    from icl_interp.lm.data import get_dataset

    return CompareConfig(
        models=tuple(args.models),
        datasets=tuple(get_dataset(name).name for name in args.datasets),
        seeds=tuple(args.seeds),
        masks=tuple(args.masks),
        methods=tuple(args.methods),
        metrics=tuple(args.metrics),
        n_test=args.n_test,
        k=args.k,
        lr=args.lr,
        params=args.params,
        finetune_dtype=args.finetune_dtype,
        max_len=args.max_len,
        batch_size=args.batch_size,
        heatmap_examples=args.heatmap_examples,
        data_dir=args.data_dir,
        source=args.source,
        device=args.device,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    run_compare(config, args.out, figures=not args.no_figures)
    print(f"results in {args.out}")
    return 0
