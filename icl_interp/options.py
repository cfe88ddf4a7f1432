"""Argument types and actions shared by the ``icl-interp`` subcommands (import-light: no torch).

- ``seed``: ``type=seed`` accepts an integer 0 .. 2**63-1 (what torch, numpy and the result
  folders' unit names all take); anything else is a one-line parser error, exit 2.
- ``Distinct``: ``action=Distinct`` for ``nargs="+"`` list options (``--seeds``, ``--mu-x``,
  ``--datasets``): a repeated value is a one-line parser error naming it (a repeated value
  would otherwise repeat every row it produces).
- ``add_backend_arguments``: ``--backend``, ``--workers``, ``--threads``, the same for every
  command that runs units through the run kernel (``icl_interp.runs``);
  ``add_draw_grid_arguments``: the models x data sets x masks x draws of an analysis script.
- ``check_list_option``: a config's list refused when empty or repeating a value.
- ``option`` / ``nested`` / ``add_config_arguments`` / ``config_values``: a command's settings
  are declared once, as fields of its config dataclass (``nested``: a config it embeds, whose
  options it shares); the parser is derived from them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import Field, dataclass, field, fields
from typing import Any

MAX_SEED = 2**63 - 1


def seed(text: str) -> int:
    """An argparse ``type``: a non-negative integer seed, at most ``MAX_SEED``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must be in 0..2**63-1, got {value}")
    return value


def repeated(values: Sequence[Any]) -> list[Any]:
    """The values that occur more than once in ``values``, each once, in first-seen order."""
    seen: set[Any] = set()
    twice: list[Any] = []
    for value in values:
        if value in seen and value not in twice:
            twice.append(value)
        seen.add(value)
    return twice


def check_list_option(name: str, values: Sequence[Any]) -> None:
    """A one-line ``UserError`` for list option ``--name`` given no value or one value twice:
    what ``Distinct`` refuses on the command line, for a config made from Python."""
    from icl_interp.errors import UserError

    if not values:
        raise UserError(f"--{name} needs at least one value")
    twice = sorted({str(v) for v in repeated(values)})
    if twice:
        raise UserError(f"--{name} lists {', '.join(twice)} more than once")


class Distinct(argparse.Action):
    """Store a list option's values, refusing repeats (``--seeds 0 0`` -> exit 2, one line)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        twice = repeated(list(values))
        if twice:
            shown = " ".join(str(v) for v in twice)
            parser.error(f"argument {option_string}: repeated value(s) {shown}; give each once")
        setattr(namespace, self.dest, list(values))


BACKEND_CHOICES = ("auto", "serial", "processes", "ray", "submitit")


def add_backend_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, units: str
) -> None:
    """``--backend``, ``--workers`` and ``--threads``: where a command's ``units`` run
    (``icl_interp.runs``); they change how fast, never a number."""
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help=f"where {units} run: serial (this process), processes (local), ray (local or "
        "RAY_ADDRESS), submitit (a SLURM job array, or local processes without SLURM); "
        "auto: serial for one worker, processes for more",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help=f"{units} at a time (processes, ray; at most in flight for submitit)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads per worker (default: torch's choice in this process, 1 per worker "
        "on the other backends)",
    )


def add_draw_grid_arguments(parser: argparse.ArgumentParser) -> None:
    """The grid of an analysis script over models x data sets x masks x demonstration draws
    (the order-sensitivity and task-vector scripts): ``--models``, ``--datasets``, ``--masks``,
    ``--seeds``, ``--k``, ``--n-test``, ``--max-len``, ``--data-dir``, ``--source``,
    ``--threads``."""
    from icl_interp.masks import mask_names

    parser.add_argument(
        "--models",
        nargs="+",
        default=["gemma-3-270m", "smollm2-135m"],
        help="models: packaged names, tiny-<arch>, HF folders or .gguf files",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["sst2", "mr", "agnews"],
        help="data sets (registered names)",
    )
    parser.add_argument(
        "--masks", nargs="+", default=mask_names(), help="mask kinds (registered names)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2, 3, 4],
        help="demonstration draws, one seed each",
    )
    parser.add_argument("--k", type=int, default=None, help="demonstrations (default: data set's)")
    parser.add_argument("--n-test", type=int, default=50, help="test queries per draw")
    parser.add_argument("--max-len", type=int, default=2048, help="token budget of a prompt")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the data sets (default: the packaged copies)",
    )
    parser.add_argument("--source", default="auto", help="auto, folder, package or hub")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def check_backend_options(backend: str, workers: int, threads: int | None) -> None:
    """A one-line ``UserError`` for a backend, worker count or thread count that cannot run."""
    from icl_interp.errors import UserError

    if backend not in BACKEND_CHOICES:
        raise UserError(f"unknown backend {backend!r}; choose from {', '.join(BACKEND_CHOICES)}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")


@dataclass(frozen=True)
class OptionSpec:
    """How one config field appears on the command line (``option`` builds it)."""

    help: str
    flags: tuple[str, ...]
    group: str | None
    kwargs: dict[str, Any]


def option(
    default: Any,
    help: str,
    *,
    flags: tuple[str, ...] = (),
    group: str | None = None,
    **kwargs: Any,
) -> Any:
    """A config field that is also a command-line option, declared once.

    The flag is ``--`` and the field's name with dashes, unless ``flags`` names it (the first
    is the flag, the rest aliases); ``group`` is a key of ``add_config_arguments``'s
    ``groups``; ``kwargs`` go to ``add_argument`` (``type``, ``nargs``, ``choices``). A list
    option (``nargs``) refuses repeated values (``Distinct``); a ``False`` default is a switch.
    """
    return field(default=default, metadata={"option": OptionSpec(help, flags, group, kwargs)})


def declared_options(config: type) -> list[tuple[Field[Any], OptionSpec]]:
    """The fields of the dataclass ``config`` declared with ``option``, in field order."""
    return [(f, f.metadata["option"]) for f in fields(config) if "option" in f.metadata]


@dataclass(frozen=True)
class NestedSpec:
    """How a config embedded in another appears on the command line (``nested`` builds it)."""

    config: type
    group: str | None
    flags: dict[str, str]
    omit: frozenset[str]


def nested(
    config: type,
    *,
    group: str | None = None,
    flags: dict[str, str] | None = None,
    omit: Sequence[str] = (),
) -> Any:
    """A config field holding another config (by default ``config()``), whose options are
    ``config``'s own ``option`` fields less ``omit`` (those the embedding config sets itself),
    each under its own flag unless ``flags`` renames it (field name: flag). On the namespace an
    embedded option's dest is ``<field>.<name>``; ``config_values`` gathers them into a dict."""
    spec = NestedSpec(config, group, dict(flags or {}), frozenset(omit))
    return field(default_factory=config, metadata={"nested": spec})


