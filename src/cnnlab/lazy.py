"""Names a package exports but imports only when first used (PEP 562's module __getattr__).

`cnnlab --help` must not wait a second or more for torch, yet `from cnnlab.data import
make_loader` must keep working: a package lists where each of its names lives, and the module
holding a name is imported the first time someone asks for it.

That first import is where a command spends its first second (torch, numpy), so it is where a
Ctrl-C lands: a KeyboardInterrupt raised inside a C extension's import leaves it half loaded,
and numpy then refuses to load again ("cannot load module more than once per process"), a
traceback instead of a clean stop. So the signal is held until the import ends, then delivered.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

HELD = (signal.SIGINT, signal.SIGTERM)


def lazy_exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `where` maps each name to its submodule."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        with signals_held():
            module = importlib.import_module(f"{package}.{where[name]}")
        return getattr(module, name)

    return __getattr__


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends, then reach the handlers they would have
    reached (only the main thread can set handlers: elsewhere, nothing is held)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    before = {signum: signal.signal(signum, lambda s, _: caught.append(s)) for signum in HELD}
    try:
        yield
    finally:
        for signum, handler in before.items():  # (None: one set outside Python)
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if caught:
            os.kill(os.getpid(), caught[0])  # delivered now, to the handler restored above
