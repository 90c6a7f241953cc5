"""`cnnlab convcalc` and `cnnlab params`: the arithmetic of a conv or pool, of a chain of them,
and the weights a convolution saves. Plain Python (inspect/convcalc.py, inspect/params.py):
both answer at once."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import add_command, command_config
from cnnlab.config import ConvcalcConfig, ParamsConfig
from cnnlab.inspect.convcalc import CHAIN_HELP


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, ConvcalcConfig, run_convcalc,
        help="output size of a conv or pool; receptive fields of a chain of them",
        description=(
            "The output size of one conv or pool layer (--size, --kernel, ...), with PyTorch's "
            "formula filled in for each axis; or, with --chain, the size, jump and receptive "
            "field after each layer of a chain, starting from --size."
        ),
        epilog=CHAIN_HELP,
    )  # fmt: skip
    add_command(
        subparsers, ParamsConfig, run_params,
        help="weights of a convolution vs a fully connected layer",
        description=(
            "The weights of a convolution and of the fully connected layer that maps the same "
            "input to an output of the same size, and how many times fewer the convolution has."
        ),
    )  # fmt: skip


def run_convcalc(args: argparse.Namespace) -> None:
    from cnnlab.inspect import convcalc

    cfg = command_config(args, ConvcalcConfig).validate()
    if cfg.chain is not None:
        lines = convcalc.format_chain(convcalc.chain_from_config(cfg))
    else:
        lines = convcalc.format_layer(convcalc.layer_from_config(cfg))
    print("\n".join(lines))


def run_params(args: argparse.Namespace) -> None:
    from cnnlab.inspect import params

    cfg = command_config(args, ParamsConfig).validate()
    print("\n".join(params.format_params(params.params_from_config(cfg))))
