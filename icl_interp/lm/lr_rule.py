"""Learning rates chosen by a rule fixed in advance, on data disjoint from the test examples.

The rule: for each model x data set x finetuning method, finetune on a separate demonstration
draw C (from the train split, seeded apart from the run's draws) at every learning rate of a
log grid, and score the finetuned model zero-shot on validation examples also drawn from the
train split (disjoint from C). The chosen lr maximises validation accuracy; ties go to the
lower validation label loss (cross-entropy of the true label among the label words), then to
the smaller lr; a run that diverges scores nothing. A choice on the grid's edge extends the
grid by one decade on that side and sweeps again, at most ``EDGE_EXTENSIONS`` times
(``sweep_with_edges``). The test split is never read, so the test examples cannot influence
the choice. Each trial also records the mean training loss and the update size (mean over
validation queries and layers of |h_FT - h_ZSL|, the attention output's change), so the lr
whose update is as large as ICL's can be read off; the zero-shot accuracy of the unchanged
model on the same validation examples is recorded beside the grid, so a reader sees whether
any lr helps.

The packaged table ``chosen_lrs.csv`` (``compare --lr chosen``, the default) holds one lr per
model x data set x finetuning, chosen by the same rule from sweeps over several seeds: the lr
with the highest validation accuracy averaged over the seeds (``chosen_table``).

Adaptation (``adapt-table --lr-grid``) has its own rule, for a different quantity (a model
adapted for hundreds of steps, not a finetuning on k demonstrations): adapt seed 0 with each
objective at every lr of the grid and take the lowest validation loss averaged over the
objectives, on episodes from the mixture data sets' test splits (never a held-out data set);
ties go to the smaller lr (``choose_adaptation_lr``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from icl_interp.errors import UserError
from icl_interp.results import refuse_changed, write_text

VALIDATION_SEED_OFFSET = 1_000_003  # the validation draw's seed: the run's seed plus this
EDGE_EXTENSIONS = 2  # how many times a choice on the grid's edge extends the grid by a decade
CHOSEN_LRS = Path(__file__).with_name("chosen_lrs.csv")
CHOSEN_COLUMNS = ["model", "data", "finetuning", "lr", "val_accuracy", "seeds", "grid"]
SCORES = ("accuracy", "val_loss", "train_loss", "update_norm")
Scores = dict[str, float]  # SCORES -> value
Score = Callable[[float], Scores]


@dataclass(frozen=True)
class LrTrial:
    """One grid point after finetuning at ``lr``: validation accuracy and label loss, mean
    training loss, and update size (all NaN when the finetuning diverged)."""

    lr: float
    accuracy: float
    val_loss: float = float("nan")
    train_loss: float = float("nan")
    update_norm: float = float("nan")


DIVERGED: Scores = dict.fromkeys(SCORES, float("nan"))


def choose(trials: Sequence[LrTrial]) -> float:
    """The lr with the highest validation accuracy; ties -> the lower validation label loss,
    then the smaller lr; NaN accuracy never wins.

    A ``UserError`` when every lr diverged."""
    finite = [t for t in trials if math.isfinite(t.accuracy)]
    if not finite:
        raise UserError(
            f"every learning rate in the grid diverged ({', '.join(f'{t.lr:g}' for t in trials)}); "
            "give a grid of smaller values"
        )

    def rank(t: LrTrial) -> tuple[float, float, float]:
        loss = t.val_loss if math.isfinite(t.val_loss) else math.inf
        return (-t.accuracy, loss, t.lr)

    return min(finite, key=rank).lr


def _scored(score: Score, lr: float) -> Scores:
    try:
        return score(lr)
    except UserError:  # a diverging finetuning
        return dict(DIVERGED)


def sweep(lrs: Sequence[float], score: Score) -> tuple[float, list[LrTrial]]:
    """Score every lr (``score(lr) -> {accuracy, val_loss, train_loss, update_norm}``; a
    ``UserError`` from a diverging finetuning scores NaN) and return the chosen lr with the
    trials."""
    trials = [LrTrial(lr, **_scored(score, lr)) for lr in sorted(lrs)]
    return choose(trials), trials


def _decade(lr: float, up: bool) -> float:
    return float(f"{lr * 10 if up else lr / 10:.6g}")


def sweep_with_edges(
    lrs: Sequence[float], score: Score, extensions: int = EDGE_EXTENSIONS
) -> tuple[float, list[LrTrial]]:
    """``sweep``, then, while the chosen lr is the grid's smallest or largest and fewer than
    ``extensions`` extensions were made, add the next decade on that side and choose again
    (each lr is scored once)."""
    scores: dict[float, Scores] = {}

    def once(lr: float) -> Scores:
        if lr not in scores:
            scores[lr] = _scored(score, lr)
        return scores[lr]

    grid = sorted(lrs)
    chosen, trials = sweep(grid, once)
    for _ in range(extensions):
        if len(grid) > 1 and chosen == grid[0]:
            grid = [_decade(grid[0], up=False), *grid]
        elif len(grid) > 1 and chosen == grid[-1]:
            grid = [*grid, _decade(grid[-1], up=True)]
        else:
            break
        chosen, trials = sweep(grid, once)
    return chosen, trials


class TrialCache:
    """A sweep's finished trials, one small JSON file each under ``folder``, so an interrupted
    sweep resumes at its first missing trial (a diverged trial is remembered too). A file that
    records another ``key`` (settings, model, validation tokens) than this run's is refused
    (``refuse_changed``), an unreadable one recomputed; ``before_write`` runs before each
    write (``compare`` claims its result folder there)."""

    def __init__(
        self, folder: Path, key: dict[str, Any], before_write: Callable[[], Any] = lambda: None
    ) -> None:
        self.folder = Path(folder)
        self.key = json.loads(json.dumps(key))  # as it reads back from a file
        self.before_write = before_write

    def scored(self, finetuning: str, score: Score) -> Score:
        """``score`` for ``finetuning``, answered from a file where one was written."""

        def cached(lr: float) -> Scores:
            path = self.folder / f"{finetuning.replace(' ', '_')}__lr{lr:g}.json"
            try:
                recorded = json.loads(path.read_text(encoding="utf-8"))
                key, scores = dict(recorded["key"]), recorded["scores"]
                found = {name: float(scores[name]) for name in SCORES}
            except (OSError, ValueError, KeyError, TypeError):
                found = None  # absent or unreadable: compute it
            if found is not None and recorded.get("lr") == lr:
                refuse_changed(
                    f"{path} was scored with other settings or inputs",
                    key,
                    self.key,
                    "pass a new --out",
                )
                return found
            scores = _scored(score, lr)
            self.before_write()
            trial = {"key": self.key, "lr": lr, "scores": scores}
            write_text(path, json.dumps(trial, indent=1, sort_keys=True) + "\n")
            return scores

        return cached


def tokens_fingerprint(prompts: Any) -> str:
    """sha256 of a prompt set's demonstration and query token ids."""
    ids = [t.tolist() for t in (*prompts.demo_ids, *prompts.query_ids)]
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]


