"""mkdocs hook: nav entries for pages another branch adds (``OPTIONAL``) are dropped, with an
info line, while the page is absent, so ``mkdocs build --strict`` still fails on any other
missing page."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

OPTIONAL = {"analysis_plan.md"}
log = logging.getLogger("mkdocs.hooks.optional_pages")


def _prune(items: list[Any], docs: Path) -> list[Any]:
    kept: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            ((title, value),) = item.items()
            if isinstance(value, list):
                kept.append({title: _prune(value, docs)})
                continue
            if value in OPTIONAL and not (docs / value).exists():
                log.info("nav: %s is not in docs/ yet; left out of this build", value)
                continue
        kept.append(item)
    return kept


def on_config(config: Any) -> Any:
    config["nav"] = _prune(config["nav"], Path(config["docs_dir"]))
    return config
