"""``icl-interp compare``: ICL vs gradient descent (GD, layer-causal GD) in pretrained LMs.

For every model x data set x seed (one resumable *unit*): sample k demonstrations and the test
examples (``make_prompts``), capture zero-shot and ICL under each chosen mask kind
(``icl_interp.lm.conditions``), the models each chosen method finetunes (GD, LCGD; the
``untrained`` method repeats ZSL, ICL and GD inside a model whose attention and MLP weights are
re-drawn), and compute every registered metric per layer. Writes into ``--out`` (a folder owned
by this command and its settings: ``icl_interp.results.ResultFolder``):

- ``config.json``: the command, the config, package versions, the command line;
- ``units/<model>__<data>__seed<seed>.csv`` (+ ``.attention.csv``, ``.prompt_attention.csv``,
  ``.json`` with the unit's settings, data provenance and model identity, ``.timings.json``): one
  per unit, written atomically, so a rerun skips finished units (after checking their data and
  model are unchanged);
- ``metrics.csv``: tidy, one row per model x data x seed x mask x method x layer x metric
  (metrics that do not read the finetuned model are stored once per mask, method ``none``);
- ``attention.csv``: attention logits over the query tokens for the first ``--heatmap-examples``
  test examples, per condition x layer x head x token;
- ``prompt_attention.csv``: for the same examples, the last position's attention (probability and
  pre-mask logit) over the whole prompt, with each position's segment and role
  (``icl_interp.lm.attention``);
- ``summary.md`` / ``summary.csv``: mean over layers (last layer for accuracies) and seeds, one
  column per registered metric (x method for those that read the finetuned model);
- ``figures/``: per-layer metric curves and attention heatmaps (PNG + PDF), and the
  prompt-attention figures (``prompt_attention_*.png``, ``icl_interp.lm.attention_plots``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from icl_interp.errors import UserError
from icl_interp.lm.conditions import METHODS, ZERO_SHOT, conditions, icl, method_names
from icl_interp.lm.finetune import COMPUTE_DTYPES
from icl_interp.lm.metrics import METRICS, Conditions, compute_metrics, metric_names
from icl_interp.lm.metrics.core import NO_METHOD
from icl_interp.masks import MASKS, mask_names
from icl_interp.results import (
    ResultFolder,
    done,
    seed_everything,
    to_jsonable,
    write_csv,
    write_text,
)

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
PLAN_KEYS = frozenset({"models", "datasets", "seeds"})
CaptureKey = tuple[str, str]  # (model scope "base" | "untrained", condition or finetuning name)


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
    methods: tuple[str, ...] = field(default_factory=lambda: tuple(method_names()))
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
    metrics: tuple[str, ...] = field(default_factory=lambda: tuple(metric_names()))

    def __post_init__(self) -> None:
        for name in ("models", "datasets", "seeds", "masks", "methods", "metrics"):
            values = getattr(self, name)
            if not values:
                raise UserError(f"--{name} needs at least one value")
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            if repeated:
                raise UserError(f"--{name} lists {', '.join(repeated)} more than once")
        for mask in self.masks:
            MASKS.get(mask)
        for method in self.methods:
            METHODS.get(method)
        for metric in self.metrics:
            METRICS.get(metric)
        if any(seed < 0 for seed in self.seeds):
            raise UserError(f"--seeds must be >= 0, got {list(self.seeds)}")
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


def _captures(
    model: Any,
    prompts: Any,
    lr: float,
    seed: int,
    config: CompareConfig,
    on_model: Callable[[str, str, Any, Any], None] | None = None,
) -> tuple[dict[CaptureKey, Any], dict[str, Any], dict[str, float]]:
    """Every capture the unit needs, keyed by (model scope, condition or finetuning name);
    info (finetuning losses per step, dtype) and seconds per stage. ``on_model(scope, name,
    model, condition)`` is called with every model and condition captured."""
    from icl_interp.lm.capture import capture_condition
    from icl_interp.lm.finetune import (
        finetune_with_losses,
        resolve_compute_dtype,
        untrained_baseline,
    )

    captures: dict[CaptureKey, Any] = {}
    losses: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    methods = [METHODS.get(name) for name in config.methods]
    scopes = ["base"] + (["untrained"] if any(m.untrained for m in methods) else [])
    for scope in scopes:
        scoped = model if scope == "base" else untrained_baseline(model, seed=seed)
        prefix = "" if scope == "base" else f"{scope} "
        for condition in conditions(config.masks):
            started = time.perf_counter()
            captures[scope, condition.name] = capture_condition(
                scoped,
                prompts,
                condition,
                batch_size=config.batch_size,
                desc=prefix + condition.name,
            )
            seconds[prefix + condition.name] = round(time.perf_counter() - started, 1)
            if on_model is not None:
                on_model(scope, condition.name, scoped, condition)
        for finetune in dict.fromkeys(
            m.finetune for m in methods if m.untrained == (scope != "base")
        ):
            started = time.perf_counter()
            tuned, step_losses = finetune_with_losses(
                scoped,
                prompts.demo_ids,
                method=finetune,
                lr=lr,
                params=config.params,
                seed=seed,
                compute_dtype=config.finetune_dtype,
                progress=True,
            )
            seconds[f"{prefix}{finetune} finetuning"] = round(time.perf_counter() - started, 1)
            losses[prefix + finetune] = [round(loss, 5) for loss in step_losses]
            started = time.perf_counter()
            captures[scope, finetune] = capture_condition(
                tuned, prompts, ZERO_SHOT, batch_size=config.batch_size, desc=prefix + finetune
            )
            seconds[prefix + finetune] = round(time.perf_counter() - started, 1)
            if on_model is not None:
                on_model(scope, finetune, tuned, ZERO_SHOT)
    info = {
        "finetune_dtype": resolve_compute_dtype(config.finetune_dtype, config.device),
        "train_loss_per_step": losses,
    }
    return captures, info, seconds


def unit_metrics(
    captures: dict[CaptureKey, Any], config: CompareConfig, *, model: str, data: str, seed: int
) -> pd.DataFrame:
    """The tidy metric rows of one unit: per ICL mask, the metrics that do not read the
    finetuned model once (method ``none``), then the others once per method."""
    chosen = [METRICS.get(name) for name in config.metrics]
    once = [m.name for m in chosen if not m.per_method]
    per_method = [m.name for m in chosen if m.per_method]
    frames = []
    for mask in config.masks:
        condition = icl(mask).name
        if once:
            base = Conditions(captures["base", "zsl"], captures["base", condition], seed=seed)
            frames.append(compute_metrics(base, once).assign(mask=mask, method=NO_METHOD))
        for name in config.methods if per_method else ():
            method = METHODS.get(name)
            scope = "untrained" if method.untrained else "base"
            conditions_ = Conditions(
                zsl=captures[scope, "zsl"],
                icl=captures[scope, condition],
                ft=captures[scope, method.finetune],
                seed=seed,
            )
            frames.append(compute_metrics(conditions_, per_method).assign(mask=mask, method=name))
    table = pd.concat(frames, ignore_index=True).assign(model=model, data=data, seed=seed)
    return table[UNIT_COLUMNS]


def attention_rows(
    captures: dict[CaptureKey, Any], tokenizer: Any, prompts: Any, n_examples: int
) -> pd.DataFrame:
    """Attention logits over the query tokens for the first ``n_examples`` examples (tidy),
    for every capture of the base model (zero-shot, ICL per mask, each finetuned model)."""
    rows = []
    names = [name for scope, name in captures if scope == "base"]
    for example in range(min(n_examples, prompts.n_examples)):
        tokens = tokenizer.convert_ids_to_tokens(prompts.query_ids[example].tolist())
        for name in names:
            logits = captures["base", name].attn_logits[example]
            n_layers, n_heads, n_tokens = logits.shape
            for layer in range(n_layers):
                for head in range(n_heads):
                    for position in range(n_tokens):
                        rows.append(
                            (
                                example,
                                name,
                                layer,
                                head,
                                position,
                                tokens[position],
                                float(logits[layer, head, position]),
                            )
                        )
    return pd.DataFrame(rows, columns=ATTENTION_COLUMNS[3:])


def unit_settings(config: CompareConfig) -> dict[str, Any]:
    """The settings a unit's numbers depend on (everything but the plan of units)."""
    return {k: v for k, v in to_jsonable(config).items() if k not in PLAN_KEYS}


