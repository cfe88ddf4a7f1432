"""Every option of every ``analyses/`` script has help, as the six commands' options do."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import pytest

import analyses
from tests.helpers import options_without_help

SCRIPTS = sorted(module.name for module in pkgutil.iter_modules(analyses.__path__))


class _Parsed(BaseException):
    """Raised in place of parsing: the parser is captured, nothing runs."""


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_option_has_help(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parsers: list[argparse.ArgumentParser] = []

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parsers.append(self)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    with pytest.raises(_Parsed):
        importlib.import_module(f"analyses.{name}")._main([])
    assert [bare for parser in parsers for bare in options_without_help(parser)] == []
