"""cnnlab: train, inspect and compare convolutional image classifiers with PyTorch.

import cnnlab
result = cnnlab.train(cnnlab.TrainConfig(model="lenet", dataset="fashion-mnist", epochs=10))
print(result.run_dir, result.metrics[-1]["test_accuracy"])

Names are imported on first use (PEP 562), so `import cnnlab` and `cnnlab --help` do not wait
for torch. `cnnlab.train` is the training subpackage, and calling it trains (see its docstring).
"""

from __future__ import annotations

from cnnlab import train  # cheap: the subpackage imports its modules on first use
from cnnlab.config import EvalConfig, TrainConfig, load_recipe
from cnnlab.errors import (
    CheckpointError,
    CnnlabError,
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    ModelError,
    RunFolderError,
)
from cnnlab.lazy import lazy_exports

__version__ = "0.1.0"

_WHERE = {
    "list_datasets": "data",
    "load_dataset": "data",
    "summary": "inspect",
    "create_model": "models",
    "list_models": "models",
    "EvalResult": "train",
    "TrainResult": "train",
    "evaluate": "train",
    "evaluate_checkpoint": "train",
    "fit": "train",
    "load_checkpoint": "train",
    "rebuild_model": "train",
    "Predictor": "deploy",
    "export_model": "deploy",
    "load_model_file": "deploy",
}
__getattr__ = lazy_exports(__name__, _WHERE)

__all__ = [
    "CheckpointError",
    "CnnlabError",
    "ConfigError",
    "DataFormatError",
    "DataNotFoundError",
    "EvalConfig",
    "ModelError",
    "RunFolderError",
    "TrainConfig",
    "load_recipe",
    "train",
    *_WHERE,
]
