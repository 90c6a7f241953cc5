"""Command-line options generated from the config dataclasses (config.py).

`add_config_options(parser, EvalConfig)` adds one option per field (`batch_size` is
`--batch-size`; a bool is `--flag / --no-flag`; a dict is a repeated `--model-arg KEY=VALUE`; a
list of numbers is comma-separated; a field marked `argument` is positional), with the field's
help, choices and default. `given_values(namespace, EvalConfig)` gives back only what the user
typed, as config values, so a recipe's values are overridden by flags and by nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tomllib
from typing import Any

from cnnlab.config import field_default, field_types
from cnnlab.errors import ConfigError


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


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


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
        else:
            options["type"] = kind.kind
            options["metavar"] = "|".join(facts["choices"]) if facts["choices"] else f.name.upper()
        if default is not None and default != {}:
            shown = ",".join(map(str, default)) if isinstance(default, tuple | list) else default
            help_text += f" [default: {shown}]"
        parser.add_argument(facts["flag"] or flag_name(f.name), help=help_text, **options)


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


def parse_key_value(item: str) -> tuple[str, Any]:
    """`n_chans1=32` → ("n_chans1", 32): values are TOML literals, else plain strings."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--model-arg expects KEY=VALUE (like n_chans1=32), got {item!r}")
    try:  # TOML literals: 32, 0.5, true, "text"; anything else is a plain string
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return key.strip(), value


def parse_numbers(name: str, text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"{flag_name(name)} expects numbers separated by commas, got {text!r}"
        ) from None


def command_line(
    cls: type, values: dict[str, Any], leave_out: tuple[str, ...] = (), always: tuple[str, ...] = ()
) -> list[str]:
    """The flags that give `values` (those that differ from the defaults, and the `always`
    ones): the inverse of `given_values`, so a report can print the command that runs a config
    again."""
    kinds = field_types(cls)
    argv: list[str] = []
    for f in dataclasses.fields(cls):
        if f.name in leave_out or f.name not in values:
            continue
        value, default = values[f.name], field_default(f)
        if _same(value, default) and f.name not in always:
            continue
        kind, flag = kinds[f.name].kind, f.metadata["flag"] or flag_name(f.name)
        if f.metadata["argument"]:
            argv.append(str(value))
        elif kind is bool:
            argv.append(flag if value else "--no-" + flag[2:])
        elif kind is dict:
            for key, item in value.items():
                argv += ["--model-arg", f"{key}={_toml_literal(item)}"]
        elif kind in (list, tuple):
            argv += [flag, ",".join(_number(v) for v in value)]
        elif value is not None:
            argv += [flag, _number(value) if kind is float else str(value)]
    return argv


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, list | tuple) and isinstance(default, list | tuple):
        return list(value) == list(default)
    return value == default


def _number(value: Any) -> str:
    """1.0 → "1", 0.001 → "0.001": the shortest text that reads back as the same float."""
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def _toml_literal(value: Any) -> str:
    """A --model-arg value parse_key_value reads back as `value`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        try:  # a plain word reads back as itself; anything TOML would parse is quoted
            tomllib.loads(f"v = {value}")
        except tomllib.TOMLDecodeError:
            return value
        return json.dumps(value)
    return json.dumps(value)
