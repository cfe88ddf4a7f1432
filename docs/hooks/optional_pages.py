"""mkdocs hook for pages that another branch adds (``OPTIONAL``): while such a page is absent,
its nav entry is dropped and links to it become plain text, each with an info line, so
``mkdocs build --strict`` still fails on any other missing page or broken link."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

OPTIONAL = {"analysis_plan.md"}
log = logging.getLogger("mkdocs.hooks.optional_pages")
_absent: set[str] = set()


def _prune(items: list[Any]) -> list[Any]:
    kept: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            ((title, value),) = item.items()
            if isinstance(value, list):
                kept.append({title: _prune(value)})
                continue
            if value in _absent:
                log.info("nav: %s is not in docs/ yet; left out of this build", value)
                continue
        kept.append(item)
    return kept


def on_config(config: Any) -> Any:
    _absent.clear()
    _absent.update(page for page in OPTIONAL if not (Path(config["docs_dir"]) / page).exists())
    config["nav"] = _prune(config["nav"])
    return config


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    for missing in _absent:
        link = re.compile(r"\[([^\]]+)\]\((?:\.\./)*" + re.escape(missing) + r"(#[^)]*)?\)")
        if link.search(markdown):
            log.info(
                "%s: link to %s left as text (page not in docs/ yet)", page.file.src_uri, missing
            )
            markdown = link.sub(r"\1 (not yet published)", markdown)
    return markdown
