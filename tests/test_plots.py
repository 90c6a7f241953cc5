"""`cnnlab plot`: a run's pictures as PNG files, drawn from metrics.jsonl and the cached
predictions (report/plots.py), and the figures themselves (titles, colours, numbers)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
from pathlib import Path
from typing import NamedTuple

import matplotlib.colors
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

import cnnlab
from cnnlab.cli import main
from cnnlab.config import PlotConfig
from cnnlab.errors import ConfigError, RunFolderError
from cnnlab.figures import grid_layout
from cnnlab.report import plots
from cnnlab.report import predictions as predictions_module
from cnnlab.report.plots import (
    WRONG,
    confusion_figure,
    curves_figure,
    per_class_figure,
    prediction_grid,
    run_figures,
    top_losses_figure,
    write_plots,
)
from cnnlab.report.predictions import load_predictions
from helpers import checksums, write_learnable_npz

NAMES = [
    "curves.png",
    "predictions.png",
    "confusion.png",
    "per_class.png",
    "top_losses.png",
    "top_losses_gradcam.png",
    "filters.png",
    "maps-01-conv1.png",  # mnist_cnn: conv1 (10 filters), conv2 (20)
    "maps-02-conv2.png",
]


@pytest.fixture(scope="module")
def plotted(tiny_run, tmp_path_factory) -> tuple[Path, list[Path]]:
    """A copy of tiny_run, plotted once into RUN/plots."""
    run = tmp_path_factory.mktemp("plots") / "run"
    shutil.copytree(tiny_run, run)
    return run, write_plots(run, device="cpu")


def _pixels(fig) -> tuple[int, int]:
    width, height = fig.get_size_inches() * fig.dpi
    return round(width), round(height)


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()  # a whole, valid PNG
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        return image.size


def _red(text) -> bool:
    return matplotlib.colors.same_color(text.get_color(), WRONG)


def test_every_figure_is_written_as_a_png_of_its_figures_pixel_size(plotted, replotted):
    (run, paths), figures = plotted, replotted.figures
    assert [p.name for p in paths] == NAMES
    assert all(p.parent == run / "plots" for p in paths)
    assert sorted(p.name for p in (run / "plots").iterdir()) == sorted(NAMES)
    assert (run / "predictions.npz").is_file()  # the cache the next call reads
    assert [name for name, _, _ in figures] == NAMES
    assert all(caption.endswith(".") for _, caption, _ in figures)
    for path, (_, _, fig) in zip(paths, figures, strict=True):
        assert _png_size(path) == _pixels(fig), path.name
    sizes = {p.name: _png_size(p) for p in paths}
    assert sizes["curves.png"] == (1000, 300)
    assert sizes["predictions.png"] == (810, 770)  # 6 × 5 images and two title lines
    assert sizes["confusion.png"] == (1100, 520)
    assert sizes["per_class.png"] == (600, 400)
    assert sizes["top_losses.png"] == sizes["top_losses_gradcam.png"] == (800, 625)  # 4 × 4
    assert sizes["filters.png"] == sizes["maps-01-conv1.png"] == grid_layout(10).pixels
    assert sizes["maps-02-conv2.png"] == grid_layout(20).pixels
    assert sum(p.stat().st_size for p in paths) < 400_000  # small enough for the HTML report


def test_the_grid_titles_each_image_with_its_prediction_and_mistakes_in_red(plotted):
    predictions = load_predictions(plotted[0])
    fig = prediction_grid(predictions)
    assert len(fig.axes) == 30
    names = predictions.class_names
    red = set()
    for i, ax in enumerate(fig.axes):
        title, predicted, true = ax.title, predictions.predicted[i], predictions.labels[i]
        if predicted == true:
            assert title.get_text() == names[predicted] and not _red(title)
        else:
            assert title.get_text() == f"{names[predicted]}\n(true: {names[true]})"
            assert _red(title)
            red.add(i)
        shown = ax.images[0]
        assert np.array_equal(shown.get_array(), predictions.image(i)[0])  # grey: channel 0
        assert shown.get_cmap().name == "gray"
    assert red == {0, 8, 16, 24}  # tiny_run relabels every 8th test image
    assert any("26 right, 4 wrong" in text.get_text() for text in fig.texts)


def test_the_confusion_figure_shows_the_counts_and_the_row_rates(plotted):
    predictions = load_predictions(plotted[0])
    counts = predictions.confusion()
    fig = confusion_figure(predictions)
    left, right = fig.axes[:2]  # then their colour bars
    k = predictions.num_classes
    numbers = np.array([int(t.get_text()) for t in left.texts]).reshape(k, k)
    assert np.array_equal(numbers, counts)
    assert np.array_equal(left.images[0].get_array(), counts)
    rates = np.array([float(t.get_text()) for t in right.texts]).reshape(k, k)
    np.testing.assert_allclose(rates, counts / counts.sum(axis=1, keepdims=True), atol=0.005)
    assert [t.get_text() for t in left.get_xticklabels()] == predictions.class_names
    assert [t.get_text() for t in right.get_yticklabels()] == predictions.class_names


def test_per_class_bars_are_the_per_class_accuracy(plotted):
    predictions = load_predictions(plotted[0])
    fig = per_class_figure(predictions)
    bars = [patch.get_width() for patch in fig.axes[0].patches]
    np.testing.assert_allclose(bars, predictions.per_class_accuracy())


def test_top_losses_are_the_most_confident_mistakes_first(plotted):
    predictions = load_predictions(plotted[0])
    fig = top_losses_figure(predictions)
    top = predictions.top_losses()
    assert len(top) == len(fig.axes) == 16  # tiny_run's 16 mistakes
    names = predictions.class_names
    shown = []
    for i, ax in zip(top, fig.axes, strict=True):
        pair, confidence = ax.title.get_text().split("\n")
        assert pair == f"{names[predictions.predicted[i]]} / {names[predictions.labels[i]]}"
        assert _red(ax.title)
        shown.append(float(confidence))
    assert shown == sorted(shown, reverse=True)
    np.testing.assert_allclose(shown, predictions.confidence[top], atol=5e-4)
    # a model without mistakes gets one line, not an empty grid
    perfect = dataclasses.replace(predictions, predicted=predictions.labels.copy())
    for fig in (top_losses_figure(perfect), plots.top_losses_gradcam_figure(perfect, None, {})):
        assert not fig.axes and "no mistakes" in fig.texts[0].get_text()
        plots.render_png(fig)


def test_the_top_losses_gradcam_lays_each_mistakes_heatmap_over_it(plotted, replotted):
    from cnnlab.report.explanations import explain

    run = plotted[0]
    predictions = load_predictions(run)
    fig = dict((name, fig) for name, _, fig in replotted.figures)["top_losses_gradcam.png"]
    top = predictions.top_losses()
    found = explain(run, count=16)  # the same mistakes, as `cnnlab explain` shows them
    assert len(fig.axes) == len(top) == 16
    assert "(layer conv2)" in fig.texts[0].get_text()
    for k, (i, ax) in enumerate(zip(top, fig.axes, strict=True)):
        assert (
            ax.title.get_text()
            .split("\n")[0]
            .endswith(predictions.class_names[predictions.labels[i]])
        )
        shown = np.asarray(ax.images[0].get_array())
        assert np.array_equal(shown, found.overlay(k))  # the heatmap of the predicted class


def test_curves_skip_epochs_without_test_metrics_and_log_a_wide_lr_range():
    metrics = [
        {"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.3, "lr": 0.1},
        {"epoch": 2, "train_loss": 1.0, "train_accuracy": 0.6, "lr": 0.01},
        {"epoch": 3, "train_loss": 0.5, "train_accuracy": 0.8, "lr": 0.001, "test_loss": 0.7,
         "test_accuracy": 0.75},
    ]  # fmt: skip
    loss, accuracy, lr = curves_figure(metrics).axes
    train, test = loss.lines
    assert list(train.get_xdata()) == [1, 2, 3] and list(test.get_xdata()) == [3]
    assert test.get_marker() == "o"  # a single point still shows
    assert list(accuracy.lines[1].get_ydata()) == [0.75]
    assert "best test 0.7500, epoch 3" in accuracy.get_title()
    assert lr.get_yscale() == "log"
    # one epoch, never evaluated, at a constant rate: no panel for a flat line, one tick "1"
    fig = curves_figure(metrics[:1])
    loss, accuracy = fig.axes
    assert len(loss.lines) == 1
    assert fig.get_supxlabel() == "learning rate: 0.1 throughout"
    for ax in (loss, accuracy):
        low, high = ax.get_xlim()
        assert [tick for tick in ax.get_xticks() if low <= tick <= high] == [1]


def test_conv_figures_number_their_layers_as_their_captions_do(replotted):
    figures = replotted.figures[-4:]  # _conv_figures: top_losses_gradcam, filters and the maps
    assert [name for name, _, _ in figures] == NAMES[-4:]
    titles = {name: fig.texts[-2].get_text() for name, _, fig in figures}  # title, subtitle
    captions = {name: caption for name, caption, _ in figures}
    # mnist_cnn's convs are the modules conv1 and conv2: conv layers 1 and 2 of 2
    assert titles["filters.png"].startswith("conv layer 1 of 2 (module conv1): 10 filters")
    assert "conv layer 1 of 2" in captions["filters.png"]
    for n, name in enumerate(("conv1", "conv2"), 1):
        file = f"maps-0{n}-{name}.png"
        assert titles[file].startswith(f"conv layer {n} of 2 (module {name}): output ")
        assert captions[file].endswith(f"out of conv layer {n} of 2.")


def _never(*args, **kwargs):
    raise AssertionError("the predictions were computed")


class Replotted(NamedTuple):
    """What `cnnlab plot` of the plotted run did: its exit code, the cache as it was before,
    the folder it wrote, the lines it printed and the figures it drew (run_figures' list)."""

    code: int
    cache: bytes
    out: Path
    lines: list[str]
    figures: list[tuple[str, str, Figure]]


@pytest.fixture(scope="module")
def replotted(plotted) -> Replotted:
    """`cnnlab plot` of the plotted run into RUN/../cli, once (drawing the figures takes a
    second or more), with the predictions never computed again. The figures it drew from the
    cache are kept: the tests that look into them read these rather than draw their own."""
    run = plotted[0]
    cache = (run / "predictions.npz").read_bytes()
    out, printed, drawn = run.parent / "cli", io.StringIO(), []

    def kept_figures(*args, **kwargs):
        drawn.extend(run_figures(*args, **kwargs))
        return drawn

    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(predictions_module, "compute_predictions", _never)
        patch.setattr(plots, "run_figures", kept_figures)
        code = main(["plot", str(run), "--out", str(out), "--device", "cpu"])
    return Replotted(code, cache, out, printed.getvalue().splitlines(), drawn)


def test_cached_predictions_are_reused(plotted, replotted):
    (run, first), (code, cache, out, _, _) = plotted, replotted
    assert code == 0 and sorted(p.name for p in out.iterdir()) == sorted(NAMES)
    assert (run / "predictions.npz").read_bytes() == cache
    for old in first:  # the same figures, pixel for pixel
        new = out / old.name
        assert np.array_equal(np.asarray(Image.open(old)), np.asarray(Image.open(new))), new


def _damage_metrics(run: Path) -> None:
    rows = (run / "metrics.jsonl").read_bytes()
    (run / "metrics.jsonl").write_bytes(rows[: len(rows) - 20])


@pytest.mark.parametrize(
    "damage, expected",
    [
        (_damage_metrics, "is not a complete JSON row"),
        (lambda run: (run / "config.json").unlink(), "no config.json"),
    ],
    ids=["truncated metrics", "no config"],
)
def test_a_damaged_run_folder_fails_before_anything_is_computed_or_written(
    tiny_run, tmp_path, monkeypatch, damage, expected
):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("predictions.npz", "plots"))
    damage(run)
    before = checksums(tmp_path)
    monkeypatch.setattr(predictions_module, "compute_predictions", _never)
    with pytest.raises(RunFolderError, match=expected):
        write_plots(run)
    assert checksums(tmp_path) == before
    assert not (run / "plots").exists()


