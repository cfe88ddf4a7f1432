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
  model are unchanged); units run through the run kernel (``icl_interp.runs``: here, or
  ``--workers N`` local processes, Ray actors or a submitit job array, ``--backend``), which
  send their files back to be written here;
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
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from icl_interp.errors import UserError
from icl_interp.lm.compare_config import CompareConfig, config_from_args
from icl_interp.lm.conditions import METHODS, ZERO_SHOT, conditions, icl
from icl_interp.lm.metrics import METRICS, Conditions, compute_metrics
from icl_interp.lm.metrics.accuracy import correct
from icl_interp.lm.metrics.core import NO_METHOD
from icl_interp.lm.record import select_examples
from icl_interp.lm.report import (
    headline,
    intervals,
    layer_reduced,
    paired_difference,
    summary_markdown,
    summary_table,
)
from icl_interp.progress import progress
from icl_interp.results import (
    ResultFolder,
    done,
    read_csv,
    refuse_changed,
    seed_everything,
    to_jsonable,
    write_csv,
    write_text,
)
from icl_interp.runs import backend_for, map_units

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
RUN_KEYS = frozenset({"backend", "workers", "threads"})  # how units run, not what they compute
CaptureKey = tuple[str, str]  # (model scope "base" | "untrained", condition or finetuning name)
Unit = tuple[str, str, int]  # (model, data, seed)
UnitFiles = dict[str, "pd.DataFrame | str"]  # file suffix -> table or text


# --------------------------------------------------------------------------- one unit


def unit_stem(model: str, data: str, seed: int) -> str:
    """A unit's file stem; ``file_stem`` keeps two models from sharing one."""
    from icl_interp.results import file_stem

    return f"{file_stem(model)}__{data}__seed{seed}"


def _finetune_run(
    model: Any,
    demo_ids: list[Any],
    method: str,
    lr: float,
    seed: int,
    config: CompareConfig,
    progress: bool = False,
) -> tuple[Any, list[float]]:
    """``finetune_with_losses`` with the run's trained parameters and compute dtype."""
    from icl_interp.lm.finetune import finetune_with_losses

    return finetune_with_losses(
        model,
        demo_ids,
        method=method,
        lr=lr,
        params=config.params,
        seed=seed,
        compute_dtype=config.finetune_dtype,
        progress=progress,
    )


def _captures(
    model: Any,
    prompt_sets: dict[str, Any],
    lrs: dict[str, float],
    seed: int,
    config: CompareConfig,
    on_model: Callable[[str, str, Any, Any], None] | None = None,
) -> tuple[dict[CaptureKey, Any], dict[str, Any], dict[str, float]]:
    """Every capture the unit needs, keyed by (scope, condition or finetuning name); info
    (finetuning losses per step, dtype) and seconds per stage. ``on_model(scope, name, model,
    condition)`` is called with every model and condition captured on the test prompts.

    Scopes (``METHODS``' ``scope``): ``base`` (the model, demonstrations A), ``untrained``
    (re-drawn weights, A), ``other`` (the model, the disjoint demonstrations B) and ``shuffled``
    (the model, A with permuted labels); ``prompt_sets`` maps "base", "other" and "shuffled" to
    their prompt sets (the queries are A's in all). ICL is captured in every scope, finetunings
    where a chosen method needs them; the finetuned models are captured zero-shot on A's
    queries. ``lrs`` maps "gd", "lcgd" and "untrained gd" to their learning rates (a
    finetuning on B or A' uses the same method's lr on A).
    """
    from icl_interp.lm.capture import capture_condition
    from icl_interp.lm.finetune import resolve_compute_dtype, untrained_baseline

    captures: dict[CaptureKey, Any] = {}
    losses: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    methods = [METHODS.get(name) for name in config.methods]
    prompts = prompt_sets["base"]

    def timed(stage: str, work: Any) -> Any:
        started = time.perf_counter()
        result = work()
        seconds[stage] = round(time.perf_counter() - started, 1)
        return result

    def capture(scope: str, name: str, scoped: Any, prompt_set: Any, condition: Any) -> None:
        prefix = "" if scope == "base" else f"{scope} "
        captures[scope, name] = timed(
            prefix + name,
            lambda: capture_condition(
                scoped, prompt_set, condition, batch_size=config.batch_size, desc=prefix + name
            ),
        )
        if on_model is not None and prompt_set is prompts:
            on_model(scope, name, scoped, condition)

    for scope in dict.fromkeys(["base", *(m.scope for m in methods)]):
        prefix = "" if scope == "base" else f"{scope} "
        scoped = untrained_baseline(model, seed=seed) if scope == "untrained" else model
        prompt_set = prompt_sets.get(scope, prompts)
        for condition in conditions(config.masks):
            if scope in ("base", "untrained") or condition.demonstrations:
                capture(scope, condition.name, scoped, prompt_set, condition)
        for finetune in dict.fromkeys(m.finetune for m in methods if m.scope == scope):
            if finetune is None:
                continue
            lr = lrs[f"untrained {finetune}" if scope == "untrained" else finetune]
            tuned, step_losses = timed(
                f"{prefix}{finetune} finetuning",
                lambda scoped=scoped, prompt_set=prompt_set, finetune=finetune, lr=lr: (
                    _finetune_run(scoped, prompt_set.demo_ids, finetune, lr, seed, config, True)
                ),
            )
            losses[prefix + finetune] = [round(loss, 5) for loss in step_losses]
            capture(scope, finetune, tuned, prompts, ZERO_SHOT)
    info = {
        "finetune_dtype": resolve_compute_dtype(config.finetune_dtype, config.device),
        "train_loss_per_step": losses,
    }
    return captures, info, seconds


