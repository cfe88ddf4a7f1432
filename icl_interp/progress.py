"""``progress(iterable, ...)``: tqdm bars only where someone watches them.

A bar is drawn in a terminal (stderr is a TTY) and in a notebook; when stderr is a file or a
pipe (logs, CI, ``nohup``) no bar is drawn, so logs hold no carriage returns or cursor escape
codes (nested bars otherwise write ``ESC[A`` per refresh). ``TQDM_DISABLE=1`` turns every bar
off; ``disable=True/False`` forces a bar off/on.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def bars_wanted() -> bool:
    """True in a terminal or a Jupyter kernel, unless ``TQDM_DISABLE`` is set to a true value."""
    if os.environ.get("TQDM_DISABLE", "").lower() in {"1", "true", "yes"}:
        return False
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress(iterable: Any = None, *, disable: bool | None = None, **options: Any) -> Any:
    """A ``tqdm.auto.tqdm`` over ``iterable`` (``options`` as tqdm's), drawn only if wanted."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = not bars_wanted()
    return tqdm(iterable, disable=disable, **options)
