"""Result folders: seeding, atomic writes, ownership + provenance, resumable units.

Every command writes into one folder it owns (``ResultFolder``): ``config.json``
records the command, the settings that change results, a fingerprint of the
inputs, package versions and the command line. Another command, other settings or
other inputs are refused with one line saying what differs; nothing is written
until the caller ``claim()``s the folder after its own validation. Files are written
to a temporary name and renamed (readable as the umask allows), so an interrupted
run never leaves half a file; ``done(unit)`` lets a rerun skip units already written.

One writer per folder: a run holds the folder's lock (``lock_folder``, an ``fcntl`` lock on
``.icl_interp.lock`` inside it) from its first check of an existing folder, or its claim of a
new one, until it ends, so a second run on the same folder refuses in one line. Inputs are
identified by content (``content_fingerprint``, cached by path, size and mtime), and result
files by ``file_stem``, which never maps two names to one stem.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import errno
import fcntl
import fnmatch
import gzip
import hashlib
import io
import json
import os
import pickle
import platform
import random
import sys
import tempfile
from collections.abc import Callable, Sequence
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
    """``torch.save`` atomically (checkpoints, captured tensors); the same object gives the
    same bytes (saved through memory, so the archive inside does not take the temporary file's
    random name)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_atomic(path, lambda p: p.write_bytes(buffer.getvalue()))


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


_FINGERPRINTS: dict[str, str] = {}


def _fingerprint_cache() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "icl_interp" / "fingerprints.json"


def content_fingerprint(path: str | Path) -> str:
    """``file_fingerprint`` of a (possibly large) file, computed once: cached in memory and in
    ``~/.cache/icl_interp/fingerprints.json`` under the file's resolved path, size and mtime,
    so a changed file (new weights of the same size included) gets a new fingerprint."""
    path = Path(path)
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if key in _FINGERPRINTS:
        return _FINGERPRINTS[key]
    cache = _fingerprint_cache()
    try:
        stored = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = {}
    if not isinstance(stored, dict):
        stored = {}
    fingerprint = stored.get(key)
    if not isinstance(fingerprint, str):
        fingerprint = file_fingerprint(path)
        stored[key] = fingerprint
        with contextlib.suppress(UserError):  # a read-only home: recomputed next time
            write_text(cache, json.dumps(stored, indent=0, sort_keys=True))
    _FINGERPRINTS[key] = fingerprint
    return fingerprint


def file_stem(name: str) -> str:
    """A file-name stem for ``name`` (a model name or path): letters, digits, ``-`` and ``.``
    kept, anything else ``_``; when that changed the name, a short hash of the full name is
    appended, so two names never share a stem (``org/m`` and ``org_m`` differ)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-.") else "_" for c in name)
    if safe == name and not safe.startswith("."):
        return safe
    if safe.startswith("."):  # never a hidden file
        safe = "_" + safe[1:]
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


# --------------------------------------------------------------------------- folder locks

LOCK_NAME = ".icl_interp.lock"
JOB_FILES = ".submitit"  # the submitit backend's job files and logs (icl_interp.runs)


@dataclasses.dataclass
class _Held:
    fd: int
    folder: Path
    created: bool  # this process made the folder (removed again if it stays empty)


_HELD: dict[str, _Held] = {}


def lock_folder(folder: str | Path, name: str = LOCK_NAME) -> None:
    """Hold ``folder``'s lock (``folder/name``, made with the folder if needed) until this
    process ends or ``release_locks()``; a second process asking for it gets a one-line
    ``UserError`` naming the holder. Asking again from the holding process does nothing."""
    folder = Path(folder)
    lock = folder / name
    key = str(lock.absolute())
    held = _HELD.get(key)
    if held is not None:
        if _same_file(lock, held.fd):
            return
        os.close(held.fd)  # the folder was deleted under us: lock the new one
        del _HELD[key]
    created = not folder.exists()
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise UserError(f"could not lock {folder}: {reason}; pass another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 100, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"{folder} is in use by another run (process {holder}); wait for it to finish "
                "or pass another --out"
            ) from None
        if _same_file(lock, fd):  # not unlinked by a holder releasing it meanwhile
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = _Held(fd, folder, created)


def folder_locked(folder: str | Path, name: str = LOCK_NAME) -> bool:
    """Whether some process holds ``folder``'s lock ``name`` (this one included)."""
    lock = Path(folder) / name
    if str(lock.absolute()) in _HELD:
        return True
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def release_locks(folder: str | Path | None = None, name: str = LOCK_NAME) -> None:
    """Release this process's lock on ``folder`` (every lock it holds if None): the lock file
    is removed, and so is a folder this process made that holds nothing else."""
    keys = list(_HELD) if folder is None else [str((Path(folder) / name).absolute())]
    for key in keys:
        held = _HELD.pop(key, None)
        if held is None:
            continue
        try:
            if _same_file(Path(key), held.fd):
                os.remove(key)
            if held.created and not any(held.folder.iterdir()):
                held.folder.rmdir()
        except OSError:
            pass
        finally:
            os.close(held.fd)


atexit.register(release_locks)


def _differences(
    recorded: dict[str, Any], current: dict[str, Any], skip: frozenset[str]
) -> list[str]:
    keys = sorted((set(recorded) | set(current)) - skip)
    return [
        f"{key}: {_short(recorded.get(key))} -> {_short(current.get(key))}"
        for key in keys
        if recorded.get(key) != current.get(key)
    ]


