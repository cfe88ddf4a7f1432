"""The ``icl-interp`` command: one subcommand per analysis.

Each subcommand has a module exposing ``run(args) -> int`` and a module exposing
``add_arguments(parser)``; they may be the same module, but an arguments module
that imports no torch lets a mistyped option be reported before the seconds
that torch takes to import (``icl-interp lsa --bogus``: ~0.2 s instead of ~4 s); if it
also defines ``check_arguments(args)`` (raising ``UserError``), bad values are reported
that early too. Only the chosen
subcommand's modules are imported. User mistakes (``UserError``, bad options)
print one line and exit with code 2; Ctrl-C at any moment prints one line and
exits with code 130. Output never fails a run: a closed pipe (``icl-interp compare ... |
head -1``) silences the rest of stdout while the run finishes and writes its results, and
characters the terminal cannot encode (a path's) are escaped. An empty option value (an unset
shell variable in ``--out "$OUT"``) is refused. A run's folder locks are released at its end.
``--plugins MODULE ...`` (every subcommand) imports user modules that register metrics,
masks, methods, data sets or architectures before the options are checked
(``icl_interp.plugins``). Shared argument types (``seed``, ``Distinct`` lists) live in
``icl_interp.options``; progress bars in ``icl_interp.progress``.
When stderr is not a terminal
(a log), every command writes one line when it starts, throttled lines per stage with elapsed
time and an estimate of what is left, and one when it ends; ``--quiet`` silences them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from icl_interp.errors import UserError
from icl_interp.plugins import load_plugins
from icl_interp.progress import set_quiet, stage


@dataclass(frozen=True)
class Subcommand:
    """Where a subcommand's ``run(args)`` lives, where its ``add_arguments`` lives (the
    same module unless given: give an import-light one), and its one-line help."""

    runner: str
    help: str
    arguments: str | None = None

    @property
    def arguments_module(self) -> str:
        return self.arguments or self.runner


SUBCOMMANDS: dict[str, Subcommand] = {
    "lsa": Subcommand(
        "icl_interp.lsa.experiment",
        "linear self-attention theory: paper Figures 2 and 4",
        arguments="icl_interp.lsa.config",
    ),
    "synthetic": Subcommand(
        "icl_interp.synthetic.experiment",
        "trained transformers on synthetic tasks: Table 1, Figure 3",
        arguments="icl_interp.synthetic.config",
    ),
    "layers": Subcommand(
        "icl_interp.lm.layers",
        "per-layer (logit-lens) accuracy: zero-shot vs ICL under each mask",
        arguments="icl_interp.lm.layers_config",
    ),
    "compare": Subcommand(
        "icl_interp.lm.compare",
        "ICL vs GD vs layer-causal GD: similarity metrics per layer",
        arguments="icl_interp.lm.compare_config",
    ),
    "adapt": Subcommand(
        "icl_interp.lm.adapt.run",
        "continue training a model on ICL episodes under a prefix or causal mask",
        arguments="icl_interp.lm.adapt.config",
    ),
    "adapt-table": Subcommand(
        "icl_interp.lm.adapt.table",
        "prefixLM vs causalLM adaptation: Table 2 analog and the layer-by-layer comparison",
        arguments="icl_interp.lm.adapt.table_config",
    ),
}


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def exit_code(prog: str, action: Callable[[], object]) -> int:
    """Run ``action`` and return its exit code: its result if an int, else 0; a ``UserError``
    prints ``<prog>: error: <message>`` on stderr (one line) and gives 2."""
    try:
        result = action()
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def script_exit_code(
    prog: str,
    parse: Callable[[Sequence[str] | None], argparse.Namespace],
    action: Callable[[argparse.Namespace], object],
    argv: Sequence[str] | None,
) -> int:
    """Exit code of an ``analyses/`` script's ``_main(argv)``: parse (a usage error or --help
    gives argparse's code), then ``exit_code`` of ``action(args)``."""
    try:
        args = parse(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    return exit_code(prog, lambda: action(args))


def page_script_exit_code(
    prog: str, description: str, pages: str, archive: str, doc: str, argv: Sequence[str] | None
) -> int:
    """Exit code of an ``analyses/`` script that archives a finished run (``--archive-from
    RUN``, then rebuilds the page) or rebuilds a results page from its archive alone
    (``--report-only``), with the ``archive_run(run, archive)`` and ``write_page(archive,
    doc)`` of the module ``pages``; ``archive`` and ``doc`` are the default paths."""

    def parse(argv: Sequence[str] | None) -> argparse.Namespace:
        parser = OneLineParser(prog=prog, description=description)
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--archive-from", type=Path, help="a finished run's folder")
        source.add_argument("--report-only", action="store_true", help="rebuild the page only")
        parser.add_argument("--archive", type=Path, default=Path(archive), help="the archive")
        parser.add_argument("--doc", type=Path, default=Path(doc), help="the page to write")
        return parser.parse_args(argv)

    def run(args: argparse.Namespace) -> int:
        module = importlib.import_module(pages)
        if args.archive_from is not None:
            module.archive_run(args.archive_from, args.archive)
        markdown = module.write_page(args.archive, args.doc)
        print(f"page in {args.doc} ({len(markdown.splitlines())} lines)")
        return 0

    return script_exit_code(prog, parse, run, argv)


class QuietPipe:
    """A text stream that stops writing, quietly, once its reader has gone (a closed pipe):
    the run goes on and writes its results; fd 1 is pointed at /dev/null so the interpreter's
    last flush does not complain either."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.broken = False

    def _quiet(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return int(self.stream.write(text))
            except BrokenPipeError:
                self._quiet()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._quiet()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def empty_option(argv: Sequence[str]) -> str | None:
    """The option given an empty or blank value (``--out ""``, ``--out=``), as ``--name``;
    None if there is none (read from the command line: ``type=Path`` turns "" into ".")."""
    option = None
    for token in argv:
        if token.startswith("--"):
            option, _, value = token.partition("=")
            if "=" in token and not value.strip():
                return option
        elif not token.strip():
            return option or "an argument"
    return None


def build_parser(chosen: str | None = None) -> OneLineParser:
    parser = OneLineParser(prog="icl-interp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineParser, help="the analysis to run"
    )
    for name, subcommand in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=subcommand.help, description=subcommand.help)
        sub_parser.add_argument(
            "--quiet",
            action="store_true",
            help="no progress lines in a log (stderr not a terminal); bars in a terminal stay",
        )
        sub_parser.add_argument(
            "--plugins",
            nargs="+",
            default=[],
            metavar="MODULE",
            help="modules (dotted names or .py files) that register metrics, masks, methods, "
            "data sets or architectures; loaded here and in every worker",
        )
        if name == chosen:
            importlib.import_module(subcommand.arguments_module).add_arguments(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (only the chosen subcommand's arguments module imported), then import
    and run the subcommand. Returns the exit code: 0, 2 for a user mistake, 130 on Ctrl-C."""
    argv = list(sys.argv[1:] if argv is None else argv)
    stdout = sys.stdout
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    sys.stdout = QuietPipe(stdout)  # type: ignore[assignment]
    terminate = _exit_on_sigterm()
    try:
        return _main(argv)
    except SystemExit as stop:
        if stop.code != TERMINATED:
            raise
        print("icl-interp: terminated; rerun the same command to resume", file=sys.stderr)
        return TERMINATED
    finally:
        if terminate is not None:
            signal.signal(signal.SIGTERM, terminate)
        results = sys.modules.get("icl_interp.results")  # never imported just for this
        if results is not None:
            results.release_locks()
        sys.stdout = stdout


TERMINATED = 143  # 128 + SIGTERM


def _exit_on_sigterm() -> Any:
    """Make SIGTERM raise ``SystemExit(143)`` (so ``finally`` blocks stop worker pools and Ray
    and release folder locks); return the previous handler (None off the main thread)."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(TERMINATED)

    try:
        return signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        return None


def _main(argv: list[str]) -> int:
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    prog = f"icl-interp {chosen}" if chosen else "icl-interp"
    started = False
    try:
        parser = build_parser(chosen)
        try:
            args = parser.parse_args(argv)
        except SystemExit as stop:  # --help (0) or a one-line usage error (2), already printed
            return int(stop.code or 0)
        if args.command is None:
            parser.print_help()
            return 2
        if (empty := empty_option(argv)) is not None:
            print(
                f"{prog}: error: {empty} is empty (an unset shell variable?); give a value",
                file=sys.stderr,
            )
            return 2
        subcommand = SUBCOMMANDS[args.command]
        if args.plugins and (code := exit_code(prog, lambda: load_plugins(args.plugins))) != 0:
            return code
        check = getattr(
            importlib.import_module(subcommand.arguments_module), "check_arguments", None
        )
        if check is not None and (code := exit_code(prog, lambda: check(args))) != 0:
            return code
        if args.quiet:
            set_quiet()
        module = importlib.import_module(subcommand.runner)
        started = True
        with stage(prog):
            return exit_code(prog, lambda: module.run(args))
    except KeyboardInterrupt:
        where = "; rerun the same command to resume" if started else " during start-up"
        print(f"{prog}: interrupted{where}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