FINETUNINGS = ["gd", "lcgd", "untrained gd"]


def policy_lrs(model_name: str, spec: Any, config: CompareConfig) -> tuple[dict[str, float], str]:
    """Each finetuning's lr without a sweep, and where it came from: a fixed ``--lr``, the
    packaged chosen table (``--lr chosen``, when it has every finetuning), else the data set's
    reference lr."""
    if not isinstance(config.lr, str):
        return dict.fromkeys(FINETUNINGS, config.lr), "fixed (--lr)"
    if config.lr == "chosen":
        from icl_interp.lm.lr_rule import CHOSEN_LRS, chosen_lrs

        path = CHOSEN_LRS if config.lr_table is None else Path(config.lr_table)
        table = chosen_lrs(model_name, spec.name, path)
        if set(FINETUNINGS) <= set(table):
            return {name: table[name] for name in FINETUNINGS}, f"chosen ({path.name})"
        if table:
            lacking = ", ".join(name for name in FINETUNINGS if name not in table)
            raise UserError(
                f"the lr table {path} gives {model_name} on {spec.name} an lr for "
                f"{', '.join(table)} but not for {lacking}; add those rows, or pass --lr reference"
            )
    return dict.fromkeys(FINETUNINGS, spec.gd_lr), "reference (the paper's, per data set)"


def unit_lrs(
    model: Any,
    model_name: str,
    data: str,
    seed: int,
    spec: Any,
    config: CompareConfig,
    folder: ResultFolder | None = None,
) -> tuple[dict[str, float], str, pd.DataFrame | None]:
    """Each finetuning's lr ("gd", "lcgd", "untrained gd"), where it came from, and the sweep
    table (``--lr-grid`` only): a fixed ``--lr``, the data set's reference lr, the packaged
    chosen table, or chosen now from ``--lr-grid`` by ``icl_interp.lm.lr_rule``. With a
    ``folder``, each sweep trial is kept under ``units/<unit>.lr_trials/`` as it finishes, and
    a rerun reuses it."""
    if not config.lr_grid:
        fixed, source = policy_lrs(model_name, spec, config)
        if config.lr == "chosen" and not source.startswith("chosen"):
            print(
                f"no chosen lr for {model_name} on {spec.name} in the lr table; using the "
                f"reference paper's lr {spec.gd_lr:g} (--lr-grid chooses one by the rule)"
            )
        return fixed, source, None
    lrs, sweep = _swept_lrs(model, model_name, data, seed, config, folder)
    for name in FINETUNINGS:
        lrs.setdefault(name, lrs.get("gd", spec.gd_lr))
    return lrs, "swept (--lr-grid)", sweep


