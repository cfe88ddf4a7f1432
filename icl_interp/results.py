"""Result folders: seeding, atomic writes, ownership + provenance, resumable units.

Every command writes into one folder it owns (``ResultFolder``): ``config.json``
records the command, the settings that change results, a fingerprint of the
inputs, package versions and the command line. Another command, other settings or
other inputs are refused with one line saying what differs; nothing is written
until the caller ``claim()``s the folder after its own validation. Files are written
to a temporary name and renamed (readable as the umask allows), so an interrupted
run never leaves half a file; ``done(unit)`` lets a rerun skip units already written.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import hashlib
import json
import os
import pickle
import platform
import random
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from icl_interp.errors import UserError

TRACKED_PACKAGES = (
    "icl_interp",
    "torch",
    "transformer-lens",
    "transformers",
    "numpy",
    "pandas",
    "einops",
    "jaxtyping",
    "seaborn",
    "matplotlib",
)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path`` (same folder, so the rename is atomic).

    A failed write (disk full, read-only file system, a file where a folder should be) leaves
    ``path`` as it was and is a one-line ``UserError`` naming ``path``.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        hint = "free space or pass another --out" if full else "pass another --out"
        raise UserError(f"could not write {path}: {reason}; {hint}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save`` atomically (checkpoints, captured tensors)."""
    return write_atomic(path, lambda p: torch.save(obj, p))


def write_csv(path: str | Path, table: pd.DataFrame) -> Path:
    """Write a tidy table deterministically (fixed float format, no index; NaN as ``nan``, which
    ``pd.read_csv`` reads back as NaN, so a missing value never looks like an empty string). A
    ``.gz`` path is gzip-compressed with no time or name in its header, so it is byte-identical
    too."""
    text = table.to_csv(index=False, float_format="%.10g", na_rep="nan", lineterminator="\n")
    data = text.encode()
    if Path(path).suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    return write_atomic(path, lambda p: p.write_bytes(data))


def read_csv(path: str | Path, **options: Any) -> pd.DataFrame:
    """``pd.read_csv`` of a result file; a corrupt or unreadable one is a one-line ``UserError``
    naming it (for resuming from unit CSVs; ``options`` go to pandas)."""
    try:
        return pd.read_csv(path, **options)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(
            f"{path} is corrupt or unreadable ({type(err).__name__}); delete it to recompute it, "
            "or pass a new --out"
        ) from None


def read_torch(path: str | Path, **options: Any) -> Any:
    """``torch.load`` of a checkpoint or captured tensors; a corrupt or truncated file is a
    one-line ``UserError`` naming it (``options`` go to ``torch.load``)."""
    try:
        return torch.load(path, **options)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise UserError(
            f"{path} is corrupt or unreadable ({type(err).__name__}); delete it to recompute it, "
            "or pass a new --out"
        ) from None


def write_figure(
    path_stem: str | Path, fig: Any, formats: tuple[str, ...] = ("png", "pdf")
) -> list[Path]:
    """Save a matplotlib figure as ``stem.png`` and ``stem.pdf`` (atomically; a dot in the
    stem, as in ``qwen2.5``, is kept)."""
    stem = Path(path_stem)
    paths = []
    for fmt in formats:

        def save(path: Path, fmt: str = fmt) -> None:
            fig.savefig(
                path, format=fmt, dpi=150, bbox_inches="tight", metadata=_fixed_metadata(fmt)
            )

        paths.append(write_atomic(stem.with_name(f"{stem.name}.{fmt}"), save))
    return paths


def _fixed_metadata(fmt: str) -> dict[str, Any] | None:
    if fmt == "pdf":
        return {"CreationDate": None, "ModDate": None}
    if fmt == "png":
        return {"Software": None}
    return None


