"""User plugins: modules that register metrics, masks, methods, data sets or architectures.

``--plugins MODULE ...`` on every command (``load_plugins`` from Python) imports each module
(a dotted name on ``sys.path``, or a path to a ``.py`` file) in the driver before the options
are checked, and again in every worker process of every backend (compare's Ray workers,
synthetic's process pool), so a registration made by a plugin is seen wherever units run.
What was loaded, with a hash of each plugin's source, is part of a result folder's inputs
(``icl_interp.results.ResultFolder``): a folder made with other plugins, or with a plugin
whose code changed, is refused.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from icl_interp.errors import UserError

_LOADED: dict[str, str] = {}  # plugin (module name or absolute .py path) -> source hash


def load_plugins(names: Sequence[str]) -> None:
    """Import every plugin of ``names`` not yet loaded here (a ``UserError`` naming the plugin
    and what went wrong when one cannot be imported)."""
    for name in names:
        key = str(Path(name).resolve()) if name.endswith(".py") else name
        if key in _LOADED:
            continue
        try:
            module = _import(key)
        except UserError:
            raise
        except Exception as err:  # a plugin is user code: any failure is the user's to fix
            raise UserError(
                f"plugin {name!r} cannot be loaded: {type(err).__name__}: {err}"
            ) from None
        source = getattr(module, "__file__", None)
        digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16] if source else "-"
        _LOADED[key] = f"sha256:{digest}"


def _import(key: str) -> object:
    if not key.endswith(".py"):
        return importlib.import_module(key)
    path = Path(key)
    if not path.is_file():
        raise UserError(f"plugin file {key} does not exist")
    name = f"icl_interp_plugin_{hashlib.sha256(key.encode()).hexdigest()[:8]}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def loaded_plugins() -> dict[str, str]:
    """The plugins loaded in this process, in load order, with their source hashes."""
    return dict(_LOADED)