def add_config_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config: type,
    groups: dict[str, str] | None = None,
    presets: bool = False,
) -> dict[str, argparse._ArgumentGroup]:
    """Add one option per ``option`` field of ``config`` (and of each config it embeds with
    ``nested``) and return the argument groups made from ``groups`` (key: title, in display
    order). ``presets``: an option not given is left out of the namespace (a preset fills it)
    instead of taking the field's default."""
    made = {key: parser.add_argument_group(title) for key, title in (groups or {}).items()}
    for spec_field in fields(config):
        if "option" in spec_field.metadata:
            spec = spec_field.metadata["option"]
            target = parser if spec.group is None else made[spec.group]
            flags = spec.flags or ("--" + spec_field.name.replace("_", "-"),)
            _add_option(target, flags, spec_field.name, spec_field.default, spec, presets)
        elif "nested" in spec_field.metadata:
            outer = spec_field.metadata["nested"]
            target = parser if outer.group is None else made[outer.group]
            for inner, spec in declared_options(outer.config):
                if inner.name in outer.omit:
                    continue
                flags = (outer.flags[inner.name],) if inner.name in outer.flags else spec.flags
                flags = flags or ("--" + inner.name.replace("_", "-"),)
                dest = f"{spec_field.name}.{inner.name}"
                _add_option(target, flags, dest, inner.default, spec, presets)
    return made


def _add_option(
    target: argparse.ArgumentParser | argparse._ArgumentGroup,
    flags: tuple[str, ...],
    dest: str,
    default: Any,
    spec: OptionSpec,
    presets: bool,
) -> None:
    kwargs = dict(spec.kwargs)
    if default is False:
        kwargs.setdefault("action", "store_true")
    elif kwargs.get("nargs") in ("+", "*"):
        kwargs.setdefault("action", Distinct)
        default = list(default)
    if kwargs.get("action") != "store_true":
        kwargs.setdefault("metavar", flags[0].lstrip("-").replace("-", "_").upper())
    target.add_argument(
        *flags,
        dest=dest,
        default=argparse.SUPPRESS if presets else default,
        help=spec.help,
        **kwargs,
    )


def config_values(config: type, args: argparse.Namespace) -> dict[str, Any]:
    """The values in ``args`` of ``config``'s fields (lists as tuples), by field name; a field
    absent from ``args`` is absent here; an embedded config's values are a dict (``nested``)."""
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items()}
    values: dict[str, Any] = {}
    for f in fields(config):
        if "nested" in f.metadata:
            inner = {k.split(".", 1)[1]: v for k, v in given.items() if k.startswith(f.name + ".")}
            if inner:
                values[f.name] = inner
        elif f.name in given:
            values[f.name] = given[f.name]
    return values
