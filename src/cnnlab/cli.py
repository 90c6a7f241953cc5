"""The `cnnlab` command: train, eval, models, datasets.

`cnnlab train` has one flag per TrainConfig field, generated from the dataclass, so a flag, a
recipe key and a Python argument are always the same thing. Bad input ends in one line on
stderr and exit code 2; a run stopped by SIGINT / SIGTERM exits 130 / 143 after saving.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from pathlib import Path
from typing import Annotated, Any

import tomllib
import typer

try:  # typer >= 0.25 carries its own copy of click; older releases use click itself
    from typer._click import exceptions as click
except ImportError:  # pragma: no cover
    import click.exceptions as click

from cnnlab.config import TrainConfig, _base_type, load_recipe
from cnnlab.errors import CnnlabError, ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Train, inspect and compare convolutional image classifiers (PyTorch).",
)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    from cnnlab.train import TrainingInterrupted

    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="cnnlab", standalone_mode=False)
    except CnnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except getattr(click, "NoArgsIsHelpError", ()) as err:  # plain `cnnlab`: its help
        print(err.ctx.get_help())
        return 0
    except click.UsageError as err:  # one line, like every other input error
        command_name = err.ctx.command_path if err.ctx else "cnnlab"
        print(f"error: {err.format_message()}; see `{command_name} --help`", file=sys.stderr)
        return 2
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except TrainingInterrupted as err:
        print(str(err), file=sys.stderr)
        return err.exit_code
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


# --- train ---------------------------------------------------------------------------------


def _train(recipe: Path | None, resume: Path | None, **flags: Any) -> None:
    from cnnlab.train import fit
    from cnnlab.train import resume as resume_run

    overrides = _flag_values(flags)
    if resume is not None:
        if recipe is not None:
            raise ConfigError("give --recipe or --resume, not both (a run keeps its own recipe)")
        resume_run(resume, **overrides)
        return
    values: dict[str, Any] = load_recipe(recipe) if recipe is not None else {}
    if recipe is not None and "name" not in values and "name" not in overrides:
        from cnnlab.train.runtime import default_run_name

        # a recipe names its runs, with a timestamp so running it again starts a new run
        stamp = default_run_name(TrainConfig()).rsplit("-", 2)[-2:]
        values["name"] = f"{recipe.stem}-{'-'.join(stamp)}"
    values.update(overrides)
    fit(TrainConfig.from_dict(values, source="cnnlab train"))


def _flag_values(flags: dict[str, Any]) -> dict[str, Any]:
    """Turn the flags a user gave (the others are None) into config values."""
    hints = typing.get_type_hints(TrainConfig)
    values: dict[str, Any] = {}
    for name, value in flags.items():
        if value is None or (name == "model_args" and not value):
            continue
        kind = _base_type(hints[name])
        if kind is dict:
            value = dict(_parse_key_value(item) for item in value)
        elif kind in (list, tuple):
            value = _parse_numbers(name, value)
        values[name] = value
    return values


def _parse_key_value(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--model-arg expects KEY=VALUE (like n_chans1=32), got {item!r}")
    try:  # TOML literals: 32, 0.5, true, "text"; anything else is a plain string
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return key.strip(), value


def _parse_numbers(name: str, text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        flag = "--" + name.replace("_", "-")
        raise ConfigError(f"{flag} expects numbers separated by commas, got {text!r}") from None


def _train_signature() -> inspect.Signature:
    """The train command's parameters: --recipe, --resume, then one flag per config field."""
    hints = typing.get_type_hints(TrainConfig)
    params = [
        inspect.Parameter(
            "recipe",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Path | None, typer.Option(help="TOML recipe with defaults; flags override it")
            ],
        ),
        inspect.Parameter(
            "resume",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Path | None, typer.Option(help="continue the run in this folder from last.pt")
            ],
        ),
    ]
    for f in dataclasses.fields(TrainConfig):
        kind = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        help_text = f"{f.metadata['help']} [default: {default}]"
        if kind is bool:
            option, py_type = typer.Option(f"{flag}/--no-{flag[2:]}", help=help_text), bool
        elif kind is dict:
            option = typer.Option("--model-arg", help=f"{f.metadata['help']} (KEY=VALUE, repeat)")
            py_type = list[str]
        elif kind in (list, tuple):
            option, py_type = typer.Option(flag, help=f"{help_text} (comma-separated)"), str
        else:
            option, py_type = typer.Option(flag, help=help_text), kind
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[py_type | None, option],
            )
        )
    return inspect.Signature(params)


