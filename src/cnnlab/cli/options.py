"""Command-line options generated from the config dataclasses (config/).

`add_config_options(parser, EvalConfig)` adds one option per field (`batch_size` is
`--batch-size`; a bool is `--flag / --no-flag`; a dict is a repeated `--model-arg KEY=VALUE`; a
list of numbers is comma-separated; a field marked `argument` is positional), with the field's
help, choices and default. `given_values(namespace, EvalConfig)` gives back only what the user
typed, as config values, so a recipe's values are overridden by flags and by nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from typing import Any

from cnnlab.config.fields import field_default, field_types
from cnnlab.config.flags import flag_name, parse_key_value, parse_numbers


class UsageError(Exception):
    """The command line itself is malformed (unknown flag, missing argument, not a number)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, raised instead of printed so `main` reports them, and
    help as wide as the terminal allows (up to 100 columns)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:
        raise UsageError(f"{message}; see `{self.prog} --help`")


class _HelpFormatter(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        width = min(shutil.get_terminal_size().columns, 100)
        super().__init__(prog, max_help_position=32, width=width)


def add_command(
    subparsers: Any,
    cls: type,
    run: Any,
    help: str,
    description: str,
    leading: tuple[tuple[str, dict[str, Any]], ...] = (),
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """The subcommand `cls.command` calling `run(namespace)` (kept as `namespace.handler`):
    the `leading` options that are not config fields (flag, add_argument keywords), then one
    per field of `cls`."""
    parser = subparsers.add_parser(cls.command, help=help, description=description, **kwargs)
    for flag, options in leading:
        parser.add_argument(flag, **options)
    add_config_options(parser, cls)
    parser.set_defaults(handler=run)  # not `run`: a command may have a RUN argument
    return parser


def add_config_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option (or positional argument) per field of the config dataclass `cls`."""
    kinds = field_types(cls)
    for f in dataclasses.fields(cls):
        kind, facts, default = kinds[f.name], f.metadata, field_default(f)
        help_text = facts["help"].replace("%", "%%")
        if facts["argument"]:
            optional = default is not None
            suffix = f" (default: {default})" if optional else ""
            parser.add_argument(
                f.name, nargs="?" if optional else None, default=None, help=help_text + suffix
            )
            continue
        if kind.kind is dict:
            parser.add_argument(
                "--model-arg", dest=f.name, action="append", metavar="KEY=VALUE",
                help=f"{help_text} (repeat for more)",
            )  # fmt: skip
            continue
        options: dict[str, Any] = {"dest": f.name, "default": None}
        if kind.kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif kind.kind in (list, tuple):
            options["metavar"] = "N,N" if kind.kind is tuple else "N,N,..."
            help_text += " (comma-separated)"
        elif facts["words"]:  # a number, or one of the words the field also takes
            options["type"] = number_or_word(kind.kind, facts["words"])
            options["metavar"] = "|".join((f.name.upper(), *facts["words"]))
        else:
            options["type"] = kind.kind
            options["metavar"] = "|".join(facts["choices"]) if facts["choices"] else f.name.upper()
        if default is not None and default != {}:
            shown = ",".join(map(str, default)) if isinstance(default, tuple | list) else default
            help_text += f" [default: {shown}]"
        parser.add_argument(facts["flag"] or flag_name(f.name), help=help_text, **options)


def number_or_word(kind: type, words: tuple[str, ...]) -> Any:
    """An argparse type reading a number of `kind`, or one of `words` as it is."""

    def parse(text: str) -> Any:
        if text in words:
            return text
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expects a number or {' or '.join(words)}, got {text!r}"
            ) from None

    return parse


def command_config(namespace: argparse.Namespace, cls: type) -> Any:
    """The config of a command that reads no recipe, from the flags the user typed. argparse
    has typed every value and given_values names the config's own fields only, so from_dict
    cannot refuse them (a recipe's values can be wrong: train and lr-find name their source)."""
    return cls.from_dict(given_values(namespace, cls))


def given_values(namespace: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields the user gave on the command line, as config values (the rest are left out)."""
    kinds = field_types(cls)
    values: dict[str, Any] = {}
    for name, kind in kinds.items():
        value = getattr(namespace, name, None)
        if value is None:
            continue
        if kind.kind is dict:
            value = dict(parse_key_value(item) for item in value)
        elif kind.kind in (list, tuple):
            value = parse_numbers(name, value)
        values[name] = value
    return values
