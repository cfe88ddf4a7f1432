"""mkdocs hook: a notebook names repository files relative to ``notebooks/`` (``../docs/...``),
which is right on a code host; on the site the notebook page sits in the docs tree, so those
links are rewritten to the same files there (``../docs/figures/x.png`` -> ``../figures/x.png``)."""

from __future__ import annotations

from typing import Any


def on_page_content(html: str, page: Any, **_: Any) -> str:
    if not page.file.src_uri.startswith("notebooks/"):
        return html
    return html.replace('="../docs/', '="../')
