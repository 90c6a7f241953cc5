"""cnnlab: train, inspect and compare convolutional image classifiers with PyTorch.

import cnnlab
result = cnnlab.train(cnnlab.TrainConfig(model="lenet", dataset="fashion-mnist", epochs=10))
print(result.run_dir, result.metrics[-1]["test_accuracy"])

Names are imported on first use (PEP 562), so `import cnnlab` and `cnnlab --help` do not wait
for torch. `cnnlab.train` is a function (api.py); the training engine is the package
`cnnlab.training`.
"""

from __future__ import annotations

from cnnlab.config import EvalConfig, LrFindConfig, TrainConfig, load_recipe
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
    "explain": "report",
    "create_model": "models",
    "list_models": "models",
    "register_model": "models",
    "train": "api",
    "train_seeds": "api",
    "lr_find": "api",
    "sweep": "sweeps",
    "EvalResult": "training",
    "TrainResult": "training",
    "evaluate": "training",
    "evaluate_checkpoint": "training",
    "load_checkpoint": "training",
    "rebuild_model": "deploy",
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
    "LrFindConfig",
    "ModelError",
    "RunFolderError",
    "TrainConfig",
    "load_recipe",
    *_WHERE,
]
