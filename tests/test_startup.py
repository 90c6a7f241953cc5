"""A quick start-up: the commands that only list or explain things never import torch, and the
model table they show is the real one (computed once, then read from the cache); a training
command pauses the garbage collector until it trains, and imports torchvision only for
torchvision's models."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cnnlab.models import catalog, count_parameters, create_model, list_models
from helpers import write_learnable_npz

NO_TORCH = """
import sys
from cnnlab.cli import main
code = main({argv!r})
heavy = sorted(
    m for m in ("torch", "numpy", "torchvision", "matplotlib", "PIL") if m in sys.modules
)
print(code, ",".join(heavy) or "-")
"""


def run_cli_in_fresh_python(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH.format(argv=argv)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    code, heavy = done.stdout.strip().splitlines()[-1].split()
    return int(code), heavy


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    return {**os.environ, "CNNLAB_CACHE": str(tmp_path / "cache"), "COLUMNS": "120"}


HELP_AND_LISTING = [
    [],
    ["--help"],
    ["train", "--help"],
    ["lr-find", "--help"],
    ["eval", "--help"],
    ["summary", "--help"],
    ["features", "--help"],
    ["plot", "--help"],
    ["report", "--help"],
    ["compare", "--help"],
    ["predict", "--help"],
    ["export", "--help"],
    ["sweep", "--help"],
    ["datasets"],
    ["recipes"],
    ["recipes", "--help"],
    ["convcalc", "--size", "32", "--kernel", "3"],
    ["convcalc", "--size", "28", "--chain", "conv5p2,pool2,conv5,pool2"],
    ["params"],
]

EACH_WITHOUT_TORCH = """
import contextlib, json, os, sys
from cnnlab.cli import main

for argv in json.loads(sys.argv[1]):
    with open(os.devnull, "w") as out, contextlib.redirect_stdout(out):  # help, tables: unread
        code = main(argv)
    heavy = [m for m in ("torch", "numpy", "torchvision", "matplotlib", "PIL") if m in sys.modules]
    print("row", json.dumps([code, heavy]))
