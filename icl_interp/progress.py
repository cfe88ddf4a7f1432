"""``progress(iterable, ...)``: tqdm bars where someone watches them, log lines where no one does.

A bar is drawn in a terminal (stderr is a TTY) and in a notebook. When stderr is a file or a
pipe (logs, CI, ``nohup``, SLURM) no bar is drawn, so logs hold no carriage returns or cursor
escape codes; instead each stage writes plain lines on stderr saying what it is doing, how long it
has run and about how long is left, for example::

    [  61 s] units 1/1 > lcgd finetuning 12/16 example: 23 s, ~8 s left

At most one such line every ``ICL_INTERP_LOG_EVERY`` seconds (default 5) over the whole process,
and none for a stage that ends sooner: quick commands and tests stay silent. ``stage(text)`` marks
a coarse step (the whole command): a line once it has run that long, one when it ends; while one
is open, a step that prints nothing for six times that interval (writing figures, say) gets a
"still running" line naming the innermost stage, so a slow run never looks hung.
``--quiet`` (``set_quiet``), ``ICL_INTERP_QUIET=1`` or ``TQDM_DISABLE=1`` turn the lines off;
``TQDM_DISABLE=1`` also turns every bar off; ``disable=True/False`` forces a bar off/on. Lines go
to stderr only, so result files and stdout are unchanged.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

_TRUE = {"1", "true", "yes"}
_STARTED = time.monotonic()
_state: dict[str, Any] = {"quiet": False, "last_line": float("-inf"), "heartbeat": None}
_active: list[LineProgress] = []


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").lower() in _TRUE


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def bars_wanted() -> bool:
    """True in a terminal or a Jupyter kernel, unless ``TQDM_DISABLE`` is set to a true value."""
    if _env_true("TQDM_DISABLE"):
        return False
    if "ipykernel" in sys.modules:
        return True
    return _is_terminal()


def set_quiet(quiet: bool = True) -> None:
    """Turn the log lines off (``--quiet``) or back on for this process."""
    _state["quiet"] = quiet


def lines_wanted() -> bool:
    """True where no bar is drawn (stderr is not a terminal, no notebook) and nothing asked for
    silence (``set_quiet``, ``ICL_INTERP_QUIET``, ``TQDM_DISABLE``)."""
    if _state["quiet"] or _env_true("ICL_INTERP_QUIET") or _env_true("TQDM_DISABLE"):
        return False
    return "ipykernel" not in sys.modules and not _is_terminal()


def log_every() -> float:
    """Seconds between two log lines (``ICL_INTERP_LOG_EVERY``, default 5)."""
    try:
        return max(0.0, float(os.environ.get("ICL_INTERP_LOG_EVERY", "5")))
    except ValueError:
        return 5.0


def _seconds(value: float) -> str:
    value = max(0.0, value)
    if value < 100:
        return f"{value:.0f} s"
    if value < 6000:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _emit(text: str) -> None:
    now = time.monotonic()
    _state["last_line"] = now
    print(f"[{now - _STARTED:>5.0f} s] {text}", file=sys.stderr, flush=True)


class LineProgress:
    """What ``progress`` returns where lines are wanted: tqdm's interface (iterate, ``update``,
    ``set_postfix``, ``set_description``, ``close``, context manager), writing throttled lines."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str | None = None,
        unit: str = "it",
        initial: float = 0,
        coarse: bool = False,
        **_: Any,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None:
            with contextlib.suppress(TypeError):
                total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc = desc or ""
        self.unit = unit
        self.n = initial
        self.initial = initial
        self.postfix = ""
        self.started = time.monotonic()
        self.closed = False
        self.coarse = coarse
        self.announced = False
        _active.append(self)

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None, "LineProgress over no iterable"
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _where(self) -> str:
        """This stage as the outer stages see it: ``units 2/6``."""
        shown = min(self.n + 1, self.total) if self.total else self.n + 1
        count = f" {shown:g}/{self.total:g}" if self.total else ""
        done = self.n - self.initial
        if self.total and done > 0 and self.n < self.total:
            left = (time.monotonic() - self.started) / done * (self.total - self.n)
            count += f" (~{_seconds(left)} left)"
        return f"{self.desc}{count}"

    def line(self) -> str:
        """The stage's line: outer stages, then this one's count, time and estimate left."""
        outer = [s._where() for s in _active[: _active.index(self)] if s._where() and not s.coarse]
        elapsed = time.monotonic() - self.started
        if self.coarse:
            return " > ".join([*outer, f"{self.desc}: {_seconds(elapsed)}"])
        count = f" {self.n:g}/{self.total:g}" if self.total else f" {self.n:g}"
        text = f"{self.desc}{count} {self.unit}: {_seconds(elapsed)}"
        done = self.n - self.initial
        if self.total and done > 0 and self.n < self.total:
            text += f", ~{_seconds(elapsed / done * (self.total - self.n))} left"
        if self.postfix:
            text += f" ({self.postfix})"
        return " > ".join([*outer, text])

    def _due(self) -> bool:
        now, every = time.monotonic(), log_every()
        return now - self.started >= every and now - _state["last_line"] >= every

    def update(self, n: float = 1) -> None:
        self.n += n
        if self._due():
            _emit(self.line())

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **values: Any) -> None:
        values = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def write(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.coarse and self.n > self.initial and self._due():
            _emit(f"{self.line()}, done")
        if self in _active:
            _active.remove(self)


def progress(iterable: Any = None, *, disable: bool | None = None, **options: Any) -> Any:
    """A ``tqdm.auto.tqdm`` over ``iterable`` (``options`` as tqdm's), drawn only if wanted;
    where no bar is drawn and lines are wanted (a log), a ``LineProgress`` writing lines."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = not bars_wanted()
    if disable and lines_wanted():
        return LineProgress(iterable, **options)
    return tqdm(iterable, disable=disable, **options)


def log_line(text: str) -> None:
    """One line in the log, now (a coarse step starting); nothing where lines are not wanted."""
    if lines_wanted():
        _emit(text)


def _heartbeat() -> None:
    """Announce coarse stages that have run ``log_every()`` seconds, and say "still running"
    after six times that without a line."""
    while True:
        every = log_every()
        time.sleep(min(every, 1.0) if every else 0.1)
        if not lines_wanted():
            continue
        now = time.monotonic()
        with contextlib.suppress(Exception):  # a stage closing meanwhile: skip this beat
            open_stages = [s for s in _active if not s.closed]
            for marker in open_stages:
                if marker.coarse and not marker.announced and now - marker.started >= every:
                    marker.announced = True
                    _emit(f"{marker.desc} ...")
            quiet_since = max([_state["last_line"], *(s.started for s in open_stages[:1])])
            if open_stages and now - quiet_since >= 6 * max(every, 1.0):
                _emit(f"{open_stages[-1].line()} (still running)")


@contextlib.contextmanager
def stage(text: str) -> Iterator[None]:
    """A coarse step (a whole command): once it has run ``log_every()`` seconds, a line saying it
    runs, "still running" lines while nothing else is said, and one when it ends with its
    duration; nothing for a step that ends sooner (a one-line error stays one line) and nothing
    where lines are not wanted."""
    if not lines_wanted():
        yield
        return
    if _state["heartbeat"] is None:
        beat = threading.Thread(target=_heartbeat, name="log-heartbeat", daemon=True)
        _state["heartbeat"] = beat
        beat.start()
    marker = LineProgress(desc=text, coarse=True)
    if log_every() == 0:  # no throttle asked for: say so at once
        marker.announced = True
        log_line(f"{text} ...")
    try:
        yield
    finally:
        marker.close()
        if marker.announced:
            log_line(f"{text}: done in {_seconds(time.monotonic() - marker.started)}")
