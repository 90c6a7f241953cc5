"""tools/reproduce.py (`make reproduce`): which runs count as done, and the page it writes from
real run folders: the mean ± std of each experiment, time to accuracy, the ablation's
`cnnlab compare` table and plot, the copied reports and the commands."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import statistics
import sys
from pathlib import Path

import pytest

import cnnlab
from cnnlab.config.recipes import shipped_recipes
from cnnlab.training.evaluation import evaluate_checkpoint

TOOL = Path(__file__).resolve().parent.parent / "tools" / "reproduce.py"


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def repo(npz_data, tmp_path_factory) -> Path:
    """A stand-in repository whose runs/reproduce/ holds three seeds of the LeNet experiment,
    one of the CIFAR-2 Net and one of the Fashion-MNIST modern recipe (tiny data, 3 epochs)."""
    root = tmp_path_factory.mktemp("repo")
    names = [f"lenet-fashion-mnist-seed{k}" for k in range(3)]
    for name in [*names, "cifar2-net-seed0", "fashion-mnist-modern-seed0"]:
        cnnlab.train(
            model="mnist_cnn", dataset=npz_data, epochs=3, batch_size=64, optimizer="adam",
            lr=3e-3, seed=int(name[-1]), out_dir=str(root / "runs" / "reproduce"), name=name,
            progress="none", tensorboard=False, val_fraction=0.0,  # as the recipes train
        )  # fmt: skip
        # the suite's runs draw no report (conftest): a stand-in marks the run as complete
        (root / "runs" / "reproduce" / name / "report.html").write_text(f"<p>{name}</p>")
    return root


def metrics(repo: Path, name: str) -> list[dict]:
    path = repo / "runs" / "reproduce" / name / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def page(reproduce, repo) -> str:
    """RESULTS.md as write_results makes it in the stand-in repository, with the modern
    recipe's target at its second epoch's accuracy (reached there or at the first)."""
    patch = pytest.MonkeyPatch()
    patch.setattr(reproduce, "REPO", repo)
    target = metrics(repo, "fashion-mnist-modern-seed0")[1]["test_accuracy"]
    fashion = reproduce.MODERN[0]
    everything = [
        dataclasses.replace(exp, target=target) if exp is fashion else exp
        for exp in reproduce.EVERYTHING
    ]
    patch.setattr(reproduce, "EVERYTHING", everything)
    reproduce.write_results()
    patch.undo()
    return (repo / "docs" / "RESULTS.md").read_text()


def test_a_run_is_done_only_with_every_epoch_and_its_report(reproduce, repo, tmp_path):
    runs = repo / "runs" / "reproduce"
    assert reproduce.finished(runs / "lenet-fashion-mnist-seed0")
    assert not reproduce.finished(runs / "no-such-run")
    cut = tmp_path / "cut"
    cut.mkdir()
    for name in ("config.json", "report.html"):
        (cut / name).write_bytes((runs / "lenet-fashion-mnist-seed0" / name).read_bytes())
    rows = (runs / "lenet-fashion-mnist-seed0" / "metrics.jsonl").read_text().splitlines()
    (cut / "metrics.jsonl").write_text("\n".join(rows[:2]) + "\n")  # stopped after 2 of 3
    assert not reproduce.finished(cut)


def test_each_experiment_row_gives_mean_and_std_over_its_seeds(page, repo):
    finals = [metrics(repo, f"lenet-fashion-mnist-seed{k}")[-1] for k in range(3)]
    test = [row["test_accuracy"] for row in finals]
    train = [row["train_accuracy"] for row in finals]
    row = next(line for line in page.splitlines() if "lenet-fashion-mnist.toml" in line)
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[0] == "001" and cells[6:8] == ["3", "3"]  # seed document; runs, epochs
    assert cells[3] == f"{statistics.mean(train):.4f} ± {statistics.stdev(train):.4f}"
    assert cells[5] == f"{statistics.mean(test):.4f} ± {statistics.stdev(test):.4f}"
    assert cells[9] == "[report](results/lenet-fashion-mnist.html)"
    copied = repo / "docs" / "results" / "lenet-fashion-mnist.html"
    source = repo / "runs" / "reproduce" / "lenet-fashion-mnist-seed0" / "report.html"
    assert copied.read_bytes() == source.read_bytes()


def test_the_finished_models_train_accuracy_is_over_every_training_image(page, repo):
    # by hand: each seed's last.pt over the 384 training images, in eval mode
    accuracies = []
    for k in range(3):
        checkpoint = repo / "runs" / "reproduce" / f"lenet-fashion-mnist-seed{k}" / "last.pt"
        result, _ = evaluate_checkpoint(checkpoint, split="train", batch_size=50)
        assert sum(result.per_class_total) == 384
        accuracies.append(result.accuracy)
    row = next(line for line in page.splitlines() if "lenet-fashion-mnist.toml" in line)
    cell = row.split("|")[5].strip()
    assert cell == f"{statistics.mean(accuracies):.4f} ± {statistics.stdev(accuracies):.4f}"


def test_time_to_accuracy_is_the_process_time_of_the_first_epoch_at_the_target(page, repo):
    rows = metrics(repo, "fashion-mnist-modern-seed0")
    target = rows[1]["test_accuracy"]
    first = next(row for row in rows if row["test_accuracy"] >= target)
    line = next(line for line in page.splitlines() if "fashion-mnist-modern.toml" in line)
    cells = [cell.strip() for cell in line.split("|")[1:-1]]
    assert cells[1] == f"{target:.3f}"
    assert cells[2] == f"{first['process_seconds']:.0f} s"
    assert cells[3] == f"{rows[-1]['test_accuracy']:.4f}"


def test_the_ablation_is_cnnlab_compare_with_its_plot(page, repo):
    ablation = page.split("## Seed 000's ablation")[1].split("```")[1]
    assert "final test acc" in ablation and "cifar2-net" in ablation
    assert (repo / "docs" / "results" / "compare-curves.png").stat().st_size > 1000


def test_the_page_lists_every_command_and_the_experiments_not_run(page, reproduce):
    recipes = set(shipped_recipes())
    assert {exp.recipe for exp in reproduce.EVERYTHING} == recipes  # every recipe, once
    for exp in reproduce.EVERYTHING:
        assert f"--recipe {exp.recipe} --seed {exp.seeds[0]}" in page
        # a row links its recipe's file (shipped in the package) from docs/
        assert (TOOL.parent.parent / "docs" / reproduce.recipe_link(exp)).is_file()
    for name in ("lenet-fashion-mnist", "fashion-mnist-modern"):
        assert f"](../src/cnnlab/recipes/{name}.toml) |" in page
    missing = page.split("Not run yet: ")[1].split(".")[0].split(", ")
    assert "mnist-cnn" in missing and "cifar10-modern" in missing
    assert "lenet-fashion-mnist" not in missing and "cifar2-net" not in missing
    assert f"cnnlab {cnnlab.__version__}, torch " in page.split("\n\n")[1]  # the set-up
    assert not re.search(r"\{[a-z_]+\}", page)  # every placeholder filled
