"""The learning-rate finder (training/lr_find.py): the range test, its rule on curves made to
mislead, what it leaves as it was, and `cnnlab lr-find` / `cnnlab train --lr find`."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.cli import main
from cnnlab.training import lr_find
from cnnlab.training.lr_find import kept_as_it_was, range_test, rate_schedule, smooth, suggest
from helpers import skip_png_encoding

GUESS = math.log(10)  # the loss of a guess that ignores the image, ten balanced classes
LRS = rate_schedule(1e-6, 10.0, 200)


def falling_curve(centre: float, seed: int = 0) -> np.ndarray:
    """Losses over LRS: flat at a guess's loss, falling (a logistic in log10 lr, centred at
    `centre`) to 0.3 over about a decade, then exploding; noisy as a batch's loss is."""
    x = np.log10(LRS)
    fall = 0.3 + (GUESS - 0.3) / (1 + np.exp(4 * (x - centre)))
    explode = 8 * np.clip(x - (centre + 1.2), 0, None) ** 2
    return fall + explode + np.random.default_rng(seed).normal(0, 0.02, len(LRS))


def index_of(lr: float) -> int:
    return int(np.argmin(np.abs(np.log(LRS) - np.log(lr))))


# --- the rule ---------------------------------------------------------------------------------


def test_a_noisy_blip_on_the_plateau_does_not_choose_the_rate():
    losses = falling_curve(centre=-2)  # the real fall: around lr 1e-2
    blip = index_of(1e-5)
    losses[blip] += 1.5  # one bad batch: the steepest drop of the curve comes right after it
    assert abs(int(np.argmin(np.gradient(losses))) - blip) <= 1  # the naive rule's pick
    chosen = suggest(LRS, smooth(losses), GUESS)
    assert 3e-3 < chosen.lr < 3e-2, chosen
    first, end = chosen.fall
    assert 1e-3 < LRS[first] < LRS[end] < 1e-1
    assert chosen.how.startswith("the middle of the fall (log scale)")


def test_an_early_dip_that_comes_back_up_is_not_the_fall():
    losses = falling_curve(centre=-1)  # the real fall: around lr 0.1
    dip = slice(index_of(1e-5), index_of(1e-5) + 8)
    losses[dip] -= 0.8  # a stretch of easy batches, lower than the fall's first tenth
    chosen = suggest(LRS, smooth(losses), GUESS)
    assert 3e-2 < chosen.lr < 0.3, chosen
    assert chosen.fall[0] > dip.stop


def test_a_curve_that_never_gets_below_a_guess_gives_no_rate():
    # an untrained model's first steps bring its loss down to the class shares' only
    losses = (
        2.55
        - 0.25 * np.clip(np.log10(LRS) + 3, 0, 1)
        + np.random.default_rng(1).normal(0, 0.02, len(LRS))
    )
    chosen = suggest(LRS, smooth(losses), GUESS)
    assert chosen.lr is None and chosen.how.startswith("no learning seen")


def test_after_a_plateau_the_rate_is_where_the_fall_began():
    smoothed = smooth(falling_curve(centre=0))
    usual = suggest(LRS, smoothed, GUESS)
    plateau = suggest(LRS, smoothed, GUESS, after_plateau=True)
    assert plateau.lr == pytest.approx(LRS[plateau.fall[0]], rel=1e-2)
    assert 0.15 < plateau.lr < usual.lr < 2


def test_find_is_a_rate_everywhere_a_rate_is_given(tmp_path):
    recipe = tmp_path / "find.toml"
    recipe.write_text('model = "lenet"\nlr = "find"\n')
    from_recipe = cnnlab.TrainConfig.from_dict(cnnlab.load_recipe(recipe))
    for cfg in (from_recipe, cnnlab.TrainConfig(lr="find"), cnnlab.LrFindConfig(lr="find")):
        assert cfg.validate().lr_find and cfg.lr == 3e-3  # adam's, until the finder sets it
    with pytest.raises(cnnlab.ConfigError, match="lr_find cannot test lbfgs"):
        cnnlab.TrainConfig(lr="find", optimizer="lbfgs").validate()