"""


def rows_of_one_fresh_python(script: str, argvs: list[list[str]], env, cwd=None) -> list:
    """The "row" each command of `argvs` printed in one fresh interpreter running `script`:
    one for a whole table, as each start costs time."""
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(argvs)],
        capture_output=True, text=True, timeout=120, env=env, cwd=cwd,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line[4:]) for line in done.stdout.splitlines() if line.startswith("row ")]
    assert len(rows) == len(argvs), done.stdout
    return rows


def test_help_and_listing_commands_never_import_torch(env):
    # a module once imported stays in sys.modules, so in one interpreter the first command
    # that imports one is the row that shows it
    rows = rows_of_one_fresh_python(EACH_WITHOUT_TORCH, HELP_AND_LISTING, env)
    for argv, row in zip(HELP_AND_LISTING, rows, strict=True):
        assert row == [0, []], argv


# Bad input that the command line alone shows: refused before torch is imported (a second or
# more; several on a busy machine). {tmp} is a folder of the test's own; each row: argv and a
# piece of the one line the user must see.
REFUSED_BEFORE_TORCH = [
    (["train", "--val-fraction", "2"], "--val-fraction must be in [0, 1), got 2.0"),
    (["train", "--test-fraction", "1"], "--test-fraction must be in [0, 1)"),
    (["train", "--target-accuracy", "1.5"], "--target-accuracy must be in (0, 1]"),
    (["train", "--early-stop-patience", "-1"], "--early-stop-patience must be >= 0"),
    (["train", "--epochs", "0"], "--epochs must be at least 1"),
    (["train", "--nesterov"], "--nesterov needs --momentum > 0"),
    (["train", "--name", "a/b"], "--name must be a plain folder name"),
    (["train", "--seeds", "0,1", "--lr", "0"], "--lr must be a positive number"),
    (["train", "--recipe", "nope"], "recipe 'nope' is neither a file nor a shipped recipe"),
    (["train", "--recipe", "{tmp}/zero.toml"], "zero.toml: epochs must be at least 1"),
    (["train", "--dataset", "cifra"], "did you mean cifar2 or cifar10?"),
    (["train", "--dataset", "npz:{tmp}/none"], "none/train.npz does not exist"),
    (["train", "--dataset", "folder:{tmp}/none"], "none does not exist"),
    (["train", "--data-dir", "{tmp}/none"], "--data-dir {tmp}/none does not exist"),
    (["train", "--model", "tv_resnet18", "--weights-file", "{tmp}/w.pth"], "is not a file"),
    (["train", "--model", "{tmp}/net.py:Net"], "model file {tmp}/net.py does not exist"),
    (["train", "--out-dir", "{tmp}", "--name", "taken"], "already exists"),
    (["train", "--seeds", "0,1", "--out-dir", "{tmp}", "--name", "s"], "s-seed1 already exists"),
    (["train", "--resume", "{tmp}/none"], "run folder {tmp}/none does not exist"),
    (["train", "--resume", "{tmp}/taken"], "has no last.pt"),
    (["train", "--resume", "{tmp}/run", "--epochs", "0"], "--epochs must be at least 1"),
    (["train", "--lr", "fast"], "--lr: expects a number or find, got 'fast'"),
    (["train", "--lr", "find", "--optimizer", "lbfgs"], "--lr-find cannot test lbfgs"),
    (["train", "--lr", "find", "--end-lr", "0"], "--end-lr must be above --start-lr (1e-06)"),
    (["lr-find", "--start-lr", "0"], "--start-lr must be a positive number, got 0.0"),
    (["lr-find", "--start-lr", "0.1", "--end-lr", "0.1"], "--end-lr must be above --start-lr"),
    (["lr-find", "--lr-find-steps", "0"], "--lr-find-steps must be at least 10, got 0"),
    (["lr-find", "--optimizer", "lbfgs"], "finder cannot test lbfgs (its line search"),
    (["lr-find", "--recipe", "{tmp}/zero.toml"], "zero.toml: epochs must be at least 1"),
    (["lr-find", "--dataset", "npz:{tmp}/none"], "none/train.npz does not exist"),
    (["lr-find", "--out", "{tmp}/zero.toml"], "zero.toml"),
    (["eval", "{tmp}/none.pt"], "checkpoint {tmp}/none.pt does not exist"),
    (["eval", "{tmp}/run", "--dataset", "mnsit"], "did you mean mnist?"),
    (["export", "{tmp}/none.pt"], "checkpoint {tmp}/none.pt does not exist"),
    (["features", "{tmp}/none"], "checkpoint {tmp}/none does not exist"),
    (["predict", "{tmp}/none.pt", "x.png"], "model file {tmp}/none.pt does not exist"),
    (["predict", "{tmp}/run", "x.png", "--top-k", "0"], "--top-k must be at least 1"),
    (["summary", "{tmp}/none.pt"], "{tmp}/none.pt does not exist"),
    (["summary", "lenet", "--input", "28x28"], "--input expects CxHxW"),
    (["sweep", "{tmp}/space.toml"], "[search] lr: low 3.0 is above high 0.1"),
    (["sweep", "{tmp}/none.toml"], "search space {tmp}/none.toml does not exist"),
    (["sweep", "{tmp}/space.toml", "--workers", "0"], "--workers must be at least 1"),
    (["plot", "{tmp}/none"], "run folder {tmp}/none does not exist"),
    (["report", "{tmp}/none"], "run folder {tmp}/none does not exist"),
]

EACH_BEFORE_TORCH = """
import contextlib, io, json, sys


class NoTorch:  # an import of torch is noted and refused, so a row that gets past its check
    tried = []  # fails at once instead of training

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            self.tried.append(name)
            raise ImportError(f"{name} imported before the error")


sys.meta_path.insert(0, NoTorch())
from cnnlab.cli import main

for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            code = main(argv)
    except ImportError as e:
        code = repr(e)
    print("row", json.dumps([code, err.getvalue(), bool(NoTorch.tried) or "torch" in sys.modules]))
