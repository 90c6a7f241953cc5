"""cnnlab: train, inspect and compare convolutional image classifiers with PyTorch.

import cnnlab
result = cnnlab.train(cnnlab.TrainConfig(model="lenet", dataset="fashion-mnist", epochs=10))
print(result.run_dir, result.metrics[-1]["test_accuracy"])

Names are imported on first use (PEP 562), so `import cnnlab` and `cnnlab --help` do not wait
for torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

from cnnlab.config import EvalConfig, TrainConfig, load_recipe
from cnnlab.errors import (
    CheckpointError,
    CnnlabError,
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    ModelError,
)

__version__ = "0.1.0"

_WHERE = {
    "list_datasets": "cnnlab.data",
    "load_dataset": "cnnlab.data",
    "create_model": "cnnlab.models",
    "list_models": "cnnlab.models",
    "EvalResult": "cnnlab.train",
    "TrainResult": "cnnlab.train",
    "evaluate": "cnnlab.train",
    "evaluate_checkpoint": "cnnlab.train",
    "fit": "cnnlab.train",
    "load_checkpoint": "cnnlab.train",
    "rebuild_model": "cnnlab.train",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def train(config: TrainConfig | None = None, *, resume: str | Path | None = None, **overrides: Any):
    """Train a model: `train(TrainConfig(...))`, `train(model="lenet", epochs=3)`, or
    `train(resume="runs/x", epochs=20)` to continue a run from its last.pt, step for step."""
    from cnnlab.train import fit, resume_run

    if resume is not None:
        if config is not None:
            raise ConfigError("give either a config or resume=RUN_DIR (with overrides), not both")
        return resume_run(resume, **overrides)
    values = {**(config or TrainConfig()).to_dict(), **overrides}
    return fit(TrainConfig.from_dict(values, source="cnnlab.train"))


class _Package(types.ModuleType):
    """`cnnlab.train` is the function above, not the subpackage of the same name.

    Importing a subpackage sets it as an attribute of its parent; with lazy imports that can
    happen at any time, so the function would be replaced whenever `cnnlab.train` is imported.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return  # the subpackage stays reachable as sys.modules["cnnlab.train"]
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "CheckpointError",
    "CnnlabError",
    "ConfigError",
    "DataFormatError",
    "DataNotFoundError",
    "EvalConfig",
    "ModelError",
    "TrainConfig",
    "load_recipe",
    "train",
    *_WHERE,
]
