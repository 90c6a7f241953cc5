"""`cnnlab lr-find` (cli/lr_find.py) without a range test: the config the flags and a recipe
make and hand to cnnlab.api.lr_find, the two lines printed from its result, and an --out that
is a file refused in one line before the test runs. The range test itself, and a real run of
the command, are test_lr_find.py's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from cnnlab import api
from cnnlab.cli import main
from cnnlab.config import LrFindConfig

SUMMARY = "range test: 12 steps, lr 1e-05 to 2, 0.1 s\nsuggested lr: 0.0316 (the middle of it)"


@dataclass
class Found:
    """What the command reads of an LrFindResult: its summary and the plot it wrote."""

    plot: Path

    def summary(self) -> str:
        return SUMMARY


@pytest.fixture
def given(monkeypatch: pytest.MonkeyPatch) -> list:
    """cnnlab.api.lr_find replaced: each config it is given is kept, and its result says it
    wrote lr_find.png into the config's --out."""
    configs: list = []

    def lr_find(cfg):
        configs.append(cfg)
        return Found(Path(cfg.out) / "lr_find.png")

    monkeypatch.setattr(api, "lr_find", lr_find)
    return configs


def test_the_flags_reach_the_range_test_and_its_summary_and_curve_are_printed(
    given, tmp_path, capsys
):
    out = tmp_path / "found"
    argv = ["lr-find", "--model", "mnist_cnn", "--dataset", "mnist", "--optimizer", "sgd",
            "--batch-size", "7", "--start-lr", "1e-5", "--end-lr", "2", "--lr-find-steps", "12",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    [cfg] = given
    assert type(cfg) is LrFindConfig
    assert (cfg.model, cfg.dataset, cfg.optimizer, cfg.batch_size) == ("mnist_cnn", "mnist",
                                                                        "sgd", 7)  # fmt: skip
    assert (cfg.start_lr, cfg.end_lr, cfg.lr_find_steps, cfg.out) == (1e-5, 2.0, 12, str(out))
    printed = capsys.readouterr().out
    assert printed == (
        f"{SUMMARY}\nplot: {out / 'lr_find.png'} (the curve: {out / 'lr_find.json'})\n"
    )


def test_without_out_the_plot_goes_to_the_lr_find_folder(given, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["lr-find", "--dataset", "mnist"]) == 0
    [cfg] = given
    assert cfg.out == "lr-find" and cfg.batch_size == LrFindConfig.batch_size
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "plot: lr-find/lr_find.png (the curve: lr-find/lr_find.json)"


def test_a_recipe_s_values_reach_the_test_and_a_flag_overrides_them(given, tmp_path):
    recipe = tmp_path / "mine.toml"
    recipe.write_text('model = "mnist_cnn"\ndataset = "mnist"\nbatch_size = 64\nend_lr = 3.0\n')
    argv = ["lr-find", "--recipe", str(recipe), "--batch-size", "7", "--out", str(tmp_path)]
    assert main(argv) == 0
    [cfg] = given
    assert (cfg.model, cfg.batch_size, cfg.end_lr) == ("mnist_cnn", 7, 3.0)


def test_an_out_that_is_a_file_is_refused_before_the_test_runs(given, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    assert main(["lr-find", "--dataset", "mnist", "--out", str(taken)]) == 2
    assert capsys.readouterr().err == f"error: --out {taken} is a file; give --out a folder\n"
    assert given == []


def test_a_bad_value_is_refused_by_its_flag_before_the_test_runs(given, capsys):
    assert main(["lr-find", "--dataset", "mnist", "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --batch-size must be ") and err.count("\n") == 1
    assert given == []
