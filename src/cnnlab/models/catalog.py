"""The table of models that `cnnlab models` prints, answered without importing torch.

Counting parameters means building each model (VGG-11 has 133 M), and importing torch alone
takes about a second. So the table is computed once and kept in the user cache under a key made
of the cnnlab, torch and torchvision versions and the model source files: any change to them
computes it again. Seed models are built on the meta device (shapes only: no weights allocated
or initialised); the torchvision ones are not built at all: their count is the one their
DEFAULT weights report (the 1000-class RGB model the registry's defaults build), as registered.
Nothing here imports torch unless the table has to be computed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path
from typing import Any

from cnnlab.files import atomic_write_text, installed_version

COLUMNS = ("name", "seed", "input_shape", "parameters", "description")


def name_matches(name: str, pattern: str) -> bool:
    """Shell-style matching of model names ("net*", "tv_*"), in any case."""
    return fnmatch.fnmatchcase(name.lower(), pattern.lower())


def model_catalog(pattern: str = "*") -> list[dict[str, Any]]:
    """One row per built-in model matching `pattern`: COLUMNS, sorted by name."""
    from cnnlab.data.locate import cache_dir  # torch-free

    path = cache_dir() / "models" / f"catalog-{_key()}.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        rows = _compute()
        _save(path, rows)
    return [row for row in rows if name_matches(row["name"], pattern)]


def _compute() -> list[dict[str, Any]]:
    import torch

    from cnnlab.models.registry import count_parameters, create_model, list_models, model_info

    rows = []
    for name in list_models():
        info = model_info(name)
        parameters = info.parameters
        if parameters is None:
            try:
                with torch.device("meta"):  # counts without allocating a single weight
                    parameters = count_parameters(create_model(name))
            except Exception:  # a model of your own whose size is known once it runs (lazy)
                parameters = None
        rows.append(dict(zip(COLUMNS, (name, info.seed, list(info.input_shape), parameters,
                                       info.description), strict=True)))  # fmt: skip
    return rows


def _save(path: Path, rows: list[dict[str, Any]]) -> None:
    try:  # only a cache: a folder that cannot be written costs the next call the time again
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(rows))
    except OSError:
        pass


def _key() -> str:
    from importlib.metadata import entry_points

    facts: list[Any] = [installed_version(name) for name in ("cnnlab", "torch", "torchvision")]
    # the installed packages that register models (registry.PLUGIN_GROUP), and their versions
    for entry in entry_points(group="cnnlab.models"):
        facts.append([entry.name, entry.value, entry.dist.version if entry.dist else None])
    for source in sorted(Path(__file__).parent.glob("*.py")):
        stat = source.stat()
        facts.append([source.name, stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]
