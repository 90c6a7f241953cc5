"""The command-line spelling of a config: `batch_size` is `--batch-size`, a `--model-arg` is
KEY=VALUE with a TOML literal, a list is comma-separated numbers. `command_line` turns config
values back into flags (the inverse of the CLI's `given_values`), so a report can print the
command that runs a config again without knowing the CLI. `cli_message` is an error's line in
the command line's words: a field's flag where Python names the field.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from typing import Any

from cnnlab.config.fields import FieldError, field_default, field_types
from cnnlab.errors import ConfigError


def flag_name(name: str) -> str:
    if name == "model_args":  # the one dict field: a repeated --model-arg KEY=VALUE
        return "--model-arg"
    return "--" + name.replace("_", "-")


def cli_message(err: BaseException) -> str:
    """The line the command line prints for `err`: a FieldError names the field's flag
    (`--val-fraction must be in [0, 1)`, where Python reads `val_fraction ...`); any other
    error is its own text."""
    if isinstance(err, FieldError):
        return err.worded(lambda name: (name == err.field and err.flag) or flag_name(name))
    return str(err)


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
