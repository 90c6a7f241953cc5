"""Names a package exports but imports only when first used (PEP 562's module __getattr__).

`cnnlab --help` must not wait a second or more for torch, yet `from cnnlab.data import
make_loader` must keep working: a package lists where each of its names lives, and the module
holding a name is imported the first time someone asks for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `where` maps each name to its submodule."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return __getattr__
