"""`cnnlab summary MODEL | CHECKPOINT | RUN`: layers, shapes, parameters and receptive fields."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import add_command, command_config
from cnnlab.config import SummaryConfig
from cnnlab.errors import ConfigError


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, SummaryConfig, run_summary,
        help="each layer's output shape, parameters, mult-adds and receptive field",
        description=(
            "Summarise a model (a name from `cnnlab models`, a .pt checkpoint or a run folder): "
            "per layer the output shape, parameters, multiply-adds, and the receptive field, "
            "jump and start offset of its outputs in input pixels; totals and memory below."
        ),
    )  # fmt: skip


def run_summary(args: argparse.Namespace) -> None:
    cfg = command_config(args, SummaryConfig).validate()
    shape = input_shape(cfg.input) if cfg.input else None  # before torch is imported

    from cnnlab.inspect.layer_summary import summary

    summary(
        cfg.model, shape, batch=cfg.batch, depth=cfg.depth, model_args=cfg.model_args,
    )  # fmt: skip


def input_shape(text: str) -> tuple[int, int, int]:
    """--input as (C, H, W), read by convcalc's parser (plain Python): inspect/sources.py's
    parse_input says the same, but that module imports torch."""
    from cnnlab.inspect.convcalc import parse_dims

    shape = parse_dims(text, "--input", counts=(3,))
    if min(shape) < 1:
        raise ConfigError(f"--input must be positive, got {text!r}")
    return shape  # type: ignore[return-value]