def to_jsonable(config: Any) -> Any:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(config).items()}
    if isinstance(config, dict):
        return {str(k): to_jsonable(v) for k, v in config.items()}
    if isinstance(config, list | tuple):
        return [to_jsonable(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    return config


def file_fingerprint(path: str | Path) -> str:
    """``sha256:<first 16 hex digits>`` of a file's bytes (what an input file was, not where)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()[:16]}"


def _differences(
    recorded: dict[str, Any], current: dict[str, Any], skip: frozenset[str]
) -> list[str]:
    keys = sorted((set(recorded) | set(current)) - skip)
    return [
        f"{key}: {_short(recorded.get(key))} -> {_short(current.get(key))}"
        for key in keys
        if recorded.get(key) != current.get(key)
    ]


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclasses.dataclass
class ResultFolder:
    """A result folder owned by one command, its result-changing settings and its inputs.

    ``settings`` is the command's config (dict or dataclass); keys in ``ignore`` (threads,
    output path, ...) are recorded but never compared; keys in ``may_differ`` (a resumable
    plan's list of units, say) may change between runs because every unit records its own.
    ``inputs`` maps an input's name to its fingerprint (``file_fingerprint``, a model's
    identity); an input not known yet (data read after the model loads) is compared once it
    is added. ``check()`` only reads; ``claim()`` checks, then writes ``config.json`` with
    ``argv``, the command line of the process that made the folder object (so a worker that
    claims it records its driver's).
    """

    path: Path
    command: str
    settings: Any
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    ignore: frozenset[str] = frozenset()
    may_differ: frozenset[str] = frozenset()
    argv: list[str] = dataclasses.field(default_factory=lambda: list(sys.argv))

    def __post_init__(self) -> None:
        from icl_interp.plugins import loaded_plugins

        self.path = Path(self.path)
        if loaded_plugins():
            self.inputs.setdefault("plugins", loaded_plugins())

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    def recorded(self) -> dict[str, Any] | None:
        """The folder's ``config.json`` (None if absent); a corrupt one is a ``UserError``."""
        if not self.config_file.exists():
            return None
        try:
            recorded = json.loads(self.config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UserError(
                f"{self.config_file} is unreadable or corrupt ({type(err).__name__}); "
                "move the folder aside or pass a new --out"
            ) from None
        if not isinstance(recorded, dict):
            raise UserError(f"{self.config_file} is not a result folder's config; pass a new --out")
        return recorded

    def check(self) -> None:
        """Refuse (``UserError``, one line) a folder that is not this run's to write or resume."""
        where = self.path
        if where.exists() and not where.is_dir():
            raise UserError(f"--out {where} is a file, not a folder; pass a folder path")
        existing = where
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise UserError(
                f"--out {where}: {existing} is a file, not a folder; pass another --out"
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(f"--out {where}: {existing} is not writable; pass another --out")
        recorded = self.recorded()
        if recorded is None:
            if where.exists() and any(where.iterdir()):
                raise UserError(
                    f"--out {where} is not empty and was not made by icl-interp {self.command}; "
                    "pass a new or empty folder"
                )
            return
        command = recorded.get("command")
        if command != self.command:
            made_by = f"icl-interp {command}" if command else "another program"
            raise UserError(
                f"--out {where} holds results of {made_by}, not icl-interp {self.command}; "
                "pass a new --out"
            )
        skip = self.ignore | self.may_differ
        differ = _differences(recorded.get("config", {}), to_jsonable(self.settings), skip)
        if differ:
            raise UserError(
                f"--out {where} holds results made with other settings ({'; '.join(differ)}); "
                "rerun with the same options to resume, or pass a new --out"
            )
        known = {k: v for k, v in recorded.get("inputs", {}).items() if k in self.inputs}
        changed = _differences(known, to_jsonable(self.inputs), frozenset())
        if changed:
            raise UserError(
                f"--out {where} holds results made from other inputs ({'; '.join(changed)}); "
                "pass a new --out"
            )

    def claim(self, **extra: Any) -> Path:
        """``check()``, then write ``config.json`` (settings, inputs, versions, command line)."""
        self.check()
        return write_config(
            self.path,
            self.settings,
            argv=self.argv,
            command=self.command,
            inputs=self.inputs,
            **extra,
        )


def write_config(
    folder: str | Path, config: Any, argv: list[str] | None = None, **extra: Any
) -> Path:
    """Write ``config.json``: the config, package versions, the command line (``argv``, by
    default this process's) and extras."""
    payload = {
        "config": to_jsonable(config),
        "versions": package_versions(),
        "argv": sys.argv if argv is None else argv,
        **{k: to_jsonable(v) for k, v in extra.items()},
    }
    return write_text(
        Path(folder) / "config.json", json.dumps(payload, indent=2, sort_keys=True) + "\n"
    )


def done(path: str | Path) -> bool:
    """True when a unit's output file exists (written atomically, so it is complete)."""
    return Path(path).exists()
