"""Using what was trained: model files to deploy, and predictions on image files.

    from cnnlab.deploy import Predictor
    predictor = Predictor("runs/lenet-fashion-mnist-20261129-100816")   # or best.onnx, ...
    for row in predictor.predict(["shoe.png", "photos/"]):
        print(row.file, row.classes[0], row.probabilities[0])

`model_card.py`: the JSON that says what a model file is (architecture, classes, input size,
normalisation, metrics), beside every exported file and inside ONNX and TorchScript ones.
`model_file.py`: any model file (run folder, checkpoint, .onnx, .safetensors, TorchScript) as
one LoadedModel, and `rebuild_model` of any of them. `export.py`: `cnnlab export`. `predictor.py`:
Predictor, what `cnnlab predict` (cli/predict.py) runs.
Names here are imported on first use.
"""

from __future__ import annotations

from cnnlab.lazy import lazy_exports

_WHERE = {
    "LoadedModel": "model_file",
    "load_model_file": "model_file",
    "rebuild_model": "model_file",
    "card_from_checkpoint": "model_card",
    "export_model": "export",
    "Predictor": "predictor",
}
__all__ = sorted(_WHERE)

__getattr__ = lazy_exports(__name__, _WHERE)
