"""Decode once: decoded arrays kept as an uncompressed .npz in the user cache.

Gunzipping Fashion-MNIST or unpickling CIFAR takes seconds; reading the decoded arrays back
takes tens of milliseconds. The key covers each source file's path, size and mtime, so a changed
source is decoded again. A cache that cannot be written is skipped silently: it is only a cache.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from cnnlab.files import publish

# bump when the layout of the cached arrays changes, so old files are never misread
CACHE_VERSION = 2


def cache_key(files: tuple[Path, ...] | list[Path]) -> str:
    """A short hex digest of the files' resolved paths, sizes and modification times."""
    facts: list[object] = [CACHE_VERSION]
    for path in files:
        stat = path.stat()
        facts.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays in a cache file, or None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    """Write `arrays` to `path` atomically; False (and nothing written) if that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        publish(path, lambda f: np.savez(f, **arrays))  # readable: a cache may be shared
        return True
    except OSError:
        return False