def train(**kwargs: Any) -> None:
    """Train a model. Use a recipe (--recipe recipes/lenet-fashion-mnist.toml), flags, or both.

    Writes runs/NAME/: config.json, metrics.jsonl, TensorBoard events, last.pt and best.pt.
    """
    _train(kwargs.pop("recipe"), kwargs.pop("resume"), **kwargs)


train.__signature__ = _train_signature()
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}
app.command(context_settings={"max_content_width": 100})(train)


# --- eval ----------------------------------------------------------------------------------


@app.command("eval")
def eval_command(
    checkpoint: Annotated[Path, typer.Argument(help="a .pt checkpoint or a run folder")],
    dataset: Annotated[str | None, typer.Option(help="data set (default: the run's)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="a folder to look in first")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="evaluation batch size")] = 1024,
) -> None:
    """Evaluate a checkpoint: test loss, accuracy and accuracy per class."""
    from cnnlab.train.evaluation import evaluate_checkpoint

    result, class_names = evaluate_checkpoint(checkpoint, dataset, data_dir, device, batch_size)
    print(f"test loss      {result.loss:.4f}")
    print(
        f"test accuracy  {result.accuracy:.4f}  ({sum(result.per_class_correct)}"
        f"/{sum(result.per_class_total)})"
    )
    width = max(len(n) for n in class_names)
    for name, acc, total in zip(
        class_names, result.per_class_accuracy, result.per_class_total, strict=True
    ):
        print(f"  {name:<{width}}  {acc:.4f}  (n={total})")


# --- models, datasets ------------------------------------------------------------------------


@app.command("models")
def models_command(
    pattern: Annotated[str, typer.Argument(help="shell-style filter, like 'net*'")] = "*",
) -> None:
    """List the models: name, seed, default input, parameters, description."""
    from rich.table import Table

    from cnnlab.models import count_parameters, create_model, list_models, model_info

    table = Table("name", "seed", "input", "parameters", "description")
    for name in list_models(pattern):
        info = model_info(name)
        params = count_parameters(create_model(name))
        table.add_row(
            name, info.seed, "×".join(map(str, info.input_shape)), f"{params:,}", info.description
        )
    _console().print(table)


def _console():
    from rich.console import Console

    # a pipe or a log file gets full-width rows instead of names cut to 80 columns
    return Console(width=None if sys.stdout.isatty() else 160)


@app.command("datasets")
def datasets_command(
    data_dir: Annotated[str | None, typer.Option(help="a folder to look in first")] = None,
) -> None:
    """List the built-in data sets and where each is found (or how to get it)."""
    from rich.table import Table

    from cnnlab.data import BUILTIN_DATASETS, find_dataset, search_dirs

    table = Table("name", "classes", "found in")
    for name, spec in BUILTIN_DATASETS.items():
        where = find_dataset(name, data_dir)
        table.add_row(
            name,
            str(len(spec.class_names)),
            str(where) if where else "not on disk: downloaded on first use",
        )
    console = _console()
    console.print(table)
    console.print("searched, in order: " + ", ".join(str(p) for p in search_dirs(data_dir)))
    console.print("your own data: --dataset npz:FOLDER (train.npz, test.npz) or folder:FOLDER")
