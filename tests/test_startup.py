"""A quick start-up: the commands that only list or explain things never import torch, and the
model table they show is the real one (computed once, then read from the cache)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnlab.models import catalog, count_parameters, create_model, list_models

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
    import os

    return {**os.environ, "CNNLAB_CACHE": str(tmp_path / "cache"), "COLUMNS": "120"}


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["train", "--help"],
        ["eval", "--help"],
        ["summary", "--help"],
        ["features", "--help"],
        ["plot", "--help"],
        ["report", "--help"],
        ["compare", "--help"],
        ["predict", "--help"],
        ["export", "--help"],
        ["datasets"],
        ["recipes"],
        ["recipes", "--help"],
        ["convcalc", "--size", "32", "--kernel", "3"],
        ["convcalc", "--size", "28", "--chain", "conv5p2,pool2,conv5,pool2"],
        ["params"],
    ],
)
def test_help_and_listing_commands_never_import_torch(argv, env):
    assert run_cli_in_fresh_python(argv, env) == (0, "-")


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


GC_DURING_STARTUP = """
import gc, sys
import cnnlab
from cnnlab.process import pause_gc_for_startup
pause_gc_for_startup()  # as the `cnnlab` command does
assert not gc.isenabled()
cnnlab.train(model="mnist_cnn", dataset=sys.argv[1], epochs=1, batch_size=64,
             out_dir=sys.argv[2], progress="none", tensorboard=False)
# training turned it back on, after freezing what start-up made (torch and all)
assert gc.isenabled() and gc.get_freeze_count() > 50_000, gc.get_freeze_count()
print("ok")
"""


def test_the_command_pauses_the_collector_until_training_starts(npz_data, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", GC_DURING_STARTUP, npz_data, str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout.strip() == "ok", done.stderr


def test_a_python_program_keeps_its_own_collector_settings(npz_data, tmp_path):
    import gc

    import cnnlab

    frozen = gc.get_freeze_count()
    cnnlab.train(model="mnist_cnn", dataset=npz_data, epochs=1, batch_size=64,
                 out_dir=str(tmp_path), progress="none", tensorboard=False)  # fmt: skip
    assert gc.isenabled() and gc.get_freeze_count() == frozen
