"""Files that are never torn: written next to their final name, fsynced, then `os.replace`d.

A kill at any moment leaves either the old whole file or the new whole file, never a mix; the
temporary file a killed writer leaves (`.NAME.*.tmp`) is never read, and `remove_stale_temp_files`
clears it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], mode: int | None = None):
    """Call `write(file)` on a temporary file beside `path`, then put it in place atomically.

    `mode` sets the permission bits (mkstemp makes the file private to its owner).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temp_files(folder: Path) -> None:
    """Delete the temporary files of writes that a kill interrupted (never read by anyone)."""
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    # make the rename itself durable; not every platform lets a directory be opened
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def size_text(count: float) -> str:
    """A byte count as people read it: 978 B, 262.3 kB, 1.5 MB (powers of 1000, as torchinfo's
    memory figures)."""
    for unit in ("B", "kB", "MB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"
