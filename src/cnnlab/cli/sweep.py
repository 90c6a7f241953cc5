"""`cnnlab sweep SPACE.toml`: a search over training settings on Optuna (see cnnlab/sweeps/).

The SPACE file, its recipe and every value it searches are checked before Optuna or torch is
imported; a bad one is one line and exit 2, before any trial runs."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import add_command, command_config
from cnnlab.config import SweepConfig, TrainConfig


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, SweepConfig, run_sweep_command,
        help="search training settings with Optuna: every trial a run folder",
        description=(
            "Search training settings with Optuna. SPACE.toml holds fixed settings (any "
            "`cnnlab train` key, or recipe = NAME), a [search] table (lr = { low = 1e-3, high "
            "= 3.0, log = true }, optimizer = [\"sgd\", \"adam\"]) and a [study] table "
            "(objective, trials, sampler, pruner, seed). Every trial is a run in "
            "OUT_DIR/NAME/trials/<n>/, judged on its validation split (the test split is "
            "measured once, for the best trial). Writes best.toml (a recipe) and sweep.html; "
            "the same command again continues the study."
        ),
        usage="cnnlab sweep SPACE.toml [--trials N] [--workers N] [--out-dir DIR] [--name NAME]",
    )  # fmt: skip


def run_sweep_command(args: argparse.Namespace) -> None:
    from cnnlab.cli.train import check_data_on_disk
    from cnnlab.sweeps import run_sweep
    from cnnlab.sweeps.space import read_space

    cfg = command_config(args, SweepConfig)
    cfg.validate()
    space = None
    if cfg.space is not None:  # the data set the trials train on, before Optuna and torch
        space = read_space(cfg.space, cfg.trials)
        check_data_on_disk(TrainConfig.from_dict(space.fixed, source=str(cfg.space)))
    run_sweep(cfg, space)
