"""`cnnlab summary MODEL | CHECKPOINT | RUN`: layers, shapes, parameters and receptive fields."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import add_command, given_values
from cnnlab.config import SummaryConfig


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
    from cnnlab.inspect.layer_summary import summary
    from cnnlab.inspect.sources import parse_input

    cfg = SummaryConfig.from_dict(given_values(args, SummaryConfig), "cnnlab summary").validate()
    shape = parse_input(cfg.input) if cfg.input else None  # before torch is imported
    summary(
        cfg.model, shape, batch=cfg.batch, depth=cfg.depth, model_args=cfg.model_args,
    )  # fmt: skip
