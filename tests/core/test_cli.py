import subprocess
import sys
from pathlib import Path

from icl_interp.cli import main


def test_no_command_prints_help_and_returns_2() -> None:
    assert main([]) == 2


def test_unknown_command_is_one_line_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "icl_interp", "bogus"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "invalid choice" in proc.stderr


def test_every_option_of_every_command_has_help() -> None:
    from icl_interp.cli import SUBCOMMANDS, build_parser
    from tests.helpers import options_without_help

    missing = {bare for name in SUBCOMMANDS for bare in options_without_help(build_parser(name))}
    assert not missing, f"options without help: {sorted(missing)}"


def _subparser(name: str):  # type: ignore[no-untyped-def]
    import argparse

    from icl_interp.cli import build_parser

    (sub,) = [a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    return sub.choices[name]


def test_each_config_field_declared_as_an_option_is_parsed_to_its_default() -> None:
    """The parser is derived from the config: parsing no options gives the default config."""
    from icl_interp.lm import compare_config, layers_config
    from icl_interp.lm.adapt import config as adapt_config
    from icl_interp.lm.adapt import table_config
    from icl_interp.lsa import config as lsa_config

    for name, module, default in [
        ("compare", compare_config, compare_config.CompareConfig()),
        ("layers", layers_config, layers_config.LayerAccuracyConfig()),
        ("adapt", adapt_config, adapt_config.AdaptConfig()),
        ("adapt-table", table_config, table_config.TableConfig()),
        ("lsa", lsa_config, lsa_config.LSAConfig()),
    ]:
        args = _subparser(name).parse_args([])
        assert module.config_from_args(args) == default, name
    from icl_interp.synthetic import config as synthetic_config

    args = _subparser("synthetic").parse_args(["--out", "x"])
    assert synthetic_config.config_from_args(args) == synthetic_config.ExperimentConfig()


def test_adapt_table_embeds_the_adaptation_config_and_shares_its_options() -> None:
    """adapt-table's training options are AdaptConfig's own (k renamed --train-k), fill the
    embedded config, and a preset's training values reach it unless an option is given."""
    from icl_interp.lm.adapt.config import AdaptConfig
    from icl_interp.lm.adapt.table_config import config_from_args

    args = _subparser("adapt-table").parse_args(
        ["--preset", "tiny", "--train-k", "3", "--weight-decay", "0.1", "--seeds", "0"]
    )
    config = config_from_args(args)
    assert isinstance(config.training, AdaptConfig)
    assert (config.training.k, config.training.weight_decay, config.training.steps) == (3, 0.1, 4)
    assert config.training.base == "tiny-gemma3" and config.seeds == (0,)
    model = config.adapt_config("causal", 0, Path("m"))
    assert (model.objective, model.k, model.out) == ("causal", 3, "m")
    flags = {f for a in _subparser("adapt-table")._actions for f in a.option_strings}  # noqa: SLF001
    assert {"--train-k", "--train-queries", "--lora-rank"} <= flags
    assert not {"--k", "--objective", "--seed", "--progress"} & flags


def test_one_model_is_given_by_model_in_every_command_that_takes_one() -> None:
    for name in ("layers", "adapt", "adapt-table"):
        flags = {flag for action in _subparser(name)._actions for flag in action.option_strings}  # noqa: SLF001
        assert "--model" in flags, name
    assert "--models" in {f for a in _subparser("compare")._actions for f in a.option_strings}  # noqa: SLF001


def test_option_declares_flag_aliases_lists_switches_and_preset_defaults() -> None:
    import argparse
    from dataclasses import dataclass

    import pytest

    from icl_interp.options import add_config_arguments, config_values, option

    @dataclass(frozen=True)
    class Toy:
        name: str = option("a", "a name", flags=("--name", "--alias"))
        sizes: tuple[int, ...] = option((1, 2), "sizes", nargs="+", type=int)
        fast: bool = option(False, "a switch")
        hidden: int = 3

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Toy)
    assert Toy(**config_values(Toy, parser.parse_args([]))) == Toy()
    given = parser.parse_args(["--alias", "b", "--sizes", "3", "4", "--fast"])
    assert Toy(**config_values(Toy, given)) == Toy("b", (3, 4), True)
    with pytest.raises(SystemExit):
        parser.parse_args(["--sizes", "3", "3"])  # a repeated value is refused
    with pytest.raises(SystemExit):
        parser.parse_args(["--hidden", "4"])  # a field without option() is not an option
    presets = argparse.ArgumentParser()
    add_config_arguments(presets, Toy, presets=True)
    assert config_values(Toy, presets.parse_args(["--fast"])) == {"fast": True}


def test_a_list_option_made_from_python_is_refused_empty_or_repeated() -> None:
    """check_list_option: the config-level twin of the parser's Distinct, one line each."""
    import pytest

    from icl_interp.errors import UserError
    from icl_interp.lm.compare_config import CompareConfig
    from icl_interp.options import check_list_option
    from icl_interp.synthetic.config import ExperimentConfig

    check_list_option("seeds", (0, 1))
    with pytest.raises(UserError, match="^--seeds needs at least one value$"):
        check_list_option("seeds", ())
    with pytest.raises(UserError, match="^--seeds lists 0, 2 more than once$"):
        check_list_option("seeds", (2, 0, 2, 1, 0))
    with pytest.raises(UserError, match="--datasets lists mr more than once"):
        CompareConfig(datasets=("mr", "sst2", "mr"))
    with pytest.raises(UserError, match="--tasks needs at least one value"):
        ExperimentConfig(tasks=())
