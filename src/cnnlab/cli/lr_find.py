"""`cnnlab lr-find`: the learning-rate range test of a training config, given as `cnnlab train`
takes one (a recipe, flags, or both), with its suggestion, how it was chosen, and its plot.

What the flags alone show to be wrong (the config, the data set, a model file, the output
folder) is refused before torch is imported, as `cnnlab train` refuses it.
"""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import add_command, given_values
from cnnlab.cli.train import RECIPE_HELP, checked_config
from cnnlab.config import LrFindConfig, spell_lr_find
from cnnlab.files import check_output_folder


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, LrFindConfig, run_lr_find,
        help="find a learning rate: the range test, its suggestion and a plot",
        description=(
            "The learning-rate range test: --lr-find-steps training steps with the rate "
            "rising exponentially from --start-lr to --end-lr, stopped early when the loss "
            "diverges. Prints the suggested rate and how it was read off the smoothed loss, "
            "and writes lr_find.png and lr_find.json into --out. Takes the flags and recipes "
            "of `cnnlab train` (its run-folder flags are not used: no run folder is made); the "
            "model, optimizer and random state are left as they were. `cnnlab train --lr find` "
            "runs it first and trains at the suggestion."
        ),
        usage="cnnlab lr-find [--recipe RECIPE] [OPTIONS]",
        leading=(("--recipe", dict(metavar="RECIPE", help=RECIPE_HELP)),),
    )  # fmt: skip


def run_lr_find(args: argparse.Namespace) -> None:
    overrides = spell_lr_find(given_values(args, LrFindConfig))
    cfg = checked_config(args, overrides, LrFindConfig)
    out = check_output_folder(cfg.out, "--out", "give --out a folder")

    from cnnlab.api import lr_find

    result = lr_find(cfg)
    print(result.summary())
    print(f"plot: {result.plot} (the curve: {out / 'lr_find.json'})")
