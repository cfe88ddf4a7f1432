"""Every option of every ``analyses/`` script has help, as the six commands' options do."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import pytest

import analyses

SCRIPTS = sorted(module.name for module in pkgutil.iter_modules(analyses.__path__))


class _Parsed(BaseException):
    """Raised in place of parsing: the parser is captured, nothing runs."""


def _bare_options(parser: argparse.ArgumentParser) -> list[str]:
    """The options of ``parser`` (and its subcommands') that have no help."""
    bare = []
    for action in parser._actions:
        if not action.help:
            bare.append("/".join(action.option_strings) or action.dest)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                bare += _bare_options(sub)
    return bare


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_option_has_help(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parsers: list[argparse.ArgumentParser] = []

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parsers.append(self)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    with pytest.raises(_Parsed):
        importlib.import_module(f"analyses.{name}")._main([])
    assert [bare for parser in parsers for bare in _bare_options(parser)] == []
