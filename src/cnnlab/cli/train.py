"""`cnnlab train`: one flag per TrainConfig field, plus --recipe, --resume and --seeds (and
`--lr find`: the learning-rate finder's rate, cli/lr_find.py).

Everything the recipe, the flags and the paths they name can show to be wrong is refused
before torch is imported (a second or more): the config, validated; the data set; the weights
and model files; the run folder (every seed's). Only what needs the registry or the data
itself (an unknown model, a model too big for the images) waits for torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlab.cli.options import add_command, given_values
from cnnlab.config import Config, TrainConfig, check_weights_file, load_recipe, spell_lr_find
from cnnlab.config.fields import FieldError
from cnnlab.data.specs import check_dataset_name, files_of
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
            "as mean ± std. --lr find runs the learning-rate range test first (`cnnlab "
            "lr-find`) and trains at its suggestion."
        ),
        usage="cnnlab train [--recipe RECIPE | --resume RUN_DIR] [--seeds 0,1,2] [OPTIONS]",
        leading=(
            ("--recipe", dict(metavar="RECIPE", help=RECIPE_HELP)),
            ("--resume", dict(type=Path, metavar="RUN_DIR", help=RESUME_HELP)),
            ("--seeds", dict(metavar="0,1,2", help=SEEDS_HELP)),
        ),
    )  # fmt: skip


def run_train(args: argparse.Namespace) -> None:
    overrides = spell_lr_find(given_values(args, TrainConfig))  # `--lr find`: lr_find
    if args.seeds is not None:
        run_seeds(args, overrides)
        return
    if args.resume is not None:
        run_resume(args, overrides)
        return
    from cnnlab.training.run_dir import prepare_run_dir  # no torch in run_dir

    cfg = checked_config(args, overrides)
    # a run folder that exists, or cannot be written, before torch too (one with a last.pt
    # is left to fit: the same command continues a run it interrupted)
    prepare_run_dir(cfg, may_continue=True)

    from cnnlab.api import finish
    from cnnlab.training import fit

    finish(fit(cfg))


def run_resume(args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    """--resume: the folder and last.pt were checked before the command ran (checks.py); each
    flag's value is checked here, before torch; the run's saved config decides the rest."""
    if args.recipe is not None:
        raise ConfigError("give --recipe or --resume, not both (a run keeps its own recipe)")
    # only the checks of each value on its own: whether the flags fit the saved run (and its
    # values) is resume_config's to say, once last.pt is loaded
    Config.validate(TrainConfig.from_dict(overrides, source="cnnlab train"))

    from cnnlab.api import finish
    from cnnlab.training import resume_run

    finish(resume_run(args.resume, **overrides))


def checked_config(
    args: argparse.Namespace, overrides: dict[str, Any], cls: type[TrainConfig] = TrainConfig
) -> TrainConfig:
    """The config of a new run (`cls`: or of `cnnlab lr-find`, LrFindConfig) from the recipe
    and the flags, with every check that needs no torch: each value, the weights file, the
    data set (its name, its folder, or with --no-download its files), a model file. A value
    from the recipe is named as the recipe names it; one from a flag, by its flag."""
    cfg = cls.from_dict(new_run_values(args, overrides), source=f"cnnlab {cls.command}")
    try:
        check_weights_file(cfg.validate())  # (a resumed run's weights are in last.pt)
    except FieldError as err:
        if args.recipe is None or err.field in overrides:
            raise
        raise ConfigError(f"recipe {args.recipe}: {err}") from None
    check_data_on_disk(cfg)
    check_model_file(cfg.model)
    return cfg


def check_data_on_disk(cfg: TrainConfig) -> None:
    """The data set's name, and with --no-download a built-in that is already on disk (found
    as data/locate.py finds it: no torch, nothing decoded)."""
    spec = check_dataset_name(cfg.dataset).spec
    if cfg.download or spec is None:
        return
    from cnnlab.data.locate import on_disk

    on_disk(files_of(spec), cfg.data_dir, download_ok=False)


def check_model_file(model: str) -> None:
    """--model FILE.py:Name needs the file (read as models/own.py reads it; the registry's
    other checks import torch)."""
    target, colon, _ = model.rpartition(":")
    path = Path(target).expanduser().resolve()
    if colon and target.endswith(".py") and not path.is_file():
        raise ConfigError(
            f"model file {path} does not exist; give --model path/to/file.py:Name or "
            "package.module:Name"
        )


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
    from cnnlab.training.seeds import parse_seeds, seed_configs  # no torch in seeds

    if args.resume is not None:
        raise ConfigError(
            "give --seeds or --resume, not both; resume each seed's run folder on its own"
        )
    if "seed" in overrides:
        raise ConfigError("give --seeds or --seed, not both (--seeds 0,1,2 sets each run's seed)")
    seeds = parse_seeds(args.seeds)
    cfg = checked_config(args, overrides)
    seed_configs(cfg, seeds)  # every seed's run folder, before torch (train_seeds checks again)

    from cnnlab.api import train_seeds
    from cnnlab.report.compare import compare

    results = train_seeds(cfg, seeds)  # checks every seed's run folder before the first trains
    if results[0].main_process:  # under torchrun, rank 0 prints
        print(compare([result.run_dir for result in results]))
