"""`cnnlab train`: one flag per TrainConfig field, plus --recipe and --resume."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlab.cli.options import add_command, given_values
from cnnlab.config import TrainConfig, load_recipe
from cnnlab.errors import ConfigError

RECIPE_HELP = "TOML recipe with defaults; flags override it"
RESUME_HELP = "continue the run in this folder from last.pt"


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, TrainConfig, run_train,
        help="train a model from a recipe, flags, or both",
        description=(
            "Train a model. Use a recipe (--recipe recipes/lenet-fashion-mnist.toml), flags, "
            "or both; flags override the recipe. Writes runs/NAME/: config.json, "
            "metrics.jsonl, TensorBoard events, last.pt and best.pt."
        ),
        usage="cnnlab train [--recipe FILE | --resume RUN_DIR] [OPTIONS]",
        leading=(
            ("--recipe", dict(type=Path, metavar="FILE", help=RECIPE_HELP)),
            ("--resume", dict(type=Path, metavar="RUN_DIR", help=RESUME_HELP)),
        ),
    )  # fmt: skip


def run_train(args: argparse.Namespace) -> None:
    from cnnlab.train import fit, resume_run

    overrides = given_values(args, TrainConfig)
    if args.resume is not None:
        if args.recipe is not None:
            raise ConfigError("give --recipe or --resume, not both (a run keeps its own recipe)")
        resume_run(args.resume, **overrides)
        return
    values: dict[str, Any] = load_recipe(args.recipe) if args.recipe is not None else {}
    if args.recipe is not None and "name" not in values and "name" not in overrides:
        from cnnlab.train.run_dir import timestamp

        # a recipe names its runs, with a timestamp so running it again starts a new run
        values["name"] = f"{args.recipe.stem}-{timestamp()}"
    values.update(overrides)
    fit(TrainConfig.from_dict(values, source="cnnlab train"))