def validation_prompts(
    tokenizer: Any,
    dataset: str,
    *,
    k: int | None,
    n_val: int,
    seed: int,
    max_len: int,
    context: int,
    data_dir: Any,
    source: str,
) -> Any:
    """Demonstrations C and validation queries, both from the train split (never the test
    split), seeded with ``seed + VALIDATION_SEED_OFFSET``."""
    from icl_interp.lm.data import make_prompts

    _, prompts, _ = make_prompts(
        tokenizer,
        dataset,
        n_test=n_val,
        seed=seed + VALIDATION_SEED_OFFSET,
        k=k,
        max_len=max_len,
        context=context,
        data_dir=data_dir,
        source=source,
        eval_split="train",
    )
    return prompts


def trials_table(trials: Sequence[LrTrial], chosen: float, **keys: Any) -> pd.DataFrame:
    """Tidy rows: the keys, lr, validation accuracy and label loss, mean training loss, update
    size, whether it was chosen."""
    return pd.DataFrame(
        [
            {
                **keys,
                "lr": t.lr,
                "val_accuracy": t.accuracy,
                "val_label_loss": t.val_loss,
                "train_loss": t.train_loss,
                "update_norm": t.update_norm,
                "chosen": t.lr == chosen,
            }
            for t in trials
        ]
    )


