"""The machinery under the config dataclasses: `opt` (a field and its facts) and the field
types that the recipe reader and the command line check values against.

Nothing here imports torch: `cnnlab --help` must not wait for it.
"""

from __future__ import annotations

import dataclasses
import functools
import string
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import ConfigError


def opt(
    help: str,
    default: Any = None,
    *,
    factory: Any = None,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    resumable: bool = False,
    argument: bool = False,
    flag: str | None = None,
    words: tuple[str, ...] = (),
) -> Any:
    """A config field and its facts: the `--help` text, the allowed `choices`, the `minimum`,
    whether a resumed run may change it (`resumable`: it decides where and how fast a run goes,
    not what it learns), whether the CLI takes it as a positional `argument`, and its `flag`
    when that is not the field's name (`--in` for `in_shape`: `in` is a Python keyword), and the
    `words` a number field takes besides numbers (`--lr find`)."""
    metadata = {
        "help": help,
        "choices": tuple(choices),
        "minimum": minimum,
        "resumable": resumable,
        "argument": argument,
        "flag": flag,
        "words": tuple(words),
    }
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class FieldError(ConfigError):
    """A config value that cannot be used, in a message that names fields as Python does
    (`val_fraction must be in [0, 1), got 2.0`) for the API and recipes, and as flags on the
    command line (`--val-fraction must be ...`, flags.cli_message). In `message`, `{name}` is
    the field of that name and `{got}` the value; `field` is the one at fault."""

    def __init__(self, field: str, message: str, got: Any = None, flag: str | None = None):
        self.field, self.message, self.got = field, message, got
        self.flag = flag  # the field's flag where it is not spelled from its name (`--in`)
        super().__init__(self.worded(lambda name: name))

    def worded(self, name_of: Callable[[str], str]) -> str:
        """The message with each field in it called `name_of(field)`."""
        parts = string.Formatter().parse(self.message)
        names = {name: name_of(name) for _, name, _, _ in parts if name and name != "got"}
        return self.message.format(got=self.got, **names)

    def __reduce__(self) -> tuple[Any, ...]:  # pickled (between processes) with its parts
        return (type(self), (self.field, self.message, self.got, self.flag))


@dataclass(frozen=True)
class FieldType:
    """A config field's value type, as the CLI and the recipe reader need it."""

    kind: type  # bool, int, float, str, dict, list or tuple
    optional: bool  # None is allowed


@functools.cache  # a class's fields do not change; get_type_hints takes a millisecond a call
def field_types(cls: type) -> Mapping[str, FieldType]:
    """Every field of a config dataclass with its FieldType, in declaration order."""
    hints = typing.get_type_hints(cls)
    types_ = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = type(None) in typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = args[0]
        origin = typing.get_origin(hint)
        types_[f.name] = FieldType(origin if origin is not None else hint, optional)
    return types.MappingProxyType(types_)  # read-only: every caller shares it


def field_default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def coerce(value: Any, kind: FieldType, where: str) -> Any:
    """Check `value` against a field's type; ints pass for floats, lists for tuples."""
    if value is None:
        if kind.optional:
            return None
        raise ConfigError(f"{where} must not be empty")
    numbers = lambda v: (  # noqa: E731
        isinstance(v, list | tuple)
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
    )
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        dict: lambda v: isinstance(v, dict),
        list: numbers,
        tuple: numbers,
    }[kind.kind]
    if not ok(value):
        raise ConfigError(f"{where} must be {_type_word(kind.kind)}, got {value!r}")
    if kind.kind is float:
        return float(value)
    if kind.kind in (list, tuple):
        return kind.kind(float(x) for x in value)
    return value


def _type_word(kind: type) -> str:
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return words.get(kind, {dict: "a table", list: "a list of numbers"}.get(kind, "a pair"))


def plain_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items()}
    return value
