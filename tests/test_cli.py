"""The cnnlab command: the happy paths, and what each subcommand prints."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import tomllib

import pytest

from cnnlab.cli import main
from cnnlab.config import (
    DatasetsConfig,
    EvalConfig,
    ModelsConfig,
    RecipesConfig,
    TrainConfig,
    load_recipe,
)
from cnnlab.config.recipes import shipped_recipes
from cnnlab.data import BUILTIN_DATASETS
from cnnlab.models import list_models
from helpers import write_learnable_npz

RECIPES = shipped_recipes()  # name: the file in src/cnnlab/recipes/


def test_recipes_cover_every_seed_experiment():
    names = set(RECIPES)
    assert names == {
        "lenet-fashion-mnist",
        "mnist-cnn",
        "mnist-cnn-deep",
        "cifar10-cnn",
        "cifar2-net",
        "cifar2-net-width",
        "cifar2-net-wd",
        "cifar2-net-dropout",
        "cifar2-net-batchnorm",
        "cifar2-net-res",
        "cifar2-net-res-deep",
        # beyond the seeds: one modern recipe per data set (docs/RESULTS.md)
        "fashion-mnist-modern",
        "mnist-modern",
        "cifar2-modern",
        "cifar10-modern",
        # time to accuracy with airbench's and tuomaso's methods (issue 31)
        "mnist-fast",
        "fashion-mnist-fast",
        "mnist-fast-993",
        "cifar2-fast",
        "cifar10-fast",
        "cifar10-airbench",
    }


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_parses_and_names_a_real_model_and_data_set(name):
    recipe = RECIPES[name]
    values = load_recipe(name)
    cfg = TrainConfig.from_dict(values).validate()
    assert cfg.model in list_models()
    assert cfg.dataset in BUILTIN_DATASETS
    first = r"# Seeds? 00\d"
    if name.endswith("-modern"):
        first = r"# Not in the seeds: a modern recipe"
    elif "-fast" in name or name.endswith("-airbench"):
        first = r"# Not in the seeds: "
    assert re.match(first, recipe.read_text()), "the comment names the seed"
    tomllib.loads(recipe.read_text())


@pytest.mark.parametrize("extra", [[], ["--no-normalize", "--tta"]])
def test_train_from_flags_then_eval(npz_data, tmp_path, capsys, extra):
    argv = [
        "train",
        *extra,
        "--model",
        "mnist_cnn",
        "--dataset",
        npz_data,
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--optimizer",
        "adam",
        "--lr",
        "0.003",
        "--out-dir",
        str(tmp_path),
        "--name",
        "cli",
        "--progress",
        "lines",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    epoch_lines = [line for line in out if line.split() and line.split()[0].isdigit()]
    assert len(epoch_lines) == 2  # exactly one line per epoch when not on a terminal
    assert any(str(tmp_path / "cli") in line for line in out)
    rows = [json.loads(x) for x in (tmp_path / "cli" / "metrics.jsonl").read_text().splitlines()]
    # best.pt: the first epoch of the best validation accuracy, whose test accuracy is its own
    best = max(rows, key=lambda row: (row["val_accuracy"], -row["epoch"]))
    assert main(["eval", str(tmp_path / "cli" / "best.pt")]) == 0
    out = capsys.readouterr().out
    assert f"test accuracy  {best['test_accuracy']:.4f}" in out
    assert "class3" in out  # per-class accuracy
    assert main(["eval", str(tmp_path / "cli" / "best.pt"), "--split", "val"]) == 0
    out = capsys.readouterr().out
    right = round(best["val_accuracy"] * 40)
    assert f"val accuracy  {best['val_accuracy']:.4f}  ({right}/40)" in out
    # the run's data named another way (a trailing slash) is still split as the run split it
    again = ["eval", str(tmp_path / "cli" / "best.pt"), "--split", "val", "--dataset"]
    assert main([*again, npz_data + "/"]) == 0
    assert f"val accuracy  {best['val_accuracy']:.4f}  ({right}/40)" in capsys.readouterr().out
    # --split train: the finished model over the 344 images it trained on (seed 000's measure;
    # 40 of the 384 were held out for validation)
    assert main(["eval", str(tmp_path / "cli" / "last.pt"), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "train accuracy" in out and "/344)" in out and "test accuracy" not in out
    # a run is evaluated as it was trained, with or without --tta (each image and its mirror),
    # unless told otherwise
    last = str(tmp_path / "cli" / "last.pt")
    assert main(["eval", last]) == 0
    as_trained = capsys.readouterr().out
    assert f"test accuracy  {rows[-1]['test_accuracy']:.4f}" in as_trained
    assert main(["eval", last, "--no-tta" if "--tta" in extra else "--tta"]) == 0
    other = capsys.readouterr().out
    loss_line = [line for line in as_trained.splitlines() if "loss" in line]
    assert loss_line and loss_line[0] not in other


def test_recipe_with_flag_overrides(npz_data, tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'model = "lenet"\ndataset = "{npz_data}"\nepochs = 5\nlr = 0.5\n')
    argv = [
        "train",
        "--recipe",
        str(recipe),
        "--epochs",
        "1",
        "--out-dir",
        str(tmp_path),
        "--progress",
        "none",
        "--no-tensorboard",
        "--batch-size",
        "64",
    ]
    assert main(argv) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert run.name.startswith("r-")  # named after the recipe, with a timestamp
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["epochs"] == 1 and config["lr"] == 0.5 and config["tensorboard"] is False


def test_model_arg_flags_reach_the_builder(tmp_path, capsys):
    data = write_learnable_npz(tmp_path / "rgb", size=32, channels=3, train=64, test=32)
    argv = [
        "train",
        "--model",
        "net_width",
        "--model-arg",
        "n_chans1=8",
        "--dataset",
        f"npz:{data}",
        "--epochs",
        "1",
        "--out-dir",
        str(tmp_path),
        "--name",
        "w",
        "--progress",
        "none",
    ]
    assert main(argv) == 0
    info = json.loads((tmp_path / "w" / "config.json").read_text())
    assert info["model_args"]["n_chans1"] == 8 and info["model_args"]["num_classes"] == 4


def test_models_lists_every_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out
    assert "61,706" in out  # LeNet's parameter count


def test_datasets_lists_the_built_ins(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in BUILTIN_DATASETS:
        assert name in out


COMMAND_CONFIGS = [
    (["train"], TrainConfig),
    (["eval"], EvalConfig),
    (["models"], ModelsConfig),
    (["recipes"], RecipesConfig),
    (["datasets"], DatasetsConfig),
]


@pytest.mark.parametrize(
    "command, config", COMMAND_CONFIGS, ids=lambda c: getattr(c, "command", "")
)
def test_help_of_every_command_lists_every_field_of_its_config(command, config, capsys):
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cnnlab {command[0]}")
    for f in dataclasses.fields(config):
        if f.metadata["argument"]:
            assert f.name in out.split("options:")[0], f.name  # a positional argument
        elif f.name == "model_args":
            assert "--model-arg KEY=VALUE" in out
        else:
            flag = "--" + f.name.replace("_", "-")
            assert re.search(rf"{flag}\b", out), flag
        first_words = f.metadata["help"].split()[:2]
        assert " ".join(first_words) in " ".join(out.split()), f.name
        for choice in f.metadata["choices"]:
            assert choice in out


def test_plain_cnnlab_prints_the_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("train", "eval", "models", "recipes", "datasets"):
        assert re.search(rf"^\s+{command}\s+\w", out, re.M), command


def test_bool_flags_have_a_no_form_and_reach_the_config(tmp_path, npz_data, monkeypatch):
    seen = {}
    import cnnlab.api
    import cnnlab.training

    monkeypatch.setattr(cnnlab.training, "fit", lambda cfg: seen.setdefault("cfg", cfg))
    monkeypatch.setattr(cnnlab.api, "finish", lambda result: result)
    argv = ["train", "--dataset", npz_data, "--no-tensorboard", "--normalize", "--betas", "0.8,0.9"]
    assert main(argv) == 0
    cfg = seen["cfg"]
    assert cfg.tensorboard is False and cfg.normalize is True and cfg.betas == (0.8, 0.9)
    assert cfg.augment is TrainConfig.augment  # not given: the default, not False


def test_python_dash_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "--lr", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --lr must be a positive number, got 0.0"
