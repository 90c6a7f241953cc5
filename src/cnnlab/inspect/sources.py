"""What the inspect commands look at: a model name, a checkpoint or a run folder, at an input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.errors import CheckpointError, ConfigError, ModelError


def parse_input(text: str) -> tuple[int, int, int]:
    """Text like "3x64x64" (or 3×64×64) as (3, 64, 64); a one-line ConfigError otherwise."""
    from cnnlab.inspect.convcalc import parse_dims

    shape = parse_dims(text, "--input", counts=(3,))
    if min(shape) < 1:
        raise ConfigError(f"--input must be positive, got {text!r}")
    return shape  # type: ignore[return-value]


def open_model(
    spec: nn.Module | str | Path,
    input_shape: tuple[int, int, int] | None,
    model_args: dict[str, Any],
) -> tuple[nn.Module, tuple[int, int, int], str, str]:
    """(model, input shape, model name, the file it came from or "") for a module, a
    registered name, a checkpoint or a run folder.

    A name is built for `input_shape` (so LeNet at 3×32×32 gets the Linear layer that fits); a
    checkpoint holds its model as trained, at the size it was trained on unless `input_shape`
    says otherwise (models ending in adaptive pooling take other sizes).
    """
    if isinstance(spec, nn.Module):
        return (
            spec,
            input_shape or _own_input(spec),
            getattr(spec, "model_name", type(spec).__name__),
            "",
        )
    from cnnlab.models import create_model, model_info

    text = str(spec)
    if Path(text).exists() or text.endswith(".pt") or "/" in text:
        if model_args:
            raise ConfigError("--model-arg is for a model name; a checkpoint holds its own")
        return _from_checkpoint(Path(text), input_shape)
    model_info(text)  # raises: unknown model, with close names (a seed name loads no torchvision)
    sizes = {}
    if input_shape is not None:
        sizes = {"in_channels": input_shape[0], "image_size": tuple(input_shape[1:])}
    try:
        model = create_model(text, **sizes, **model_args)
    except TypeError as err:  # an argument the builder does not take
        raise ModelError(f"{text}: {err}; see its builder's arguments") from None
    return model, input_shape or _own_input(model), text, ""


def _from_checkpoint(path: Path, input_shape: tuple[int, int, int] | None):
    from cnnlab.training.checkpoint import checkpoint_path, load_checkpoint, rebuild_model

    if not path.exists():
        raise CheckpointError(f"{path} does not exist; give a model name, a .pt file or a run "
                              "folder (`cnnlab models` lists the names)")  # fmt: skip
    file, _ = checkpoint_path(path)  # a run folder: its best.pt
    state = load_checkpoint(file)
    model = rebuild_model(state, where=file)
    return model, input_shape or tuple(state["input_shape"]), state["model_name"], str(file)


def _own_input(model: nn.Module) -> tuple[int, int, int]:
    args = getattr(model, "model_args", None)
    if not args:
        raise ModelError("give the input shape (C, H, W): this model was not built by cnnlab")
    return (args["in_channels"], *args["image_size"])