# --- the test itself --------------------------------------------------------------------------


class Batches:
    """A loader as the range test takes one: set_epoch, then the epoch's batches."""

    def __init__(self, batches: int = 3):
        self.batches, self.epoch = batches, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch

    def __iter__(self):
        draws = torch.Generator().manual_seed(self.epoch)
        for _ in range(self.batches):
            yield torch.randn(16, 6, generator=draws), torch.randint(0, 3, (16,), generator=draws)


def test_the_rate_rises_exponentially_and_each_group_keeps_its_share():
    rates = rate_schedule(1e-4, 1e-1, 7)
    assert rates[0] == pytest.approx(1e-4) and rates[-1] == pytest.approx(1e-1)
    assert np.allclose(np.diff(np.log10(rates)), 0.5)
    model = nn.Linear(6, 3)
    optimizer = torch.optim.SGD(
        [{"params": [model.weight]}, {"params": [model.bias], "lr": 0.1 * 0.5}], lr=0.1
    )
    test = range_test(model, optimizer, nn.CrossEntropyLoss(), Batches(), rates, 3)
    assert test.lrs == rates and len(test.losses) == 7 and not test.diverged
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.1, 0.05])
    assert sum(test.class_counts) == 7 * 16  # the loader's epochs, one after another


def test_a_diverging_loss_stops_the_test_early():
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    rates = rate_schedule(1e-3, 1e9, 100)
    test = range_test(model, torch.optim.SGD(model.parameters()), nn.CrossEntropyLoss(),
                      Batches(), rates, 3)  # fmt: skip
    assert test.diverged and 10 < len(test.losses) < 100
    assert all(math.isfinite(loss) for loss in test.losses)


def test_the_model_optimizer_and_generators_are_put_back_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for images, labels in Batches():  # momentum buffers and gradients to keep
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    model.eval()
    before = (
        {k: v.clone() for k, v in model.state_dict().items()},
        {k: v["momentum_buffer"].clone() for k, v in optimizer.state_dict()["state"].items()},
        [p.grad.clone() for p in model.parameters()],
        torch.get_rng_state(),
    )
    with kept_as_it_was(model, optimizer, torch.device("cpu")):
        range_test(model, optimizer, nn.CrossEntropyLoss(), Batches(), LRS[100:140], 3)
        torch.rand(5)
    assert not model.training and optimizer.param_groups[0]["lr"] == 0.1
    weights, momentum, grads, rng = before
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    state = optimizer.state_dict()["state"]
    assert all(torch.equal(v["momentum_buffer"], momentum[k]) for k, v in state.items())
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    assert torch.equal(torch.get_rng_state(), rng)


# --- the API and the commands -----------------------------------------------------------------