def _unit_prompts(model: Any, data: str, seed: int, config: CompareConfig) -> tuple[Any, Any, Any]:
    from icl_interp.lm.data import make_prompts

    return make_prompts(
        model.tokenizer,
        data,
        n_test=config.n_test,
        seed=seed,
        k=config.k,
        max_len=config.max_len,
        context=int(model.cfg.n_ctx),
        data_dir=config.data_dir,
        source=config.source,
    )


def run_unit(
    model: Any,
    model_name: str,
    data: str,
    seed: int,
    config: CompareConfig,
    folder: ResultFolder,
) -> None:
    """Compute and write one model x data x seed unit (metrics CSV last: it marks the unit done)."""
    from icl_interp.lm.attention import PromptAttentionCollector
    from icl_interp.lm.models import model_identity

    units = folder.path / "units"
    stem = unit_stem(model_name, data, seed)
    started = time.perf_counter()
    seed_everything(seed)
    spec, prompts, provenance = _unit_prompts(model, data, seed, config)
    lr = config.lr or spec.gd_lr
    prompt_attention = PromptAttentionCollector(prompts, config.heatmap_examples)
    captures, info, seconds = _captures(
        model, prompts, lr, seed, config, on_model=prompt_attention.add
    )
    seconds["prompt attention"] = prompt_attention.seconds
    attention = attention_rows(captures, model.tokenizer, prompts, config.heatmap_examples)
    key = {"model": model_name, "data": spec.name, "seed": seed}
    info = {
        **key,
        "settings": unit_settings(config),
        "model_identity": model_identity(model_name),
        "lr": lr,
        **info,
        "prompts": provenance.to_dict(),
        "k_used": prompts.k_used,
        "n_test": prompts.n_examples,
    }
    metrics = unit_metrics(captures, config, model=model_name, data=spec.name, seed=seed)
    folder.claim()
    write_csv(units / f"{stem}.attention.csv", attention.assign(**key)[ATTENTION_COLUMNS])
    write_csv(units / f"{stem}.prompt_attention.csv", prompt_attention.table(**key))
    write_text(units / f"{stem}.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    seconds["unit"] = round(time.perf_counter() - started, 1)
    write_text(units / f"{stem}.timings.json", json.dumps(seconds, indent=2) + "\n")
    write_csv(units / f"{stem}.csv", metrics)


def check_finished_unit(units: Path, unit: tuple[str, str, int], config: CompareConfig) -> None:
    """A finished unit is reused only if its settings, data and model are the current ones."""
    from icl_interp.lm.data import examples_fingerprint, load_examples
    from icl_interp.lm.models import model_identity

    model_name, data, _ = unit
    info_file = units / f"{unit_stem(*unit)}.json"
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
        recorded = (info["settings"], info["prompts"]["fingerprint"], info["model_identity"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(
            f"{info_file} is missing or corrupt; delete the unit's files to recompute it"
        ) from None
    settings, fingerprints, identity = recorded
    if settings != unit_settings(config):
        raise UserError(f"{info_file} was made with other settings; pass a new --out")
    for split, fingerprint in fingerprints.items():
        examples = load_examples(data, split, config.data_dir, source=config.source)
        if examples_fingerprint(examples) != fingerprint:
            raise UserError(
                f"the {data} {split} data changed since {info_file.name} was computed; "
                "pass a new --out (or restore the data)"
            )
    if identity != model_identity(model_name):
        raise UserError(
            f"model {model_name} changed since {info_file.name} was computed "
            f"({identity} -> {model_identity(model_name)}); pass a new --out"
        )


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


def summary_columns(metrics: list[str], methods: list[str]) -> list[tuple[str, str, str]]:
    """(column label, metric, method) of the summary, read from the registries: per-layer-mean
    metrics first, then last-layer ones, each in registration order; a metric that reads the
    finetuned model gets one column per method ("SimAOU GD"), the others one ("SimAOU random")."""
    order = metric_names()
    chosen = sorted(
        (METRICS.get(name) for name in metrics),
        key=lambda m: (m.over_layers == "last", order.index(m.name)),
    )
    columns = []
    for metric in chosen:
        if metric.per_method:
            columns += [
                (f"{metric.label} {METHODS.get(method).label}", metric.name, method)
                for method in methods
            ]
        else:
            columns.append((metric.label, metric.name, NO_METHOD))
    return columns


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rows model x mask x data (plus a per-model/mask mean row); columns ``summary_columns``."""
    reduced = layer_reduced(table)
    per_data = reduced.groupby(["model", "mask", "method", "metric", "data"], as_index=False)[
        "value"
    ].mean()
    registered = [name for name in dict.fromkeys(table["metric"]) if name in METRICS]
    methods = [name for name in method_names() if name in set(table["method"])]
    columns = {}
    for label, metric, method in summary_columns(registered, methods):
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


def result_folder(out: Path, config: CompareConfig) -> ResultFolder:
    """The ``--out`` folder as owned by ``compare`` with ``config`` (the plan of units may grow)."""
    return ResultFolder(Path(out), "compare", config, may_differ=PLAN_KEYS)


def run_compare(config: CompareConfig, out: Path, *, figures: bool = True) -> pd.DataFrame:
    """Run (or resume) every unit, then write the combined tables, summary and figures.

    Nothing is written into ``out`` until the first unit's numbers exist, so a run that
    fails early leaves the folder as it was.
    """
    folder = result_folder(out, config)
    folder.check()
    units = folder.path / "units"
    plan = [(m, d, s) for m in config.models for d in config.datasets for s in config.seeds]
    finished = [unit for unit in plan if done(units / f"{unit_stem(*unit)}.csv")]
    for unit in finished:
        check_finished_unit(units, unit, config)
    todo = [unit for unit in plan if unit not in finished]
    if finished:
        print(f"resuming: {len(finished)} of {len(plan)} units already done in {units}")
    loaded: dict[str, Any] = {}
    for model_name, data, seed in tqdm(todo, desc="units", unit="unit"):
        if model_name not in loaded:
            from icl_interp.lm.models import load_model

            loaded.clear()
            loaded[model_name] = load_model(model_name, device=config.device)
        run_unit(loaded[model_name], model_name, data, seed, config, folder)
    loaded.clear()
    folder.claim()

    def read(unit: tuple[str, str, int], suffix: str, **options: Any) -> pd.DataFrame:
        path = units / f"{unit_stem(*unit)}{suffix}"
        try:
            return pd.read_csv(path, **options)
        except (OSError, ValueError) as err:
            raise UserError(
                f"{path} is unreadable or corrupt ({type(err).__name__}); delete it to recompute the unit"
            ) from None

    table = pd.concat([read(unit, ".csv") for unit in plan], ignore_index=True)
    attention = pd.concat(
        [read(unit, ".attention.csv", keep_default_na=False) for unit in plan], ignore_index=True
    )
    write_csv(out / "metrics.csv", table)
    write_csv(out / "attention.csv", attention)
    prompt_attention = _write_prompt_attention(units, plan, out / "prompt_attention.csv")
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
        if prompt_attention is not None and not prompt_attention.empty:
            from icl_interp.lm.attention_plots import write_attention_figures

            write_attention_figures(prompt_attention, out / "figures")
    return table


def _write_prompt_attention(
    units: Path, plan: list[tuple[str, str, int]], path: Path
) -> pd.DataFrame | None:
    """Concatenate the units' ``.prompt_attention.csv`` into ``path`` and return it (units from
    before it existed have none; ``None`` if no unit has one)."""
    from icl_interp.lm.attention import read_prompt_attention

    files = [units / f"{unit_stem(*unit)}.prompt_attention.csv" for unit in plan]
    tables = [read_prompt_attention(file) for file in files if file.exists()]
    if not tables:
        return None
    table = pd.concat(tables, ignore_index=True)
    write_csv(path, table)
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
        "--masks",
        nargs="+",
        default=list(defaults.masks),
        help="ICL masks: " + ", ".join(mask_names()),
    )
    parser.add_argument(
        "--methods", nargs="+", default=list(defaults.methods), help=", ".join(method_names())
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
