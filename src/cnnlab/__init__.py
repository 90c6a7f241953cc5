"""cnnlab: train, inspect and compare convolutional image classifiers with PyTorch.

import cnnlab
result = cnnlab.train(cnnlab.TrainConfig(model="lenet", dataset="fashion-mnist", epochs=10))
print(result.run_dir, result.metrics[-1]["test_accuracy"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.config import TrainConfig, load_recipe
from cnnlab.data import list_datasets, load_dataset
from cnnlab.errors import (
    CheckpointError,
    CnnlabError,
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    ModelError,
)
from cnnlab.models import create_model, list_models
from cnnlab.train import (
    EvalResult,
    TrainResult,
    evaluate,
    fit,
    load_checkpoint,
    rebuild_model,
)
from cnnlab.train import resume as resume_run

__version__ = "0.1.0"


def train(
    config: TrainConfig | None = None, *, resume: str | Path | None = None, **overrides: Any
) -> TrainResult:
    """Train a model: `train(TrainConfig(...))`, `train(model="lenet", epochs=3)`, or
    `train(resume="runs/x", epochs=20)` to continue a run from its last.pt, step for step."""
    if resume is not None:
        if config is not None:
            raise ConfigError("give either a config or resume=RUN_DIR (with overrides), not both")
        return resume_run(resume, **overrides)
    values = {**(config or TrainConfig()).to_dict(), **overrides}
    return fit(TrainConfig.from_dict(values, source="cnnlab.train"))


__all__ = [
    "CheckpointError",
    "CnnlabError",
    "ConfigError",
    "DataFormatError",
    "DataNotFoundError",
    "EvalResult",
    "ModelError",
    "TrainConfig",
    "TrainResult",
    "create_model",
    "evaluate",
    "list_datasets",
    "list_models",
    "load_checkpoint",
    "load_dataset",
    "load_recipe",
    "rebuild_model",
    "train",
]