class Small(nn.Module):
    """BatchNorm's buffers, and layers cnnlab swaps for faster CPU forms (fast_ops.py)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 5), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten()
        )
        self.head = nn.Linear(4 * 12 * 12, 4)

    def forward(self, x):
        return self.head(self.features(x))


def test_lr_find_on_a_model_object_leaves_it_and_the_generators_as_they_were(
    npz_data, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(3)
    model = Small().eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    classes = [type(m) for m in model.modules()]
    rngs = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    result = cnnlab.lr_find(
        model=model, dataset=npz_data, optimizer="sgd", momentum=0.9, init="xavier",
        batch_size=32, lr_find_steps=40, name="would-be-run", progress="none",
    )  # fmt: skip
    assert result.suggestion is not None and len(result.lrs) == len(result.losses) <= 40
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert [type(m) for m in model.modules()] == classes and not model.training
    assert torch.equal(torch.get_rng_state(), rngs[0])
    assert (np.random.get_state()[1] == rngs[1]).all() and random.getstate() == rngs[2]
    assert list(tmp_path.iterdir()) == []  # no run folder, no plot unless asked


def test_lr_find_command_prints_the_rate_and_writes_the_plot(npz_data, tmp_path, monkeypatch,
                                                             capsys):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    argv = ["lr-find", "--dataset", npz_data, "--model", "mnist_cnn", "--optimizer", "sgd",
            "--batch-size", "32", "--lr-find-steps", "40", "--out", "found"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "found" / "lr_find.json").read_text())
    assert f"suggested lr: {record['suggestion']:.3g} (the middle of the fall" in out
    assert len(record["lrs"]) == len(record["losses"]) == len(record["smoothed"]) == 40
    assert (tmp_path / "found" / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["found"]  # no runs/ folder


def test_a_first_test_that_learned_nothing_is_followed_by_a_longer_one(npz_data, monkeypatch):
    real, seen = lr_find.learned, []

    def first_learned_nothing(test):
        seen.append(test)
        return len(seen) > 1 and real(test)

    monkeypatch.setattr(lr_find, "learned", first_learned_nothing)
    result = cnnlab.lr_find(dataset=npz_data, model="mnist_cnn", optimizer="sgd", batch_size=32,
                            lr_find_steps=10, end_lr=1.0, progress="none")  # fmt: skip
    first, second = result.tries
    assert (first["start_lr"], first["steps"]) == (1e-6, 10)
    assert second["start_lr"] == pytest.approx(1e-3) and second["steps"] == 40  # upper half, 4×
    assert result.lrs[0] == pytest.approx(1e-3) and len(result.lrs) <= 40
    assert result.rule.startswith("where the fall began, as the first test learned nothing")
    assert result.suggestion == pytest.approx(result.lrs[result.fall[0]], rel=1e-2)
    assert "(the first test, 10 from 1e-06, learned nothing)" in result.summary()


def train_argv(npz_data: str, tmp_path, *more: str, epochs: int = 1, steps: int = 40) -> list[str]:
    return ["train", "--dataset", npz_data, "--model", "mnist_cnn", "--optimizer", "sgd",
            "--batch-size", "32", "--lr-find-steps", str(steps), "--epochs", str(epochs),
            "--val-fraction", "0", "--out-dir", str(tmp_path), "--progress", "none",
            "--no-report", "--no-tensorboard", *more]  # fmt: skip


def test_train_lr_find_trains_at_the_suggestion_and_a_continued_run_keeps_it(
    npz_data, tmp_path, monkeypatch
):
    skip_png_encoding(monkeypatch)  # the command's test above checks a rendered plot
    assert main(train_argv(npz_data, tmp_path, "--lr", "find", "--name", "found")) == 0
    run = tmp_path / "found"
    config = json.loads((run / "config.json").read_text())
    found = config["lr_find"]
    assert config["config"]["lr_find"] and config["config"]["lr"] == found["suggestion"]
    assert found["steps"] == 40 and found["rule"].startswith("the middle of the fall")
    assert (run / "lr_find.png").is_file() and (run / "lr_find.json").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["lr"] == found["suggestion"]

    # the very run `--lr <suggestion>` trains: the test left model, data order and RNGs alone
    given = train_argv(npz_data, tmp_path, "--lr", str(found["suggestion"]), "--name", "given")
    assert main(given) == 0
    again = (tmp_path / "given" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["train_loss"] for line in again] == [rows[0]["train_loss"]]

    # continued (the same command with more epochs, then --resume): never tested again
    def refuse(*args, **kwargs):
        raise AssertionError("a continued run ran the range test")

    monkeypatch.setattr(lr_find, "find_lr", refuse)
    assert main(train_argv(npz_data, tmp_path, "--lr", "find", "--name", "found", epochs=2)) == 0
    assert main(["train", "--resume", str(run), "--epochs", "3", "--progress", "none",
                 "--lr-find", "--no-report"]) == 0  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert config["lr_find"] == found and config["config"]["lr"] == found["suggestion"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["lr"] for row in rows] == [found["suggestion"]] * 3


def test_no_rate_found_is_one_line_and_leaves_no_run(npz_data, tmp_path, capsys):
    # the fewest steps: a test that learns nothing is run again 4 times as long
    argv = train_argv(npz_data, tmp_path, "--lr", "find", "--end-lr", "1e-5", "--name", "x",
                      steps=10)  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --lr find: no learning seen: ") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
