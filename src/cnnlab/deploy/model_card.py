"""The model card: what a model file is, as JSON a deployment can read without cnnlab.

A weights file alone cannot be used: the caller must know the architecture, the class names,
the input size and mode, and the normalisation. Every exported file carries this card: beside
it as `<stem>.json` (the "sidecar", shared by best.onnx, best.safetensors and
best.torchscript.pt), and inside the ONNX file (metadata_props["cnnlab"]) and the TorchScript
file (extra file "cnnlab.json") as well, so those two are complete on their own.

    {"format": "cnnlab-model", "version": 1, "model_name": "lenet", "model_args": {...},
     "class_names": [...], "input_shape": [1, 28, 28], "mean": [...], "std": [...],
     "dataset": "fashion-mnist", "metrics": {"epoch": 10, "test_accuracy": 0.81, ...},
     "input": {...}, "versions": {"cnnlab": ..., "torch": ...}}

An image becomes the model's input as `cnnlab.data.images` does it: converted to "L" (1 channel)
or "RGB" (3), resized to input_shape's H×W (bilinear), then (pixel / 255 - mean) / std per
channel, in NCHW float32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnlab.errors import CheckpointError
from cnnlab.files import installed_version
from cnnlab.models.args import architecture_args

CARD_FORMAT = "cnnlab-model"
CARD_VERSION = 1
# the export formats and the ending of each one's file name
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".safetensors"}
METRIC_KEYS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")
REQUIRED = {
    "model_name": str, "model_args": dict, "class_names": list, "input_shape": list,
    "mean": list, "std": list,
}  # fmt: skip
INPUT = {
    "name": "images",
    "layout": "NCHW",
    "dtype": "float32",
    "modes": {"1": "L (grayscale)", "3": "RGB"},
    "resize": "bilinear to input_shape's H x W",
    "scaling": "(pixel / 255 - mean) / std, per channel",
    "output": "logits (N, len(class_names)); softmax gives probabilities",
}


def card_from_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """The model card of a loaded cnnlab checkpoint; metrics are those of the epoch it was
    written at (best.pt: the best epoch)."""
    last_row = state["metrics"][-1] if state.get("metrics") else {}
    return {
        "format": CARD_FORMAT,
        "version": CARD_VERSION,
        "model_name": state["model_name"],
        "model_args": architecture_args(state["model_args"]),
        "class_names": list(state["class_names"]),
        "input_shape": list(state["input_shape"]),
        "mean": list(state["mean"]),
        "std": list(state["std"]),
        **({"model_source": state["model_source"]} if state.get("model_source") else {}),
        "dataset": state.get("dataset"),
        "metrics": {key: last_row[key] for key in METRIC_KEYS if key in last_row},
        "input": INPUT,
        "versions": {name: installed_version(name) for name in ("cnnlab", "torch")},
    }


def card_json(card: dict[str, Any]) -> str:
    return json.dumps(card, indent=1)


def parse_card(text: str | bytes, where: str | Path) -> dict[str, Any]:
    """A card from its JSON text; CheckpointError naming `where` when it is not one."""
    try:
        card = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{where} is not a cnnlab model card (not JSON)") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise CheckpointError(f"{where} is not a cnnlab model card (no '{CARD_FORMAT}' marker)")
    if not isinstance(card.get("version"), int) or card["version"] > CARD_VERSION:
        raise CheckpointError(
            f"{where} is a model card of version {card.get('version')!r}; this cnnlab reads "
            f"up to {CARD_VERSION}: upgrade cnnlab"
        )
    wrong = [key for key, kind in REQUIRED.items() if not isinstance(card.get(key), kind)]
    if wrong:
        raise CheckpointError(f"{where} is a damaged model card: {', '.join(wrong)} missing")
    return card


def sidecar_path(model_file: str | Path) -> Path:
    """`best.json` for best.onnx, best.safetensors or best.torchscript.pt."""
    path = Path(model_file)
    for suffix in SUFFIXES.values():
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.with_name(path.name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def read_sidecar(model_file: str | Path) -> dict[str, Any]:
    """The card beside `model_file`; CheckpointError saying which file is missing."""
    path = sidecar_path(model_file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(
            f"{model_file} has no model card beside it: {path} is missing (cnnlab export "
            "writes it with the weights; copy both)"
        ) from None
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read: {err}") from None
    return parse_card(text, path)