def _trial_cache(
    folder: ResultFolder | None, config: CompareConfig, unit: Unit, validation: Any
) -> Any:
    """Where a unit's sweep trials are kept (None without a folder): valid for these settings,
    this model and these validation tokens only."""
    from icl_interp.lm.lr_rule import TrialCache, tokens_fingerprint
    from icl_interp.lm.models import model_identity

    if folder is None:
        return None
    key = {
        "settings": unit_settings(config),
        "model_identity": model_identity(unit[0]),
        "validation_tokens": tokens_fingerprint(validation),
    }
    trials_folder = folder.path / "units" / f"{unit_stem(*unit)}.lr_trials"
    return TrialCache(trials_folder, key, before_write=folder.claim)


def _swept_lrs(
    model: Any,
    model_name: str,
    data: str,
    seed: int,
    config: CompareConfig,
    folder: ResultFolder | None,
) -> tuple[dict[str, float], pd.DataFrame | None]:
    """Each needed finetuning's lr chosen from ``--lr-grid`` on validation data, and the
    sweep's table."""
    from icl_interp.lm.capture import capture_condition
    from icl_interp.lm.finetune import untrained_baseline
    from icl_interp.lm.lr_rule import sweep_with_edges, trials_table, validation_prompts

    validation = validation_prompts(
        model.tokenizer,
        data,
        k=config.k,
        n_val=config.n_val,
        seed=seed,
        max_len=config.max_len,
        context=int(model.cfg.n_ctx),
        data_dir=config.data_dir,
        source=config.source,
    )

    def validation_capture(scoped: Any, condition: Any = ZERO_SHOT) -> Any:
        return capture_condition(scoped, validation, condition, batch_size=config.batch_size)

    cache = _trial_cache(folder, config, (model_name, data, seed), validation)

    needed = {m.finetune for m in (METHODS.get(n) for n in config.methods) if not m.untrained}
    untrained = any(METHODS.get(n).untrained for n in config.methods)
    zsl = validation_capture(model)
    icl_norms = {
        f"icl_update_norm_{mask}": update_norm(validation_capture(model, icl(mask)), zsl)
        for mask in config.masks
    }
    lrs: dict[str, float] = {}
    tables = []
    for name in FINETUNINGS:
        scope_untrained = name.startswith("untrained")
        method = name.split()[-1]
        if (scope_untrained and not untrained) or (not scope_untrained and method not in needed):
            continue
        base = untrained_baseline(model, seed=seed) if scope_untrained else model
        base_zsl = validation_capture(base) if scope_untrained else zsl

        def score(lr: float, base: Any = base, method: str = method, reference: Any = base_zsl):
            tuned, losses = _finetune_run(base, validation.demo_ids, method, lr, seed, config)
            tuned_zsl = validation_capture(tuned)
            return {
                "accuracy": final_accuracy(tuned_zsl),
                "val_loss": label_loss(tuned_zsl),
                "train_loss": sum(losses) / len(losses),
                "update_norm": update_norm(tuned_zsl, reference),
            }

        lrs[name], trials = sweep_with_edges(
            config.lr_grid, cache.scored(name, score) if cache else score
        )
        zero_shot = final_accuracy(base_zsl)
        norms = {} if scope_untrained else icl_norms
        tables.append(
            trials_table(trials, lrs[name], finetuning=name, zero_shot_accuracy=zero_shot, **norms)
        )
    return lrs, pd.concat(tables, ignore_index=True) if tables else None


def update_norm(capture: Any, reference: Any) -> float:
    """Mean over examples and layers of |h - h_ref| (the attention output's change)."""
    return float((capture.attn_out - reference.attn_out).norm(dim=-1).mean())


def final_accuracy(capture: Any) -> float:
    """Accuracy of the model's own (last-layer) prediction over the capture's examples."""
    return float(correct(capture)[:, -1].float().mean())