def test_an_output_path_that_is_a_file_is_refused_before_predicting(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("predictions.npz", "plots"))
    (tmp_path / "a_file").write_text("a file")
    before = checksums(tmp_path)
    with pytest.raises(ConfigError, match="is a file"):
        write_plots(run, tmp_path / "a_file")
    assert checksums(tmp_path) == before


def test_the_command_prints_the_files_the_worst_confusions_and_the_accuracy(plotted, replotted):
    run, (code, _, out, lines, _) = plotted[0], replotted
    assert code == 0
    assert lines[: len(NAMES) + 1] == [
        f"wrote {len(NAMES)} files to {out}/",
        *(f"  {name}" for name in NAMES),
    ]
    predictions = load_predictions(run)
    (true, predicted, count), *_ = predictions.most_confused()
    names = predictions.class_names
    assert lines[-2].startswith(f"most confused: {names[true]} → {names[predicted]} {count}×")
    assert lines[-1] == f"accuracy: {predictions.accuracy:.4f} (112 of 128 test images, best.pt)"


def test_colour_images_are_drawn_in_colour(tmp_path):
    data = write_learnable_npz(tmp_path / "rgb", channels=3, classes=3, size=16, train=48, test=12)
    result = cnnlab.train(
        model="mnist_cnn", dataset=f"npz:{data}", epochs=1, batch_size=16, name="rgb",
        out_dir=str(tmp_path / "runs"), progress="none", tensorboard=False, report=False,
    )  # fmt: skip
    paths = write_plots(PlotConfig(run=str(result.run_dir), device="cpu"))
    assert [p.name for p in paths] == NAMES
    predictions = load_predictions(result.run_dir)
    fig = prediction_grid(predictions)
    assert len(fig.axes) == 12  # the whole test split, less than 5 × 6
    pixels = predictions.image(3)
    assert np.array_equal(fig.axes[3].images[0].get_array(), pixels.transpose(1, 2, 0))
    assert _png_size(paths[1]) == (810, 770)  # the grid keeps its size
