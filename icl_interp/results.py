"""Result folders: seeding, atomic writes, config + provenance, resumable units.

Every analysis writes into one folder holding ``config.json`` (the config that
made it plus package versions) and its tables and figures. Files are written to
a temporary name and renamed, so an interrupted run never leaves half a file;
``done(unit)`` lets a rerun skip units already written.
"""

from __future__ import annotations

import dataclasses
import json
import os
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
    """Call ``write(tmp_path)`` then rename onto ``path`` (same folder, so the rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save`` atomically (checkpoints, captured tensors)."""
    return write_atomic(path, lambda p: torch.save(obj, p))


def write_csv(path: str | Path, table: pd.DataFrame) -> Path:
    """Write a tidy table deterministically (fixed float format, no index)."""
    return write_atomic(
        path, lambda p: table.to_csv(p, index=False, float_format="%.10g", lineterminator="\n")
    )


def write_figure(
    path_stem: str | Path, fig: Any, formats: tuple[str, ...] = ("png", "pdf")
) -> list[Path]:
    """Save a matplotlib figure as ``stem.png`` and ``stem.pdf`` (atomically)."""
    stem = Path(path_stem)
    paths = []
    for fmt in formats:

        def save(path: Path, fmt: str = fmt) -> None:
            fig.savefig(
                path, format=fmt, dpi=150, bbox_inches="tight", metadata=_fixed_metadata(fmt)
            )

        paths.append(write_atomic(stem.with_suffix(f".{fmt}"), save))
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


def write_config(folder: str | Path, config: Any, **extra: Any) -> Path:
    """Write ``config.json``: the config, package versions, the command line and extras."""
    payload = {
        "config": to_jsonable(config),
        "versions": package_versions(),
        "argv": sys.argv,
        **{k: to_jsonable(v) for k, v in extra.items()},
    }
    return write_text(
        Path(folder) / "config.json", json.dumps(payload, indent=2, sort_keys=True) + "\n"
    )


def done(path: str | Path) -> bool:
    """True when a unit's output file exists (written atomically, so it is complete)."""
    return Path(path).exists()
