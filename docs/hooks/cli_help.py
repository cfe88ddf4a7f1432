"""mkdocs hook: ``<!-- cli-help: NAME -->`` in a page becomes ``icl-interp NAME --help``, taken
from the parser at build time, so the options on the site are always the command's own."""

from __future__ import annotations

import os
import re
from typing import Any

MARKER = re.compile(r"<!-- cli-help: ([a-z-]+) -->")


def _help(name: str) -> str:
    from icl_interp.cli import build_parser

    os.environ["COLUMNS"] = "100"
    parser = build_parser(name)
    subparsers = next(a for a in parser._actions if a.dest == "command")
    text = subparsers.choices[name].format_help()  # type: ignore[attr-defined]
    return f"```text\n$ icl-interp {name} --help\n{text.rstrip()}\n```"


def on_page_markdown(markdown: str, **_: Any) -> str:
    return MARKER.sub(lambda match: _help(match.group(1)), markdown)
