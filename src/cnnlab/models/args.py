"""What a model's builder arguments mean, in plain Python (no torch): a model card, a resume
check and a checkpoint all ask which arguments make the architecture and which only say where
its first weights came from."""

from __future__ import annotations

from typing import Any

# Every builder takes these; create_model fills the first three from the registry when None.
COMMON_ARGS = ("num_classes", "in_channels", "image_size", "init")
# builder arguments that say where the first weights came from, not what the model is: a
# model rebuilt to take saved weights must not download or read them again
WEIGHT_ARGS = ("pretrained", "weights_file")


def architecture_args(model_args: dict[str, Any]) -> dict[str, Any]:
    """`model_args` without the WEIGHT_ARGS: what rebuilds the architecture to load into."""
    return {key: value for key, value in model_args.items() if key not in WEIGHT_ARGS}