"""


def test_what_the_command_line_shows_to_be_wrong_is_refused_before_torch(tmp_path, env):
    (tmp_path / "zero.toml").write_text("epochs = 0\n")
    (tmp_path / "space.toml").write_text("[search]\nlr = { low = 3.0, high = 0.1 }\n")
    for run in ("taken", "s-seed1"):  # a run that trained an epoch: kept, not replaced
        (tmp_path / run).mkdir()
        (tmp_path / run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"never read: the flags are refused first")
    table = [
        ([part.format(tmp=tmp_path) for part in argv], expected.format(tmp=tmp_path))
        for argv, expected in REFUSED_BEFORE_TORCH
    ]
    argvs = [argv for argv, _ in table]
    rows = rows_of_one_fresh_python(EACH_BEFORE_TORCH, argvs, env, cwd=tmp_path)
    for (argv, expected), (code, err, torch_imported) in zip(table, rows, strict=True):
        assert (code, torch_imported) == (2, False), (argv, err)
        assert err.startswith("error: ") and err.count("\n") == 1, (argv, err)
        assert expected in err, (argv, err)


def test_models_computes_its_table_once_then_answers_without_torch(env):
    first = run_cli_in_fresh_python(["models"], env)
    assert first == (0, "PIL,numpy,torch,torchvision")  # the first call builds every model
    assert run_cli_in_fresh_python(["models", "net*"], env) == (0, "-")


def test_the_cached_table_is_the_registry_with_real_parameter_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    rows = catalog.model_catalog()
    assert [row["name"] for row in rows] == list_models()
    for row in rows:
        if row["seed"] != "torchvision" or row["name"] == "tv_resnet18":
            # built for real, on the CPU: the meta-device count must be the same
            assert row["parameters"] == count_parameters(create_model(row["name"])), row
    assert {row["name"] for row in catalog.model_catalog("net_*")} == set(list_models("net_*"))
    [cached] = (tmp_path / "models").glob("catalog-*.json")
    assert json.loads(cached.read_text()) == rows


def test_the_table_is_computed_again_when_a_version_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    rows = catalog.model_catalog()
    monkeypatch.setattr(catalog, "_compute", lambda: pytest.fail("the cache was not used"))
    assert catalog.model_catalog() == rows
    monkeypatch.setattr(catalog, "installed_version", lambda package: "0.0-other")
    monkeypatch.setattr(catalog, "_compute", lambda: [{"name": "recomputed"}])
    assert catalog.model_catalog() == [{"name": "recomputed"}]


FRESH_COMMAND = """
import gc, sys
from cnnlab.process import pause_gc_for_startup
pause_gc_for_startup()  # as the `cnnlab` command does
assert not gc.isenabled()
from cnnlab.cli import main
from cnnlab.models import create_model, model_info
create_model("lenet")
model_info("lenet")
code = main(["train", "--model", "lenet", "--dataset", sys.argv[1], "--epochs", "1",
             "--out-dir", sys.argv[2], "--progress", "none", "--no-report", "--no-tensorboard"])
print(code, "torchvision" in sys.modules)
# training turned it back on, after freezing what start-up made (torch and all)
assert gc.isenabled() and gc.get_freeze_count() > 50_000, gc.get_freeze_count()
print(model_info("tv_resnet18").input_shape, "torchvision" in sys.modules)
"""


def test_the_command_pauses_the_collector_and_trains_seed_models_without_torchvision(tmp_path):
    """Two checks of one fresh `cnnlab train` (each fresh interpreter costs seconds): the
    collector is off until training starts, and seed models build and train without importing
    torchvision, which a torchvision model's facts then do."""
    data = write_learnable_npz(tmp_path / "data", train=64, test=32)
    env = {**os.environ, "CNNLAB_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", FRESH_COMMAND, f"npz:{data}", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == ["0 False", "(3, 224, 224) True"]


def test_a_python_program_keeps_its_own_collector_settings(npz_data, tmp_path):
    import gc

    import cnnlab

    # the test session froze its objects (conftest.py), and some may be freed while this
    # trains: the count can fall; a freeze by cnnlab would add every object made since
    frozen = gc.get_freeze_count()
    cnnlab.train(model="mnist_cnn", dataset=npz_data, epochs=1, batch_size=64,
                 out_dir=str(tmp_path), progress="none", tensorboard=False)  # fmt: skip
    assert gc.isenabled() and gc.get_freeze_count() <= frozen
