"""`cnnlab features RUN`: the first conv layer's filters and one image's feature maps, as PNGs."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import add_command, command_config
from cnnlab.config import FeaturesConfig


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, FeaturesConfig, run_features,
        help="draw a model's conv filters and feature maps as PNG files",
        description=(
            "Draw what a trained model's conv layers do: the first conv layer's filters "
            "(filters.png), the image looked at (input.png), and that image's feature maps "
            "through every conv layer the forward pass calls, one PNG per layer "
            "(maps-NN-<layer>.png, at most 64 channels each). The image is a test image of "
            "the run's data set (--index) or a file (--image), converted, resized and "
            "normalised as the model was trained. A run folder gives its best.pt, else "
            "its last.pt."
        ),
    )  # fmt: skip


def run_features(args: argparse.Namespace) -> None:
    from cnnlab.inspect.features import write_features

    cfg = command_config(args, FeaturesConfig)
    paths = write_features(cfg)
    print(f"wrote {len(paths)} files to {paths[0].parent}/")
    for path in paths:
        print(f"  {path.name}")