def chosen_table(lr_sweep: pd.DataFrame) -> pd.DataFrame:
    """One row per model x data x finetuning of a ``compare --lr-grid`` sweep (``lr_sweep.csv``):
    the rule applied to the validation accuracy and label loss averaged over the seeds (an lr
    that diverged in any seed averages to NaN, so it is never chosen)."""
    rows = []
    for (model, data, finetuning), group in lr_sweep.groupby(
        ["model", "data", "finetuning"], sort=True
    ):
        mean = group.groupby("lr")["val_accuracy"].mean(skipna=False)
        if "val_label_loss" not in group:  # a sweep recorded before the loss tie-break
            group = group.assign(val_label_loss=float("nan"))
        loss = group.groupby("lr")["val_label_loss"].mean(skipna=False)
        lr = choose([LrTrial(float(lr), float(acc), float(loss[lr])) for lr, acc in mean.items()])
        rows.append(
            {
                "model": model,
                "data": data,
                "finetuning": finetuning,
                "lr": lr,
                "val_accuracy": round(float(mean[lr]), 6),
                "seeds": " ".join(str(s) for s in sorted(group["seed"].unique())),
                "grid": " ".join(f"{v:g}" for v in sorted(group["lr"].unique())),
            }
        )
    return pd.DataFrame(rows, columns=CHOSEN_COLUMNS)


def check_chosen_table(table: Path) -> pd.DataFrame:
    """``table`` read and checked row by row, up front: a one-line ``UserError`` naming the
    file and line for a missing column, a ragged row, an empty model, data set or finetuning,
    an lr that is not a positive finite number, or a second row for one model x data set x
    finetuning (never "last wins")."""
    import csv

    try:
        with Path(table).open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle, strict=True))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"cannot read the lr table {table}: {err}") from None
    header = rows[0] if rows else []
    missing = [c for c in CHOSEN_COLUMNS if c not in header]
    if missing:
        raise UserError(f"the lr table {table} lacks the columns {', '.join(missing)}")
    column = {name: i for i, name in enumerate(header)}
    seen: dict[tuple[str, ...], int] = {}
    records = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise UserError(f"{table}:{line}: expected {len(header)} fields, got {len(row)}")
        key = tuple(row[column[c]].strip() for c in ("model", "data", "finetuning"))
        if not all(key):
            raise UserError(f"{table}:{line}: empty model, data or finetuning")
        try:
            lr = float(row[column["lr"]])
        except ValueError:
            lr = math.nan
        if not (math.isfinite(lr) and lr > 0):
            raise UserError(
                f"{table}:{line}: lr {row[column['lr']]!r} is not a positive finite number"
            )
        if key in seen:
            raise UserError(
                f"{table}:{line}: a second row for {' / '.join(key)} (first on line "
                f"{seen[key]}); keep one"
            )
        seen[key] = line
        records.append({**dict(zip(header, row, strict=True)), "lr": lr})
    return pd.DataFrame(records, columns=header)


def chosen_lrs(model: str, data: str, table: Path = CHOSEN_LRS) -> dict[str, float]:
    """``{finetuning: lr}`` for ``model`` on ``data`` from ``table`` (default: the packaged one;
    {} if it does not exist)."""
    if not table.exists():
        return {}
    rows = check_chosen_table(table)
    if rows.empty:
        return {}
    rows = rows[(rows["model"] == model) & (rows["data"] == data)]
    return {str(r.finetuning): float(r.lr) for r in rows.itertuples()}


def choose_adaptation_lr(losses: dict[float, list[float]]) -> float:
    """The adaptation rule: the lr whose validation losses (one per objective) have the lowest
    mean; ties go to the smaller lr. A non-finite loss (a diverged run) never wins."""
    if not losses:
        raise UserError("no adaptation lr to choose from")

    def mean(lr: float) -> float:
        values = losses[lr]
        total = sum(values) / len(values)
        return total if math.isfinite(total) else math.inf

    return min(sorted(losses), key=mean)
