"""`cnnlab train`: one flag per TrainConfig field, plus --recipe, --resume and --seeds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlab.cli.options import add_command, given_values
from cnnlab.config import TrainConfig, load_recipe
from cnnlab.errors import ConfigError

RECIPE_HELP = (
    "a shipped recipe's name (`cnnlab recipes`), or a TOML file: defaults that flags override"
)
RESUME_HELP = "continue the run in this folder from last.pt"
SEEDS_HELP = (
    "train once per seed, one run folder each (NAME-seedK), then compare them: mean ± std of "
    "test accuracy over seeds"
)


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, TrainConfig, run_train,
        help="train a model from a recipe, flags, or both",
        description=(
            "Train a model. Use a recipe (--recipe lenet-fashion-mnist), flags, "
            "or both; flags override the recipe. With no flag: LeNet on Fashion-MNIST, pixels "
            "normalised by the data set's mean and std, adam at lr 3e-3, batch 256, 10 epochs. "
            "Your own model: --model path/to/file.py:Name (or package.module:Name) with "
            "--model-arg KEY=VALUE for its arguments. Writes runs/NAME/: config.json, "
            "metrics.jsonl, TensorBoard events, last.pt and best.pt. --seeds 0,1,2 trains "
            "the same config once per seed (runs/NAME-seed0, ...) and prints their accuracy "
            "as mean ± std."
        ),
        usage="cnnlab train [--recipe RECIPE | --resume RUN_DIR] [--seeds 0,1,2] [OPTIONS]",
        leading=(
            ("--recipe", dict(metavar="RECIPE", help=RECIPE_HELP)),
            ("--resume", dict(type=Path, metavar="RUN_DIR", help=RESUME_HELP)),
            ("--seeds", dict(metavar="0,1,2", help=SEEDS_HELP)),
        ),
    )  # fmt: skip


def run_train(args: argparse.Namespace) -> None:
    overrides = given_values(args, TrainConfig)
    if args.seeds is not None:
        run_seeds(args, overrides)
        return
    from cnnlab.api import finish
    from cnnlab.training import fit, resume_run

    if args.resume is not None:
        if args.recipe is not None:
            raise ConfigError("give --recipe or --resume, not both (a run keeps its own recipe)")
        finish(resume_run(args.resume, **overrides))
        return
    finish(fit(TrainConfig.from_dict(new_run_values(args, overrides), source="cnnlab train")))


def new_run_values(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, Any]:
    """The recipe's values (if any), its run name, then the flags on top."""
    values: dict[str, Any] = load_recipe(args.recipe) if args.recipe is not None else {}
    if args.recipe is not None and "name" not in values and "name" not in overrides:
        from cnnlab.config.recipes import recipe_name
        from cnnlab.training.run_dir import timestamp

        # a recipe names its runs, with a timestamp so running it again starts a new run
        values["name"] = f"{recipe_name(args.recipe)}-{timestamp()}"
    values.update(overrides)
    return values


def run_seeds(args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    """--seeds: every check first (seeds, config, every run folder), then one run per seed,
    then the compare table of those runs."""
    from cnnlab.training.seeds import parse_seeds

    if args.resume is not None:
        raise ConfigError(
            "give --seeds or --resume, not both; resume each seed's run folder on its own"
        )
    if "seed" in overrides:
        raise ConfigError("give --seeds or --seed, not both (--seeds 0,1,2 sets each run's seed)")
    seeds = parse_seeds(args.seeds)
    cfg = TrainConfig.from_dict(new_run_values(args, overrides), source="cnnlab train").validate()

    from cnnlab.api import train_seeds
    from cnnlab.report.compare import compare

    results = train_seeds(cfg, seeds)  # checks every seed's run folder before the first trains
    if results[0].main_process:  # under torchrun, rank 0 prints
        print(compare([result.run_dir for result in results]))
