"""Any model file as one thing that turns a batch of images into logits.

    model = load_model_file("runs/x")                # its best.pt (else last.pt)
    model = load_model_file("runs/x/best.onnx")      # run by onnxruntime
    logits = model.logits(normalize(images, model.mean, model.std))

What each kind of file is, and what runs it:

* a run folder or a cnnlab checkpoint (.pt): the model rebuilt from its name and arguments,
  its weights loaded with `torch.load(weights_only=True)`; runs in PyTorch on `device`.
* `.safetensors` (+ its sidecar `<stem>.json`, or that sidecar beside it): the same, the
  weights read by safetensors, which holds tensors only (nothing to unpickle). Any other .json
  is refused, saying what it is.
* `.onnx`: onnxruntime on the CPU; the card is read from the file's own metadata.
* `.torchscript.pt`: `torch.jit.load`, TorchScript's own reader, which builds TorchScript types
  only and never runs Python's unpickler; the card is the file's extra file "cnnlab.json".

Every one of them gives the same class scores for the same images (tests/test_export.py).
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.deploy.model_card import (
    SUFFIXES,
    card_from_checkpoint,
    parse_card,
    read_sidecar,
    sidecar_path,
)
from cnnlab.errors import CheckpointError, first_line

KINDS = ("checkpoint", "safetensors", "onnx", "torchscript")
ONNX_CARD_KEY = "cnnlab"  # metadata_props key of the card in an exported ONNX file
TORCHSCRIPT_CARD_FILE = "cnnlab.json"  # the card's name among a TorchScript file's extra files


@dataclass
class LoadedModel:
    """A model file, loaded once: its card and a function from normalised images to logits."""

    path: Path  # the file read (a run folder's best.pt, a sidecar's .safetensors)
    kind: str  # one of KINDS
    card: dict[str, Any]  # model_card.py: classes, input shape, normalisation, metrics
    device: torch.device  # where the images must be (the CPU for ONNX)
    run: Callable[[torch.Tensor], torch.Tensor]
    module: nn.Module | None = None  # the PyTorch model (checkpoint, safetensors, TorchScript)

    @property
    def class_names(self) -> list[str]:
        return list(self.card["class_names"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.card["input_shape"]
        return channels, height, width

    @property
    def mean(self) -> list[float]:
        return list(self.card["mean"])

    @property
    def std(self) -> list[float]:
        return list(self.card["std"])

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised float32 images (N, C, H, W) → logits (N, classes), float32 on the CPU."""
        return self.run(images.to(self.device)).float().cpu()


