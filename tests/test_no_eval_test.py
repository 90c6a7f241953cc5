"""A run trained with --no-eval-test (a sweep's trial) is read honestly: no test columns, no
test numbers made up, and nothing that looks at it afterwards (report, plots, predictions)
measures its test split; compare ranks it apart from runs that measured one."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import cnnlab
from cnnlab.cli import main
from cnnlab.report import predictions as predictions_module
from cnnlab.report.compare import compare
from cnnlab.report.compare_page import VALIDATION_LOOK, plot_curves
from cnnlab.report.predictions import CACHE, load_predictions
from cnnlab.report.run_folder import read_run
from cnnlab.report.run_report import write_report
from cnnlab.training.checkpoint import load_checkpoint
from cnnlab.training.evaluation import load_trained_data
from cnnlab.training.outputs import EPOCH_METRICS, Progress, epoch_columns, header
from helpers import learnable_images, skip_png_encoding

TEST_KEYS = {"test_loss", "test_accuracy"}


@contextlib.contextmanager
def loader_splits():
    """The split of every loader made inside (training's, evaluation's, the report's)."""
    import cnnlab.data

    splits: list[str] = []
    real = cnnlab.data.make_loader

    def spy(data, split, **options):
        splits.append(split)
        return real(data, split, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cnnlab.data, "make_loader", spy)
        yield splits


@dataclass
class UntestedRun:
    path: Path
    printed: str  # what `cnnlab train --progress lines` printed
    page: str  # its report.html, the embedded PNGs cut out
    splits: list[str]  # the split of every loader training and the report made


@pytest.fixture(scope="module")
def untested(npz_data, tmp_path_factory) -> UntestedRun:
    """`cnnlab train --no-eval-test` for 2 epochs (progress lines), then its report, whose
    figures are made but not turned into PNGs (two thirds of a report's second or two): the
    page is read as text without its images, and test_report.py checks rendered ones."""
    root = tmp_path_factory.mktemp("untested")
    argv = [
        "train", "--model", "mnist_cnn", "--dataset", npz_data, "--epochs", "2",
        "--batch-size", "32", "--optimizer", "adam", "--lr", "3e-3", "--no-eval-test",
        "--no-tensorboard", "--no-report", "--progress", "lines", "--out-dir", str(root),
        "--name", "untested",
    ]  # fmt: skip
    printed = io.StringIO()
    with loader_splits() as splits, contextlib.redirect_stdout(printed):
        assert main(argv) == 0
        with pytest.MonkeyPatch.context() as patch:
            skip_png_encoding(patch)
            report = write_report(root / "untested")
    page = without_images(report.read_text())
    return UntestedRun(root / "untested", printed.getvalue(), page, splits)


def without_images(page: str) -> str:
    """The page's text with every embedded PNG cut out (base64 may spell any word)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "PNG", page)


def rewrite(run: Path, dest: Path, *, rows=None, **config) -> Path:
    """A copy of `run` (its cached predictions left out) with `config` changed and each
    metrics row passed through `rows(row)`."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns(CACHE, "plots", "report.html"))
    info = json.loads((dest / "config.json").read_text())
    info["config"].update(name=dest.name, **config)
    (dest / "config.json").write_text(json.dumps(info))
    if rows is not None:
        metrics = [json.loads(line) for line in (dest / "metrics.jsonl").read_text().splitlines()]
        text = "".join(json.dumps(rows(row)) + "\n" for row in metrics)
        (dest / "metrics.jsonl").write_text(text)
    return dest


# --- training's output ------------------------------------------------------------------------


def test_the_metrics_rows_hold_validation_numbers_and_no_test_numbers(untested):
    rows = read_run(untested.path).metrics
    assert len(rows) == 2
    for row in rows:
        assert not TEST_KEYS & set(row)
        assert 0 <= row["val_accuracy"] <= 1 and row["val_loss"] >= 0


def test_epoch_columns_leave_out_the_test_columns_only_when_asked():
    keys = [m.key for m in epoch_columns(True, False)]
    assert not TEST_KEYS & set(keys) and {"val_loss", "val_accuracy"} <= set(keys)
    assert epoch_columns(True) == EPOCH_METRICS  # a normal run's columns are all of them
    assert [m.key for m in epoch_columns(False)] == [
        m.key for m in EPOCH_METRICS if not m.key.startswith("val_")
    ]


def test_the_progress_lines_have_no_test_columns(untested):
    lines = untested.printed.splitlines()
    columns = epoch_columns(True, False)
    assert lines[1] == header(columns)
    assert "test" not in lines[1]
    epochs = [line.split() for line in lines[2:4]]
    assert [cells[0] for cells in epochs] == ["1", "2"]
    for cells in epochs:  # one number per column, no "-" standing for a missing test number
        assert len(cells) == len(columns) and "-" not in cells


def test_the_progress_bar_prints_the_same_columns(capsys):
    progress = Progress("bar", 1, has_val=True, has_test=False)
    progress.start_epoch(0, batches=2)
    progress.advance()
    progress.advance()
    row = {
        "epoch": 1,
        "train_loss": 0.5,
        "train_accuracy": 0.8,
        "val_loss": 0.4,
        "val_accuracy": 0.85,
        "examples_per_second": 900.0,
        "epoch_seconds": 1.5,
        "lr": 0.01,
    }
    progress.end_epoch(row)  # fmt: skip
    progress.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == header(epoch_columns(True, False))
    assert lines[-1].split() == ["1", "0.5000", "0.8000", "0.4000", "0.8500", "900", "1.5s",
                                 "1.00e-02"]  # fmt: skip


# --- the run read back ------------------------------------------------------------------------


def test_the_run_record_has_no_test_accuracy_and_best_pt_by_validation(untested):
    record = read_run(untested.path)
    assert record.evaluates_test is False and record.measured_test is False
    assert record.report_split == "val" and record.selection == "val"
    assert record.last_epoch_accuracy is None and record.best_accuracy is None
    best = max(record.metrics, key=lambda row: row["val_accuracy"])
    assert record.chosen_row == best
    assert record.best_val_accuracy == best["val_accuracy"]


def test_a_normal_run_is_read_as_measuring_its_test_split(tiny_run):
    record = read_run(tiny_run)
    assert record.evaluates_test and record.measured_test and record.report_split == "test"


# --- nothing after training measures the test split -------------------------------------------


def test_neither_training_nor_the_report_makes_a_test_loader(untested):
    assert "train" in untested.splits and "val" in untested.splits
    assert "test" not in untested.splits


def test_the_predictions_are_best_pts_on_the_validation_split_as_it_was_held_out(untested):
    predictions = load_predictions(untested.path)
    record = read_run(untested.path)
    assert predictions.split == "val" and predictions.split_name == "validation"
    state = load_checkpoint(untested.path / "best.pt")
    val = load_trained_data(state, untested.path / "best.pt").val
    assert np.array_equal(predictions.labels, val.labels.numpy())
    assert len(predictions.labels) == record.info["data"]["val"]
    assert predictions.accuracy == record.best_val_accuracy  # what chose best.pt, recounted
    for i in predictions.image_index.tolist():
        assert np.array_equal(predictions.image(i), val.images[i].numpy())


def test_the_cache_records_its_split(untested, tmp_path, monkeypatch):
    with np.load(untested.path / CACHE) as saved:
        assert str(saved["split"]) == "val"
    calls = []
    real = predictions_module.compute_predictions
    monkeypatch.setattr(
        predictions_module,
        "compute_predictions",
        lambda *args, **kwargs: calls.append(kwargs["split"]) or real(*args, **kwargs),
    )
    load_predictions(untested.path)
    assert calls == []  # the cached validation predictions
    # the same best.pt and cache, the run resumed with --eval-test: the test split's are made
    copy = tmp_path / "resumed"
    shutil.copytree(untested.path, copy)
    info = json.loads((copy / "config.json").read_text())
    info["config"]["eval_test"] = True
    (copy / "config.json").write_text(json.dumps(info))
    tested = load_predictions(copy)
    assert calls == ["test"] and tested.split == "test" and len(tested.labels) == 128


def test_the_report_says_validation_split_throughout(untested):
    page = untested.page
    record = read_run(untested.path)
    last_val = record.metrics[-1]["val_accuracy"]
    assert f"final validation accuracy {last_val:.4f} (test split not measured)" in page
    assert "final test accuracy" not in page
    assert "its test accuracy was not measured (trained with --no-eval-test)" in page
    assert "best.pt on the validation split: accuracy" in page
    assert "<th class=num>validation images</th>" in page
    assert "The first 30 validation images" in page
    assert "Validation accuracy of each class." in page
    assert "test (not measured: --no-eval-test)" in page
    for claim in ("test images", "on the test split", "test accuracy</th>", "test loss</th>"):
        assert claim not in page, claim


def test_the_plot_command_names_the_validation_split(untested, tmp_path, capsys, monkeypatch):
    skip_png_encoding(monkeypatch)
    assert main(["plot", str(untested.path), "--out", str(tmp_path / "plots")]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    predictions = load_predictions(untested.path)
    assert last == (
        f"accuracy: {predictions.accuracy:.4f} ({predictions.correct} of "
        f"{len(predictions.labels)} validation images, best.pt)"
    )


def test_a_run_on_data_given_in_python_is_looked_at_on_its_own_validation_split(tmp_path):
    """Data given in Python comes whole: the predictions hold out its validation split as the
    run did (the report at the end of cnnlab.train hands the data over so)."""
    from cnnlab.data.own import own_data

    train = learnable_images(96, 28, 28, channels=1, num_classes=4, seed=1)
    test = learnable_images(32, 28, 28, channels=1, num_classes=4, seed=2)
    with loader_splits() as splits:
        result = cnnlab.train(
            model="mnist_cnn", train_data=train, test_data=test, epochs=1, batch_size=32,
            eval_test=False, val_fraction=0.25, out_dir=str(tmp_path), name="given",
            progress="none", tensorboard=False, report=False,
        )  # fmt: skip
        predictions = load_predictions(result.run_dir, data=own_data(train, test))
    assert "test" not in splits
    record = read_run(result.run_dir)
    assert predictions.split == "val" and len(predictions.labels) == record.info["data"]["val"]
    assert len(predictions.labels) == 24  # a quarter of each class's 24 training images
    assert predictions.accuracy == record.best_val_accuracy


# --- compare ----------------------------------------------------------------------------------


def test_compare_shows_dashes_and_ranks_runs_without_test_after_the_others(
    untested, tiny_run, tmp_path
):
    # validation accuracy above tiny's test accuracy: still below it, not ranked against it
    sure = rewrite(untested.path, tmp_path / "sure", rows=lambda r: {**r, "val_accuracy": 0.99})
    c = compare([sure, tiny_run])
    assert [row.label for row in c.rows] == ["tiny", "sure"]
    assert [row.ranked_on for row in c.rows] == ["test", "val"]
    header = c.header
    cells = dict(zip(header, c.cells()[1], strict=True))
    assert cells["final test acc"] == cells["best.pt test acc"] == "-"
    assert cells["best.pt val acc"] == "0.9900"
    assert (
        "sure measured no test accuracy (trained with --no-eval-test): ranked after the rows "
        "that did, by best.pt validation accuracy"
    ) in c.warnings


def test_compare_ranks_by_validation_accuracy_when_no_run_measured_its_test_split(
    untested, tmp_path
):
    low = rewrite(untested.path, tmp_path / "low", rows=lambda r: {**r, "val_accuracy": 0.6},
                  lr=1e-3)  # fmt: skip
    high = rewrite(untested.path, tmp_path / "high", rows=lambda r: {**r, "val_accuracy": 0.8},
                   lr=1e-2)  # fmt: skip
    c = compare([low, high])
    assert [row.label for row in c.rows] == ["high", "low"]
    assert [str(row.best_val) for row in c.rows] == ["0.8000", "0.6000"]
    assert all(cells[2] == cells[3] == "-" for cells in c.cells())
    assert c.warnings[0] == (
        "no run measured its test split (trained with --no-eval-test): the rows are ranked by "
        "best.pt validation accuracy"
    )


def test_overlapping_validation_spreads_are_a_warning(untested, tmp_path):
    def seeds(name, values, lr):
        return [
            rewrite(untested.path, tmp_path / f"{name}-seed{k}",
                    rows=lambda r, v=value: {**r, "val_accuracy": v}, seed=k, lr=lr)
            for k, value in enumerate(values)
        ]  # fmt: skip

    c = compare(seeds("a", [0.80, 0.84], 1e-3) + seeds("b", [0.79, 0.83], 1e-2))
    assert [row.label for row in c.rows] == ["a", "b"]
    assert (
        "a overlaps b (best.pt validation accuracy, mean ± std): their order may be seed noise"
        in c.warnings
    )


def test_a_row_measured_on_the_test_split_in_part_says_so(tiny_run, tmp_path):
    """Runs differing only in --eval-test are seeds of one experiment: the test columns are the
    runs' that measured it, and a warning says how many did not."""
    untested = rewrite(
        tiny_run, tmp_path / "tiny-seed1", seed=1, eval_test=False,
        rows=lambda r: {k: v for k, v in r.items() if k not in TEST_KEYS},
    )  # fmt: skip
    tested = rewrite(tiny_run, tmp_path / "tiny-seed0")
    c = compare([tested, untested])
    (row,) = c.rows
    assert row.n == 2 and row.final.n == 1
    assert row.final.mean == read_run(tiny_run).metrics[-1]["test_accuracy"]
    assert (
        "tiny: 1 of its 2 runs measured no test accuracy (--no-eval-test); its test accuracies "
        "(final and best.pt) are those of the one run that did"
    ) in c.warnings


def test_the_compare_curves_draw_validation_accuracy_for_runs_without_test(
    untested, tiny_run, tmp_path
):
    c = compare([untested.path, tiny_run])
    fig = plot_curves(c)
    accuracy = fig.axes[0]
    assert accuracy.get_title() == "test accuracy (dashed: validation, runs without)"
    tested, untested_line = accuracy.get_lines()
    assert list(tested.get_ydata()) == read_run(tiny_run).column("test_accuracy")
    assert list(untested_line.get_ydata()) == read_run(untested.path).column("val_accuracy")
    assert untested_line.get_linestyle() == VALIDATION_LOOK["linestyle"]
    assert tested.get_linestyle() == "-"
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels == ["tiny (n=1)", "untested (n=1, validation)"]
    only = plot_curves(compare([untested.path]))
    assert only.axes[0].get_title() == "validation accuracy (no test split measured)"
