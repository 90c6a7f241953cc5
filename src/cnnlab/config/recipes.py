"""The recipes that ship inside the package (cnnlab/recipes/*.toml), found by name.

`cnnlab train --recipe lenet-fashion-mnist` (or `lenet-fashion-mnist.toml`) reads the shipped
file wherever cnnlab is installed; a file that exists (`--recipe my/own.toml`) is read as it is,
and wins over a shipped recipe of the same name. `cnnlab recipes` lists the shipped ones, each
with its purpose: the first sentence of the file's opening comment. Nothing here imports torch.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from cnnlab.errors import ConfigError

SUFFIX = ".toml"


def shipped_recipes() -> dict[str, Traversable]:
    """Every recipe shipped with cnnlab, by name (the file name without .toml), sorted."""
    folder = files("cnnlab") / "recipes"
    found = {
        entry.name.removesuffix(SUFFIX): entry
        for entry in folder.iterdir()
        if entry.name.endswith(SUFFIX) and entry.is_file()
    }
    return dict(sorted(found.items()))


def recipe_purpose(text: str) -> str:
    """A recipe's purpose: the first sentence of the comment it opens with, on one line."""
    words = []
    for line in text.splitlines():
        if not line.lstrip().startswith("#"):
            if words:
                break
            continue
        words.append(line.lstrip().lstrip("#").strip())
    paragraph = " ".join(word for word in words if word)
    end = re.search(r"\.(\s|$)", paragraph)
    return paragraph[: end.start() + 1] if end else paragraph


def recipe_catalog(pattern: str = "*") -> list[tuple[str, str]]:
    """(name, purpose) of each shipped recipe whose name matches the shell-style pattern."""
    return [
        (name, recipe_purpose(entry.read_text(encoding="utf-8")))
        for name, entry in shipped_recipes().items()
        if fnmatch.fnmatchcase(name, pattern)
    ]


def recipe_name(recipe: str | Path) -> str:
    """What runs of a recipe are named after: `lenet-fashion-mnist` for the shipped name (with
    or without .toml) and for a path to lenet-fashion-mnist.toml alike."""
    return Path(recipe).stem


def find_recipe(recipe: str | Path) -> Path | Traversable:
    """The recipe file: `recipe` itself when it is a file, else the shipped recipe of that name
    (with or without .toml). ConfigError, one line, when it is neither."""
    path = Path(recipe)
    if path.is_file():
        return path
    text = str(recipe)
    if Path(text).name != text:  # a path (it has a folder part) that is not there
        raise ConfigError(
            f"recipe {text} does not exist; give a TOML file, or a shipped recipe's name "
            "(`cnnlab recipes` lists them)"
        )
    shipped = shipped_recipes()
    name = text.removesuffix(SUFFIX)
    if name in shipped:
        return shipped[name]
    close = [other for other in shipped if name and name in other]
    close += difflib.get_close_matches(name, list(shipped), n=3, cutoff=0.5)
    close = list(dict.fromkeys(close))[:5]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"recipe {text!r} is neither a file nor a shipped recipe{hint} "
        "(`cnnlab recipes` lists them)"
    )
