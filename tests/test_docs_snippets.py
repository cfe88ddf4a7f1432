"""Every Python block of ``docs/extending.md`` runs as printed: a metric, a mask kind, a data
set, a model or architecture and a method, each on a tiny random model and packaged data.

Each block runs in its own namespace; the registries it extends are restored afterwards and
its temporary folders live under the test's ``tmp_path``.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from icl_interp.lm.arch import ARCHITECTURES
from icl_interp.lm.conditions import METHODS
from icl_interp.lm.data import DATASETS
from icl_interp.lm.metrics import METRICS
from icl_interp.lm.models import MODELS
from icl_interp.masks import MASKS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
SNIPPETS = BLOCK.findall(PAGE.read_text(encoding="utf-8"))


def _heading(snippet: str) -> str:
    text = PAGE.read_text(encoding="utf-8")
    before = text[: text.index(snippet)]
    return re.findall(r"^## (.+)$", before, re.MULTILINE)[-1]


def test_the_page_has_a_snippet_for_each_extension_path() -> None:
    headings = {_heading(snippet) for snippet in SNIPPETS}
    assert headings >= {
        "A metric",
        "A mask kind",
        "A data set",
        "A model or an architecture",
        "A method",
    }


@pytest.mark.parametrize(
    "snippet", SNIPPETS, ids=[f"{i}-{_heading(s)}" for i, s in enumerate(SNIPPETS)]
)
def test_snippet_runs(snippet: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for registry in (MASKS, METRICS, DATASETS, ARCHITECTURES, METHODS, MODELS):
        monkeypatch.setattr(registry, "_items", dict(registry._items))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # dont_inherit: run as printed, without this module's ``from __future__ import annotations``
    code = compile(snippet, f"{PAGE.name}:{_heading(snippet)}", "exec", dont_inherit=True)
    exec(code, {"__name__": "snippet"})