def label_loss(capture: Any) -> float:
    """Mean cross-entropy of the true label among the label words (final layer)."""
    return float(
        torch.nn.functional.cross_entropy(capture.label_logits.float(), capture.labels).item()
    )


def unit_metrics(
    captures: dict[CaptureKey, Any],
    config: CompareConfig,
    *,
    model: str,
    data: str,
    seed: int,
    methods: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """The tidy metric rows of one unit: per ICL mask, the metrics that do not read the
    compared model once (method ``none``), then the others once per method (``methods``,
    default the config's; ``()`` for none)."""
    chosen = [METRICS.get(name) for name in config.metrics]
    once = [m.name for m in chosen if not m.per_method]
    per_method = [m.name for m in chosen if m.per_method]
    frames = []
    for mask in config.masks:
        condition = icl(mask).name
        if once and methods is None:
            base = Conditions(captures["base", "zsl"], captures["base", condition], seed=seed)
            frames.append(compute_metrics(base, once).assign(mask=mask, method=NO_METHOD))
        for name in (config.methods if methods is None else methods) if per_method else ():
            frames.append(
                compute_metrics(method_conditions(captures, name, mask, seed), per_method).assign(
                    mask=mask, method=name
                )
            )
    table = pd.concat(frames, ignore_index=True).assign(model=model, data=data, seed=seed)
    return table[UNIT_COLUMNS]


def method_conditions(
    captures: dict[CaptureKey, Any], method_name: str, mask: str, seed: int
) -> Conditions:
    """ZSL and ICL (under ``mask``) with the compared model's capture as ``ft``; for a
    finetuning of A (GD, LCGD), also ICL and the same finetuning on B and on A' where the unit
    has them (the demonstration- and label-specific metrics read those)."""
    method = METHODS.get(method_name)
    condition = icl(mask).name
    home = "untrained" if method.untrained else "base"
    compared = condition if method.finetune is None else method.finetune
    references = {}
    if method.scope == "base" and method.finetune is not None:
        for scope in ("other", "shuffled"):
            references[f"icl_{scope}"] = captures.get((scope, condition))
            references[f"ft_{scope}"] = captures.get((scope, method.finetune))
    return Conditions(
        zsl=captures[home, "zsl"],
        icl=captures[home, condition],
        ft=captures[method.scope, compared],
        seed=seed,
        **references,
    )


def unit_bootstrap(
    captures: dict[CaptureKey, Any], config: CompareConfig, *, model: str, data: str, seed: int
) -> pd.DataFrame:
    """Layer-reduced metric values on ``config.bootstrap`` resamplings (with replacement) of
    the unit's test examples, seeded by the unit's seed; columns ``KEYS + replicate, value``."""
    n_examples = int(captures["base", "zsl"].labels.shape[0])
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(n_examples, (config.bootstrap, n_examples), generator=generator)
    frames = []
    for replicate, index in enumerate(progress(draws, desc="bootstrap", leave=False)):
        resampled = {key: select_examples(c, index) for key, c in captures.items()}
        table = unit_metrics(resampled, config, model=model, data=data, seed=seed)
        frames.append(layer_reduced(table).assign(replicate=replicate))
    columns = ["model", "data", "seed", "mask", "method", "metric", "replicate", "value"]
    return (
        pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    )


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
    """The settings a unit's numbers depend on (everything but the plan of units and how
    units run)."""
    settings = {k: v for k, v in to_jsonable(config).items() if k not in PLAN_KEYS | RUN_KEYS}
    if settings.get("lr_table") is not None:  # by content: each unit records the lrs it used
        settings["lr_table"] = "given"
    return settings


def _unit_prompts(
    model: Any, data: str, seed: int, config: CompareConfig
) -> tuple[Any, dict[str, Any], Any]:
    """The data set's spec, the prompt sets by scope ("base": demonstrations A; "other": a
    disjoint draw B; "shuffled": A with permuted labels; each only where a chosen method reads
    it) and the provenance."""
    from icl_interp.lm.data import make_prompt_sets, with_permuted_labels

    scopes = {METHODS.get(name).scope for name in config.methods}
    spec, prompts, other, provenance = make_prompt_sets(
        model.tokenizer,
        data,
        n_test=config.n_test,
        seed=seed,
        k=config.k,
        max_len=config.max_len,
        context=int(model.cfg.n_ctx),
        data_dir=config.data_dir,
        source=config.source,
        other_draw="other" in scopes,
    )
    prompt_sets = {"base": prompts}
    if other is not None:
        prompt_sets["other"] = other
    if "shuffled" in scopes:
        prompt_sets["shuffled"] = with_permuted_labels(model.tokenizer, spec, prompts, seed)
    return spec, prompt_sets, provenance


def lr_sensitivity(
    model: Any,
    prompt_sets: dict[str, Any],
    captures: dict[CaptureKey, Any],
    lr_sweep: pd.DataFrame,
    seed: int,
    config: CompareConfig,
    *,
    model_name: str,
    data: str,
) -> pd.DataFrame:
    """The per-method metric rows of GD and LCGD at every lr their sweep scored (diverged ones
    left out), on the unit's own test queries (column ``lr``): each finetuning of A, and of B
    where the unit has that floor, is re-run at the lr; at the chosen lr the unit's own
    captures are used. Only validation data chose the lr; this shows how the answer moves
    with it."""
    from icl_interp.lm.capture import capture_condition

    frames = []
    for finetune in ("gd", "lcgd"):
        trials = lr_sweep[(lr_sweep["finetuning"] == finetune) & lr_sweep["val_accuracy"].notna()]
        if ("base", finetune) not in captures or trials.empty:
            continue
        for lr, chosen in zip(trials["lr"], trials["chosen"], strict=True):
            at_lr = dict(captures)
            for scope in ("base", "other") if not chosen else ():
                if (scope, finetune) in captures:
                    tuned, _ = _finetune_run(
                        model, prompt_sets[scope].demo_ids, finetune, float(lr), seed, config
                    )
                    at_lr[scope, finetune] = capture_condition(
                        tuned, prompt_sets["base"], ZERO_SHOT, batch_size=config.batch_size
                    )
            rows = unit_metrics(
                at_lr, config, model=model_name, data=data, seed=seed, methods=(finetune,)
            )
            frames.append(rows.assign(lr=float(lr)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def compute_unit(
    model: Any,
    model_name: str,
    data: str,
    seed: int,
    config: CompareConfig,
    folder: ResultFolder | None = None,
) -> UnitFiles:
    """One model x data x seed unit's files, in writing order (the metrics CSV, which marks
    the unit done, last); with a ``folder``, the lr sweep's trials are kept there as they
    finish."""
    from icl_interp.lm.attention import PromptAttentionCollector
    from icl_interp.lm.models import model_identity

    started = time.perf_counter()
    seed_everything(seed)
    spec, prompt_sets, provenance = _unit_prompts(model, data, seed, config)
    prompts = prompt_sets["base"]
    lrs, lr_source, lr_sweep = unit_lrs(model, model_name, data, seed, spec, config, folder)
    prompt_attention = PromptAttentionCollector(prompts, config.heatmap_examples)
    captures, info, seconds = _captures(
        model, prompt_sets, lrs, seed, config, on_model=prompt_attention.add
    )
    seconds["prompt attention"] = prompt_attention.seconds
    attention = attention_rows(captures, model.tokenizer, prompts, config.heatmap_examples)
    key = {"model": model_name, "data": spec.name, "seed": seed}
    info = {
        **key,
        "settings": unit_settings(config),
        "model_identity": model_identity(model_name),
        "lr": lrs,
        "lr_source": lr_source,
        **info,
        "prompts": provenance.to_dict(),
        "k_used": prompts.k_used,
        "n_test": prompts.n_examples,
    }
    if "shuffled" in prompt_sets:
        kept = [
            a.label == b.label
            for a, b in zip(
                prompts.demonstrations, prompt_sets["shuffled"].demonstrations, strict=True
            )
        ]
        info["shuffled_labels_kept"] = sum(kept)
    metrics = unit_metrics(captures, config, model=model_name, data=spec.name, seed=seed)
    resampled = unit_bootstrap(captures, config, model=model_name, data=spec.name, seed=seed)
    files: UnitFiles = {}
    if lr_sweep is not None:
        files[".lr_sweep.csv"] = lr_sweep.assign(**key)
        if config.lr_sensitivity:
            started_sensitivity = time.perf_counter()
            sensitivity = lr_sensitivity(
                model, prompt_sets, captures, lr_sweep, seed, config,
                model_name=model_name, data=spec.name,
            )  # fmt: skip
            seconds["lr sensitivity"] = round(time.perf_counter() - started_sensitivity, 1)
            files[".lr_sensitivity.csv"] = sensitivity
    files[".bootstrap.csv"] = resampled
    files[".attention.csv"] = attention.assign(**key)[ATTENTION_COLUMNS]
    files[".prompt_attention.csv"] = prompt_attention.table(**key)
    files[".json"] = json.dumps(info, indent=2, sort_keys=True) + "\n"
    seconds["unit"] = round(time.perf_counter() - started, 1)
    files[".timings.json"] = json.dumps(seconds, indent=2) + "\n"
    files[".csv"] = metrics
    return files


def write_unit(folder: ResultFolder, unit: Unit, files: UnitFiles) -> None:
    """Claim ``folder`` and write a unit's files, each atomically, in order."""
    folder.claim()
    stem = folder.path / "units" / unit_stem(*unit)
    for suffix, content in files.items():
        path = stem.with_name(stem.name + suffix)
        if isinstance(content, str):
            write_text(path, content)
        else:
            write_csv(path, content)


def check_finished_unit(units: Path, unit: Unit, config: CompareConfig) -> None:
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
    refuse_changed(
        f"{info_file} was made with other settings",
        settings,
        unit_settings(config),
        "pass a new --out",
    )
    current = {
        f"{data} {split} data": examples_fingerprint(
            load_examples(data, split, config.data_dir, source=config.source)
        )
        for split in fingerprints
    }
    refuse_changed(
        f"the inputs changed since {info_file.name} was computed",
        {"model": identity, **{f"{data} {split} data": fp for split, fp in fingerprints.items()}},
        {"model": model_identity(model_name), **current},
        "restore them, or pass a new --out",
    )
    if not config.lr_grid:
        from icl_interp.lm.data import get_dataset

        lrs, _ = policy_lrs(model_name, get_dataset(data), config)
        refuse_changed(
            f"{info_file.name} used other lrs than the lr table now gives",
            {"lr": info.get("lr")},
            {"lr": lrs},
            "pass a new --out",
        )


# --------------------------------------------------------------------------- running units


class UnitComputer:
    """The run kernel's worker for one config (``icl_interp.runs``): computes a unit into
    ``folder`` (its lr-sweep trials, as they finish) and returns its files, keeping the last
    model it loaded (each backend's worker process builds one, and loads lazily)."""

    def __init__(self, config: CompareConfig, folder: ResultFolder) -> None:
        self.config = config
        self.folder = folder
        self.model_name: str | None = None
        self.model: Any = None

    def __call__(self, unit: Unit) -> UnitFiles:
        model_name, data, seed = unit
        if model_name != self.model_name:
            from icl_interp.lm.models import load_model

            self.model = None  # free the previous model before loading the next
            self.model = load_model(model_name, device=self.config.device)
            self.model_name = model_name
        return compute_unit(self.model, model_name, data, seed, self.config, self.folder)


# --------------------------------------------------------------------------- driver


def result_folder(out: Path, config: CompareConfig) -> ResultFolder:
    """The ``--out`` folder as owned by ``compare`` with ``config`` (the plan of units may grow)."""
    # the lr table by content, not path: each unit records the lrs it used, and a resume
    # compares them with the table's (check_finished_unit). The lr grid may differ: each
    # finished unit and each sweep trial records its own (a grid in which every lr diverged
    # leaves a folder the corrected grid may resume)
    ignore = RUN_KEYS | {"lr_table"}
    may_differ = PLAN_KEYS | {"lr_grid"}
    return ResultFolder(Path(out), "compare", config, ignore=ignore, may_differ=may_differ)


def run_compare(config: CompareConfig, out: Path, *, figures: bool = True) -> pd.DataFrame:
    """Run (or resume) every unit, then write the combined tables, summary and figures.

    Nothing is written into ``out`` until the first numbers (a unit, or a trial of an lr
    sweep) exist, so a run that fails early leaves the folder as it was.
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
    backend = backend_for(config.backend, config.workers, config.threads, folder.path)
    for unit, files in map_units(UnitComputer(config, folder), todo, backend):
        write_unit(folder, unit, files)
    folder.claim()

    def read(unit: Unit, suffix: str, **options: Any) -> pd.DataFrame:
        return read_csv(units / f"{unit_stem(*unit)}{suffix}", **options)

    table = pd.concat([read(unit, ".csv") for unit in plan], ignore_index=True)
    resampled = pd.concat([read(unit, ".bootstrap.csv") for unit in plan], ignore_index=True)
    lr_sweep = None
    if config.lr_grid:
        lr_sweep = pd.concat([read(unit, ".lr_sweep.csv") for unit in plan], ignore_index=True)
        write_csv(out / "lr_sweep.csv", lr_sweep)
    if config.lr_sensitivity:
        sensitivity = [read(unit, ".lr_sensitivity.csv") for unit in plan]
        write_csv(out / "lr_sensitivity.csv", pd.concat(sensitivity, ignore_index=True))
    attention = pd.concat(
        [read(unit, ".attention.csv", keep_default_na=False) for unit in plan], ignore_index=True
    )
    write_csv(out / "metrics.csv", table)
    write_csv(out / "attention.csv", attention)
    prompt_attention = _write_prompt_attention(units, plan, out / "prompt_attention.csv")
    summary = summary_table(table)
    write_csv(out / "summary.csv", summary)
    bounds = intervals(resampled) if len(resampled) else None
    if bounds is not None:
        write_csv(out / "bootstrap.csv", resampled)
        write_csv(out / "summary_intervals.csv", bounds)
        if {"gd", "lcgd"} <= set(config.methods):
            for metric in ("simaou", "simam_delta"):
                if metric in config.metrics:
                    write_csv(
                        out / f"difference_lcgd_gd__{metric}.csv",
                        paired_difference(table, resampled, metric, "lcgd", "gd"),
                    )
    n_test: dict[str, int] = {}
    for unit in plan:
        info = json.loads((units / f"{unit_stem(*unit)}.json").read_text())
        n_test[info["data"]] = min(info["n_test"], n_test.get(info["data"], info["n_test"]))
    markdown = summary_markdown(summary, list(config.seeds), config.n_test, n_test, bounds)
    write_text(out / "summary.md", markdown)
    if bounds is not None and "simaou" in config.metrics:
        print(headline(table, resampled))
    print(f"full table with intervals: {out / 'summary.md'}")
    if figures:
        from icl_interp.lm.plots import write_compare_figures

        write_compare_figures(table, attention, out / "figures", lr_sweep)
        if prompt_attention is not None and not prompt_attention.empty:
            from icl_interp.lm.attention_plots import write_attention_figures

            write_attention_figures(prompt_attention, out / "figures")
    return table


def _write_prompt_attention(units: Path, plan: list[Unit], path: Path) -> pd.DataFrame | None:
    """Concatenate the units' ``.prompt_attention.csv`` into ``path`` and return it (None if
    no unit has one)."""
    from icl_interp.lm.attention import read_prompt_attention

    files = [units / f"{unit_stem(*unit)}.prompt_attention.csv" for unit in plan]
    tables = [read_prompt_attention(file) for file in files if file.exists()]
    if not tables:
        return None
    table = pd.concat(tables, ignore_index=True)
    write_csv(path, table)
    return table


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from icl_interp.lm.models import check_device

    check_device(config.device)
    run_compare(config, args.out, figures=not args.no_figures)
    print(f"results in {args.out}")
    return 0
