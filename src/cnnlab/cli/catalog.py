"""`cnnlab models`, `cnnlab recipes` and `cnnlab datasets`: what there is to train, how, and
where the data is."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli.options import add_command, command_config
from cnnlab.config import DatasetsConfig, ModelsConfig, RecipesConfig


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, ModelsConfig, run_models, help="list the models",
        description="List the models: name, seed, default input, parameters, description.",
    )  # fmt: skip
    add_command(
        subparsers, RecipesConfig, run_recipes,
        help="list the recipes shipped with cnnlab",
        description=(
            "List the recipes shipped with cnnlab: name and purpose. Train one with "
            "`cnnlab train --recipe NAME`; flags override its values."
        ),
    )  # fmt: skip
    add_command(
        subparsers, DatasetsConfig, run_datasets,
        help="list the built-in data sets and where each is found",
        description="List the built-in data sets and where each is found (or how to get it).",
    )  # fmt: skip


def run_models(args: argparse.Namespace) -> None:
    from rich.table import Table

    from cnnlab.models.catalog import model_catalog

    cfg = command_config(args, ModelsConfig).validate()
    table = Table("name", "seed", "input", "parameters", "description")
    for row in model_catalog(cfg.pattern):
        shape = "×".join(map(str, row["input_shape"]))
        count = "?" if row["parameters"] is None else f"{row['parameters']:,}"
        table.add_row(row["name"], row["seed"], shape, count, row["description"])
    _console().print(table)


def run_recipes(args: argparse.Namespace) -> None:
    from rich.table import Table
    from rich.text import Text

    from cnnlab.config.recipes import recipe_catalog

    cfg = command_config(args, RecipesConfig).validate()
    table = Table("name", "purpose")
    for name, purpose in recipe_catalog(cfg.pattern):
        table.add_row(name, Text(purpose))  # as written: brackets are not rich markup
    console = _console()
    console.print(table)
    console.print("train one: cnnlab train --recipe NAME (or --recipe FILE, a TOML of your own)")


def run_datasets(args: argparse.Namespace) -> None:
    from rich.table import Table

    from cnnlab.data.locate import find_dataset, search_dirs
    from cnnlab.data.specs import BUILTIN_DATASETS

    cfg = command_config(args, DatasetsConfig)
    table = Table("name", "classes", "found in")
    for name, spec in BUILTIN_DATASETS.items():
        where = find_dataset(name, cfg.data_dir)
        found = str(where) if where else "not on disk: downloaded on first use"
        table.add_row(name, str(len(spec.class_names)), found)
    console = _console()
    console.print(table)
    console.print("searched, in order: " + ", ".join(str(p) for p in search_dirs(cfg.data_dir)))
    console.print("your own data: --dataset npz:FOLDER (train.npz, test.npz) or folder:FOLDER")


def _console():
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            # rich's own exits 1; `run` exits 141, as for every command that prints
            raise BrokenPipeError

    # a pipe or a log file gets full-width rows instead of names cut to 80 columns
    return PipeConsole(width=None if sys.stdout.isatty() else 160)
