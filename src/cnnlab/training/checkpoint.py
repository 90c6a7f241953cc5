"""Checkpoints: crash-safe writes, safe loads, and rebuilding a model without its recipe.

A checkpoint is a plain dict of tensors and Python values (no pickled classes), so it loads
with `torch.load(..., weights_only=True)`: a file whose pickle would run code is refused.
It is written through cnnlab.files, so a kill at any moment leaves the old good file or the new
good file, never a torn one. Layout: `format`, `version`, the RunInfo fields, `model_state`,
`optimizer_state`, `scheduler_state`, the TrainState fields (`epoch_sums` among them),
`finished`, `rng`.
"""

from __future__ import annotations

import io
import pickle
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.errors import CheckpointError, first_line
from cnnlab.files import atomic_write_bytes, zip_damage

FORMAT = "cnnlab-checkpoint"
VERSION = 1  # the layout below; files written before the run/session split have the same one


@dataclass
class RunInfo:
    """What a run is: every checkpoint carries it (to rebuild the model and read its data
    without the recipe), and config.json starts with it."""

    model_name: str
    model_args: dict[str, Any]  # every builder argument, data-derived ones included
    class_names: list[str]
    mean: list[float]  # the normalisation the model was trained with, [0, 1] pixel units
    std: list[float]
    input_shape: list[int]  # (C, H, W)
    dataset: str
    config: dict[str, Any]  # TrainConfig.to_dict()
    # your own model's code: {"file", "sha256"} or {"module"} (models/own.py); None: built-in
    model_source: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Serialise in memory first (a failure leaves no file behind), then write atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def checkpoint_path(checkpoint: str | Path) -> tuple[Path, Path]:
    """(checkpoint file, run folder) to look at a trained model: a run folder gives its best.pt,
    else its last.pt (resuming reads last.pt: `load_checkpoint(run_folder)`)."""
    path = Path(checkpoint)
    if path.is_dir():
        best = path / "best.pt"
        return (best if best.is_file() else path / "last.pt"), path
    return path, path.parent


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a cnnlab checkpoint safely (weights_only) onto `map_location` (default CPU).

    Its zip entries' CRCs are checked first: torch checks none, so a damaged file would load
    with wrong weights, or fail as if it held unsafe objects."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give a .pt file or a run folder")
    _check_intact(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # whole (or no zip): its pickle asks for more
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain values "
            f"({refusal(err)}); only load checkpoints you trust, saved by cnnlab"
        ) from None
    except Exception as err:  # torch raises many kinds for a torn or foreign file
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {first_line(err, 100)})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a cnnlab checkpoint (no '{FORMAT}' marker)")
    version = state.get("version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(
            f"{path} has no valid checkpoint version ({version!r}); it is damaged"
        )
    if version > VERSION:
        raise CheckpointError(
            f"{path} was written by a newer cnnlab (checkpoint version {version}; this one "
            f"reads up to {VERSION}); upgrade cnnlab to load it"
        )
    return state


def refusal(err: pickle.UnpicklingError) -> str:
    """What torch's weights_only unpickler refused, in a few words: "Unsupported global: GLOBAL
    torch.nn.modules.linear.Linear" (its message opens with advice to load the file unsafely,
    in terminal bold: neither belongs in cnnlab's line)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    found = re.search(r"WeightsUnpickler error: (.*?)(?: was not an allowed|\.\s|\.?$)", text, re.M)
    if found:
        return found.group(1).strip()
    return first_line(RuntimeError(text)) if text.strip() else "unsafe content"


def _check_intact(path: Path) -> None:
    """A CheckpointError when the file's bytes are not those torch.save wrote."""
    try:
        damage = zip_damage(path)
    except OSError as err:
        raise CheckpointError(
            f"cannot read checkpoint {path}: {err.strerror or err}; check that you may read it"
        ) from None
    if damage is None:
        return
    other = {"best.pt": "last.pt", "last.pt": "best.pt"}.get(path.name)
    instead = (
        f"use the run's {other} or train again"
        if other and (path.parent / other).is_file()
        else "use another checkpoint or train again"
    )
    raise CheckpointError(
        f"{path} is not a readable checkpoint: it is damaged ({damage}); {instead}"
    )


def rebuild_model(
    state: dict[str, Any], device: str | torch.device = "cpu", where: str | Path = "the run"
) -> nn.Module:
    """The trained model of a loaded checkpoint, on `device`. (`cnnlab.rebuild_model` also
    takes a file: deploy/model_file.py.) Your own model's code must be where the run found it,
    unchanged: `where` (the checkpoint's path) names the run in the error that says so."""
    from cnnlab.models.own import build_recorded

    if not isinstance(state, dict):
        raise CheckpointError(
            f"rebuild_model here takes a loaded checkpoint, not {state!r}: give "
            "load_checkpoint(path), or call cnnlab.rebuild_model(path), which reads model files"
        )

    # weights come from the checkpoint: no pretrained download, no --weights-file read again
    source = state.get("model_source")
    model = build_recorded(state["model_name"], state["model_args"], source, where)
    load_model_state(model, state)
    return model.to(device)


def load_model_state(model: nn.Module, state: dict[str, Any]) -> None:
    """load_state_dict with an error that names both architectures when they differ."""
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError:
        saved = state["model_args"]
        raise CheckpointError(
            f"checkpoint holds {state['model_name']} with {saved.get('num_classes')} classes "
            f"and {saved.get('in_channels')} input channels, which does not fit this model; "
            "evaluate it with the data set it was trained on"
        ) from None


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every random state that decides the rest of a run, as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
            "kind": kind,
        },
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (np_state["kind"], keys, np_state["pos"], np_state["has_gauss"], np_state["gauss"])
    )
    random.setstate(_to_tuples(state["python"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _to_tuples(value: Any) -> Any:
    # random.setstate wants tuples; a round trip through some loaders gives lists
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list | tuple) else value