def load_model_file(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """The model in `path` (see the module docstring), ready to run on `device`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"model file {path} does not exist; give a run folder, a .pt checkpoint, or an "
            "exported .onnx, .safetensors or .torchscript.pt file"
        )
    kind = model_file_kind(path)
    device = torch.device(device)
    if kind == "onnx":
        return _load_onnx(path)
    if kind == "torchscript":
        return _load_torchscript(path, device)
    if kind == "safetensors":
        return _load_safetensors(path, device)
    return _load_checkpoint(path, device)


def rebuild_model(
    source: dict[str, Any] | str | Path, device: str | torch.device = "cpu"
) -> nn.Module:
    """The trained model (`cnnlab.rebuild_model`), from a loaded checkpoint or from a file: a
    run folder, a .pt checkpoint, or an exported .safetensors (with its sidecar .json) or
    TorchScript file."""
    from cnnlab.training import checkpoint

    if not isinstance(source, (str, Path)):
        return checkpoint.rebuild_model(source, device)
    loaded = load_model_file(source, device)
    if loaded.module is None:
        raise CheckpointError(
            f"{source} is an ONNX file: onnxruntime runs it, PyTorch cannot load it; use "
            "cnnlab.Predictor, or the checkpoint or .safetensors file it was exported from"
        )
    return loaded.module


def model_file_kind(path: Path) -> str:
    """One of KINDS, from the name, and for .pt files from what the archive holds. A .json is
    the safetensors kind only as the card beside its `<stem>.safetensors`; any other .json is
    a CheckpointError saying what to give instead."""
    name = path.name
    if name.endswith(SUFFIXES["onnx"]):
        return "onnx"
    if name.endswith(SUFFIXES["safetensors"]):
        return "safetensors"
    if name.endswith(".json"):
        if _beside(path, "safetensors").is_file():
            return "safetensors"
        raise _not_a_model(path)
    if path.is_file() and _is_torchscript(path):
        return "torchscript"
    return "checkpoint"


def _beside(card: Path, kind: str) -> Path:
    """The `kind` model file a card `<stem>.json` describes: `<stem>.safetensors`, ..."""
    return card.with_name(card.name[: -len(".json")] + SUFFIXES[kind])


def _not_a_model(path: Path) -> CheckpointError:
    """What a .json without its .safetensors is, and what to give instead, in one line."""
    for kind in ("onnx", "torchscript"):
        if _beside(path, kind).is_file():  # that file holds its card itself
            return CheckpointError(
                f"{path} is the model card of {_beside(path, kind)}, not a model; give "
                f"{_beside(path, kind)} itself"
            )
    return CheckpointError(
        f"{path} is a .json file with no {_beside(path, 'safetensors').name} beside it, not a "
        "model; give a run folder, a .pt checkpoint, or an exported .onnx, .safetensors or "
        ".torchscript.pt file"
    )


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold compiled code (`<name>/code/`); torch.save's hold data only."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in entry for entry in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _load_checkpoint(path: Path, device: torch.device) -> LoadedModel:
    from cnnlab.training.checkpoint import checkpoint_path, load_checkpoint, rebuild_model

    file, _ = checkpoint_path(path)
    state = load_checkpoint(file, map_location=device)
    model = rebuild_model(state, device, file).eval()
    return LoadedModel(file, "checkpoint", card_from_checkpoint(state), device, model, module=model)


def _load_safetensors(path: Path, device: torch.device) -> LoadedModel:
    if path.name.endswith(".json"):  # the sidecar: its weights are beside it
        card = parse_card(_read_bytes(path), path)
        weights = _beside(path, "safetensors")
        if not weights.is_file():
            raise CheckpointError(f"{weights}, the weights of model card {path}, is missing")
        path = weights
    else:
        card = read_sidecar(path)
    model = _architecture(card, path)
    _load_weights(model, path, card, device)
    model = model.to(device).eval()
    return LoadedModel(path, "safetensors", card, device, model, module=model)


def _load_weights(model: nn.Module, path: Path, card: dict[str, Any], device: torch.device):
    """The .safetensors weights into `model`, every tensor of it accounted for.

    safetensors stores tensors that share memory once (net_res_deep's share_weights=True
    repeats one block), so a name missing from the file is fine when its tensor is one that
    was loaded. Not safetensors' own load_model(strict=True): it counts a shared BatchNorm's
    num_batches_tracked as unexpected and refuses a file it wrote itself.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    mismatch = CheckpointError(
        f"{path} does not hold the weights of {card['model_name']} as "
        f"{sidecar_path(path).name} describes it; export the model again"
    )
    try:
        tensors = load_file(path, device=str(device))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None
    try:
        result = model.to(device).load_state_dict(tensors, strict=False)
    except RuntimeError:  # a tensor of another shape
        raise mismatch from None
    state = model.state_dict()
    loaded = {state[name].data_ptr() for name in tensors if name in state}
    missing = [name for name in result.missing_keys if state[name].data_ptr() not in loaded]
    if missing or result.unexpected_keys:
        raise mismatch


def _load_onnx(path: Path) -> LoadedModel:
    try:
        import onnxruntime
    except ImportError:
        raise CheckpointError(
            f"{path} is an ONNX file and onnxruntime is not installed; "
            "pip install 'cnnlab[onnx]' (make setup does)"
        ) from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: the card's keys are not warnings
    try:
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime raises its own exception types for bad files
        raise CheckpointError(f"{path} is not a readable ONNX model ({first_line(err)})") from None
    metadata = session.get_modelmeta().custom_metadata_map
    if ONNX_CARD_KEY in metadata:
        card = parse_card(metadata[ONNX_CARD_KEY], path)
    else:  # an ONNX file written elsewhere, with a card written beside it
        card = read_sidecar(path)
    input_name = session.get_inputs()[0].name

    def run(images: torch.Tensor) -> torch.Tensor:
        outputs = session.run(None, {input_name: images.numpy()})
        return torch.from_numpy(outputs[0])

    return LoadedModel(path, "onnx", card, torch.device("cpu"), run)


def _load_torchscript(path: Path, device: torch.device) -> LoadedModel:
    extra = {TORCHSCRIPT_CARD_FILE: ""}
    try:
        with warnings.catch_warnings():
            # torch 2.14 deprecates torch.jit (FutureWarning); deploy/export.py says why it is
            # still the safe format, and a prediction must print its results only
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as err:  # TorchScript raises RuntimeError and others for bad archives
        raise CheckpointError(
            f"{path} is not a readable TorchScript file ({first_line(err)})"
        ) from None
    text = extra[TORCHSCRIPT_CARD_FILE]
    card = parse_card(text, path) if text else read_sidecar(path)
    module.eval()
    return LoadedModel(path, "torchscript", card, device, module, module=module)


def _architecture(card: dict[str, Any], where: Path) -> nn.Module:
    """The card's model, built with fresh weights to load the saved ones into."""
    from cnnlab.models.own import build_recorded

    return build_recorded(card["model_name"], card["model_args"], card.get("model_source"), where)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read: {err}") from None