def refuse_changed(
    made: str,
    recorded: dict[str, Any],
    current: dict[str, Any],
    fix: str,
    skip: frozenset[str] = frozenset(),
) -> None:
    """The one resume check: something recorded with identity ``recorded`` (settings, input
    fingerprints) is reused only when ``current`` is the same (keys in ``skip`` aside); else a
    one-line ``UserError``: ``made`` (what was made with what), each difference, ``fix``."""
    differ = _differences(recorded, current, skip)
    if differ:
        raise UserError(f"{made} ({'; '.join(differ)}); {fix}")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."


def read_config(config_file: Path) -> dict[str, Any] | None:
    """A result folder's ``config.json`` (None if absent); a corrupt one is a ``UserError``."""
    if not config_file.exists():
        return None
    try:
        recorded = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(
            f"{config_file} is unreadable or corrupt ({type(err).__name__}); "
            "move the folder aside or pass a new --out"
        ) from None
    if not isinstance(recorded, dict):
        raise UserError(f"{config_file} is not a result folder's config; pass a new --out")
    return recorded


@dataclasses.dataclass
class ResultFolder:
    """A result folder owned by one command, its result-changing settings and its inputs.

    ``settings`` is the command's config (dict or dataclass); keys in ``ignore`` (threads,
    output path, ...) are recorded but never compared; keys in ``may_differ`` (a resumable
    plan's list of units, say) may change between runs because every unit records its own.
    ``inputs`` maps an input's name to its fingerprint (``file_fingerprint``, a model's
    identity); an input not known yet (data read after the model loads) is compared once it
    is added. ``tolerated`` names (glob patterns) may stand in the folder before it is claimed
    (adapt-table's ``models``, where finished adaptations may be placed). ``check()`` only
    reads; ``claim()`` checks, then writes ``config.json`` with ``argv``, the command line of
    the process that made the folder object (so a worker that claims it records its driver's).

    The process that made the object (``owner_pid``) locks the folder (``lock_folder``) once
    ``check()`` finds an existing folder it may use, or at ``claim()``, and holds it until it
    ends; a worker given the object (another process) writes under its driver's lock.
    """

    path: Path
    command: str
    settings: Any
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    ignore: frozenset[str] = frozenset()
    may_differ: frozenset[str] = frozenset()
    tolerated: tuple[str, ...] = ()
    argv: list[str] = dataclasses.field(default_factory=lambda: list(sys.argv))
    owner_pid: int = dataclasses.field(default_factory=os.getpid)

    def __post_init__(self) -> None:
        from icl_interp.plugins import loaded_plugins

        self.path = Path(self.path)
        if loaded_plugins():
            self.inputs.setdefault("plugins", loaded_plugins())

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    def recorded(self) -> dict[str, Any] | None:
        """The folder's ``config.json`` (``read_config``)."""
        return read_config(self.config_file)

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
        self._check_owner()
        if where.exists() and os.getpid() == self.owner_pid:
            lock_folder(where)
            self._check_owner()  # again under the lock: another run may have claimed it

    def _check_owner(self) -> None:
        where = self.path
        recorded = self.recorded()
        if recorded is None:
            allowed = (LOCK_NAME, JOB_FILES, *self.tolerated)
            if where.exists() and any(
                not any(fnmatch.fnmatch(p.name, pattern) for pattern in allowed)
                for p in where.iterdir()
            ):
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
        refuse_changed(
            f"--out {where} holds results made with other settings",
            recorded.get("config", {}),
            to_jsonable(self.settings),
            "rerun with the same options to resume, or pass a new --out",
            skip=self.ignore | self.may_differ,
        )
        known = {k: v for k, v in recorded.get("inputs", {}).items() if k in self.inputs}
        refuse_changed(
            f"--out {where} holds results made from other inputs",
            known,
            to_jsonable(self.inputs),
            "pass a new --out",
        )

    def claim(self, **extra: Any) -> Path:
        """``check()``, then write ``config.json`` (settings, inputs, versions, command line)."""
        self.check()
        if os.getpid() == self.owner_pid:
            lock_folder(self.path)
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


def read_run(folder: str | Path, command: str, needs: Sequence[str] = ()) -> dict[str, Any]:
    """The ``config.json`` record of a ``command`` run in ``folder`` (for notebooks and
    scripts that read results), after checking, with a one-line ``UserError`` each, that the
    folder exists, was written by ``command``, and holds the files ``needs`` names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such results folder; run icl-interp {command} first")
    recorded = read_config(folder / "config.json")
    if recorded is None:
        raise UserError(f"{folder} is not a results folder (no readable config.json)")
    if recorded.get("command") != command:
        raise UserError(
            f"{folder} holds an icl-interp {recorded.get('command') or 'unknown'} run, "
            f"not a {command} run"
        )
    missing = [name for name in needs if not (folder / name).exists()]
    if missing:
        raise UserError(f"{folder} has no {', '.join(missing)} (unfinished, or made without it)")
    return recorded


def archive_run(
    run: str | Path, archive: str | Path, command: str, files: Sequence[str]
) -> dict[str, Any]:
    """Copy a finished ``command`` run's ``files`` (paths inside ``run``) into ``archive``, with
    the run's settings and package versions in ``archive/run.json``: the committed data a
    results page is rebuilt from. Returns the run's ``config.json`` record."""
    import shutil

    run, archive = Path(run), Path(archive)
    recorded = read_run(run, command, needs=files)
    for name in files:
        (archive / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / name, archive / name)
    settings = {"config": recorded["config"], "versions": recorded.get("versions", {})}
    write_text(archive / "run.json", json.dumps(settings, indent=1, sort_keys=True) + "\n")
    return recorded
