"""A run's pictures: training curves, predictions, confusion matrix, per-class accuracy, the most
confident mistakes, and the first conv layer's filters and feature maps.

    record = read_run("runs/lenet")
    predictions = load_predictions(record)
    curves_figure(record.metrics)        # loss, accuracy and learning rate per epoch
    prediction_grid(predictions)         # the first 30 test images, mistakes titled in red
    run_figures(record, predictions)     # all of them: (file name, caption, Figure), report order
    write_plots("runs/lenet")            # all of them as PNGs in runs/lenet/plots: `cnnlab plot`

Figures are made without pyplot, as figures.py makes them (see there why), and each has
a fixed size in pixels (its *_SIZE in inches × DPI), so a report can lay them out before drawing
them. Everything but the filters and feature maps comes from metrics.jsonl and the cached
predictions (report/predictions.py): no figure needs the data set again.

The predictions are on the test split, or on the validation split for a run trained with
--no-eval-test (whose test split nothing may measure): every title and caption names the split
they hold (`Predictions.split_name`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cnnlab.config import PlotConfig
from cnnlab.curves import DPI, FONT, TRAIN, curves_figure
from cnnlab.errors import ConfigError
from cnnlab.figures import render_png, shorten, write_pngs
from cnnlab.files import check_output_folder
from cnnlab.inspect.features import conv_layers, feature_figures
from cnnlab.report.predictions import GRID, TOP_LOSSES, Predictions, load_predictions
from cnnlab.report.run_folder import RunRecord, read_run

CONFUSION_SIZE = (11.0, 5.2)  # two square matrices side by side, with their colour bars
PER_CLASS_SIZE = (6.0, 4.0)
GRID_TILE = (1.35, 1.45)  # inches per image of the prediction grid: the image and two lines
TOP_TILE = (2.0, 1.45)  # wider: "pred / true" is one line
TOP_COLUMNS = 4
IMAGE = 1.0  # inches: the side of the box each image is drawn in
HEADER = 0.45  # inches above an image grid for its two title lines
NAME = 16  # characters of a class name in an image's title (longer ones get an ellipsis)
MAX_CELL_NUMBERS = 15  # classes up to which the confusion matrix has numbers in its cells
MAX_TICK_LABELS = 30  # class names on an axis; with more classes every k-th one is named
RIGHT, WRONG = "black", "tab:red"
# {split}: the predictions' split in words ("test", "validation"); {Split}: capitalised
CAPTIONS = {
    "curves": "Loss, accuracy and learning rate per epoch.",
    "predictions": "The first 30 {split} images and what the model predicts; mistakes in red.",
    "confusion": "Confusion matrix: rows are the true class, columns the predicted one.",
    "per_class": "{Split} accuracy of each class.",
    "top_losses": "The mistakes the model was most sure of.",
    "gradcam": "The same mistakes with their Grad-CAM heatmaps (`cnnlab explain`): where the "
    "model looked for the class it wrongly chose; red is where it found the most for it.",
    "filters": "The filters of conv layer 1 of {}, the first the forward pass calls.",
    "maps": "{Split} image 0 (top left of the predictions) out of conv layer {} of {}.",
}


# --- the figures ------------------------------------------------------------------------------


def prediction_grid(predictions: Predictions) -> Figure:
    """The first 5 × 6 images of the split, each titled with its predicted class; a mistake's
    title also gives the true class, in red (seed 003's grid, titled as its `show_images`
    titles)."""
    names, tiles = predictions.class_names, []
    for i in predictions.grid_indices():
        predicted, true = int(predictions.predicted[i]), int(predictions.labels[i])
        title = shorten(names[predicted], NAME)
        if predicted != true:
            title += f"\n(true: {shorten(names[true], NAME)})"
        tiles.append((predictions.image(i), title, RIGHT if predicted == true else WRONG))
    wrong = sum(colour == WRONG for _, _, colour in tiles)
    return _image_grid(
        tiles,
        GRID,
        GRID_TILE,
        f"predictions on the first {len(tiles)} {predictions.split_name} images: "
        f"{len(tiles) - wrong} right, "
        f"{wrong} wrong",
        "titled with the predicted class; in red, a mistake, with the true class",
    )


def confusion_figure(predictions: Predictions) -> Figure:
    """Counts (rows: true class, columns: predicted) and the same rows normalised to sum to 1,
    side by side: counts show where most images go, rates how each class fares."""
    counts = predictions.confusion()
    with np.errstate(invalid="ignore", divide="ignore"):  # a class with no image: NaN
        rates = counts / counts.sum(axis=1, keepdims=True)
    fig = _figure(CONFUSION_SIZE, layout="constrained")
    left, right = fig.subplots(1, 2)
    names = predictions.class_names
    _matrix(left, counts, names, "counts", max(int(counts.max()), 1), lambda v: f"{int(v)}")
    _matrix(right, rates, names, "each row divided by its total", 1.0, lambda v: f"{v:.2f}")
    fig.suptitle(
        f"confusion matrix of {len(predictions.labels)} {predictions.split_name} images "
        f"(accuracy {predictions.accuracy:.4f})",
        fontsize=FONT + 1,
    )
    return fig


def per_class_figure(predictions: Predictions) -> Figure:
    """Accuracy of each class (on the predictions' split) as a horizontal bar, the overall
    accuracy as a dashed line."""
    accuracy = predictions.per_class_accuracy()
    counts = predictions.confusion()
    totals, right = counts.sum(axis=1), np.diag(counts)
    fig = _figure(PER_CLASS_SIZE, layout="constrained")
    ax = fig.subplots()
    rows = np.arange(predictions.num_classes)
    ax.barh(rows, np.nan_to_num(accuracy), color=TRAIN, height=0.7)
    ax.axvline(predictions.accuracy, color="0.3", linestyle="--", linewidth=1)
    _class_ticks(ax.set_yticks, rows, predictions.class_names)
    ax.invert_yaxis()  # class 0 on top, as in the confusion matrix
    ax.set_xlim(0, 1.15)  # room for the numbers right of a bar at 1.0
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.tick_params(labelsize=FONT)
    ax.set_xlabel(f"{predictions.split_name} accuracy", fontsize=FONT)
    ax.set_title(
        f"accuracy per class (dashed: all classes, {predictions.accuracy:.4f})", fontsize=FONT + 1
    )
    if predictions.num_classes <= MAX_CELL_NUMBERS:
        for row in rows:
            value, total = accuracy[row], totals[row]
            none = f"no {predictions.split_name} image"
            text = none if total == 0 else f"{value:.2f} ({right[row]}/{total})"
            x = 0.01 if total == 0 else value + 0.01
            # on white, so the dashed line does not run through the digits
            box = {"facecolor": "white", "edgecolor": "none", "pad": 1}
            ax.text(x, row, text, va="center", fontsize=FONT - 1, bbox=box)
    return fig


def top_losses_figure(predictions: Predictions, n: int = TOP_LOSSES) -> Figure:
    """The `n` mistakes made with the highest confidence, most confident first, each titled
    "predicted / true" and the probability of the prediction (fastai's plot_top_losses). Only
    images whose pixels predictions.npz keeps are shown (the first TOP_LOSSES)."""
    wrong = int((predictions.predicted != predictions.labels).sum())
    indices = _shown_mistakes(predictions, n)
    tiles = [(predictions.image(i), _mistake_title(predictions, i), WRONG) for i in indices]
    return _mistakes_grid(
        predictions,
        tiles,
        n,
        f"the {len(tiles)} most confident of {wrong} mistakes",
        "predicted / true class, then the probability given to the prediction",
    )


def _shown_mistakes(predictions: Predictions, n: int) -> list[int]:
    """The top `n` losses whose pixels the predictions keep, most confident first."""
    kept = set(predictions.image_index.tolist())
    return [i for i in predictions.top_losses(n) if i in kept]


def _mistakes_grid(
    predictions: Predictions, tiles: list, n: int, title: str, subtitle: str
) -> Figure:
    """The tiles of `n` mistakes in rows of TOP_COLUMNS; a perfect model gets a line saying so
    instead of an empty grid."""
    if not tiles:
        fig = _figure((TOP_COLUMNS * TOP_TILE[0], 0.6))
        total, split = len(predictions.labels), predictions.split_name
        text = f"no mistakes: all {total} {split} images are predicted right"
        fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=FONT + 1)
        return fig
    return _image_grid(tiles, (math.ceil(n / TOP_COLUMNS), TOP_COLUMNS), TOP_TILE, title, subtitle)


def _mistake_title(predictions: Predictions, i: int) -> str:
    """ "predicted / true" and the probability of the prediction, of image i of the split."""
    names = predictions.class_names
    predicted, true = names[predictions.predicted[i]], names[predictions.labels[i]]
    return f"{shorten(predicted, NAME)} / {shorten(true, NAME)}\n{predictions.confidence[i]:.3f}"


def top_losses_gradcam_figure(
    predictions: Predictions, model: Any, state: dict[str, Any], n: int = TOP_LOSSES
) -> Figure:
    """top_losses_figure's mistakes, each with its Grad-CAM heatmap (of the class predicted,
    from the last conv layer) laid over it, titled as there."""
    import torch

    from cnnlab.data.images import normalize
    from cnnlab.inspect.gradcam import explain_batch, overlay

    indices = _shown_mistakes(predictions, n)
    if not indices:
        return _mistakes_grid(predictions, [], n, "", "")
    pixels = np.stack([predictions.image(i) for i in indices])
    found = explain_batch(model, normalize(torch.from_numpy(pixels), state["mean"], state["std"]))
    tiles = [
        (overlay(pixels[k], found.heatmap[k].numpy()).transpose(2, 0, 1),
         _mistake_title(predictions, i), WRONG)
        for k, i in enumerate(indices)
    ]  # fmt: skip
    return _mistakes_grid(
        predictions,
        tiles,
        n,
        f"Grad-CAM of the {len(tiles)} most confident mistakes (layer {found.layer})",
        "heatmap of the predicted class over each image; predicted / true, then its probability",
    )


def run_figures(
    record: RunRecord, predictions: Predictions, *, device: str = "auto"
) -> list[tuple[str, str, Figure]]:
    """Every figure of a run as (file name, caption, Figure), in the order a report shows them:
    curves, predictions, confusion, per_class, top_losses, top_losses_gradcam, filters, then
    maps-NN-<layer>, one per conv layer. Only the last three kinds load the model (onto
    `device`)."""
    figures = [
        ("curves.png", caption("curves", predictions), curves_figure(record.metrics)),
        ("predictions.png", caption("predictions", predictions), prediction_grid(predictions)),
        ("confusion.png", caption("confusion", predictions), confusion_figure(predictions)),
        ("per_class.png", caption("per_class", predictions), per_class_figure(predictions)),
        ("top_losses.png", caption("top_losses", predictions), top_losses_figure(predictions)),
    ]
    return figures + _conv_figures(record, predictions, device)


def _conv_figures(
    record: RunRecord, predictions: Predictions, device: str
) -> list[tuple[str, str, Figure]]:
    """top_losses_gradcam.png, filters.png and the maps of image 0 of the predictions' split,
    from the checkpoint the predictions came from; the pixels are in the predictions already,
    so the data set is not loaded again."""
    from cnnlab.training.checkpoint import load_checkpoint, rebuild_model
    from cnnlab.training.device import resolve_device

    if not len(predictions.image_index):  # an empty split: no image to look at
        return []
    target = resolve_device(device)
    state = load_checkpoint(record.path / predictions.checkpoint, map_location=target)
    model = rebuild_model(state, target, record.path)
    if not conv_layers(model):  # a model without convs has nothing to show here
        return []
    label = predictions.class_names[int(predictions.labels[0])]
    split = predictions.split_name
    source = shorten(str(record.info.get("dataset") or f"the {split} split"))
    title = f"input: {split} image 0 of {source}"
    # input.png is left out: the image is the first of the prediction grid already
    _, (name, fig), *maps = feature_figures(model, state, predictions.image(0), title, label)
    gradcam = top_losses_gradcam_figure(predictions, model, state)
    figures = [
        ("top_losses_gradcam.png", caption("gradcam", predictions), gradcam),
        (name, caption("filters", predictions, len(maps)), fig),
    ]
    for n, (name, fig) in enumerate(maps, 1):
        figures.append((name, caption("maps", predictions, n, len(maps)), fig))
    return figures


def caption(name: str, predictions: Predictions, *numbers: int) -> str:
    """CAPTIONS[name] naming the predictions' split (and `numbers` in its {} fields)."""
    split = predictions.split_name
    return CAPTIONS[name].format(*numbers, split=split, Split=split.capitalize())


# --- writing ----------------------------------------------------------------------------------


def write_plots(
    run: str | Path | PlotConfig,
    out: str | Path | None = None,
    *,
    device: str = "auto",
    data_dir: str | Path | None = None,
) -> list[Path]:
    """Write every figure of `run_figures` as a PNG into `out` (default RUN/plots); return the
    paths. `run` is a run folder or a whole PlotConfig. The run folder is read first and the
    PNGs are all drawn before the first is written, each atomically, so a damaged run or a
    failure leaves the files as they were (but for RUN/predictions.npz, the cache)."""
    cfg = (
        run
        if isinstance(run, PlotConfig)
        else PlotConfig.from_call("write_plots", run=run, out=out, device=device, data_dir=data_dir)
    )
    return plot_run(cfg)[0]


def plot_run(cfg: PlotConfig) -> tuple[list[Path], Predictions]:
    """`write_plots`, also giving back the predictions (for `cnnlab plot`'s summary lines)."""
    from cnnlab.process import startup_finished

    cfg.validate()
    if not cfg.run:
        raise ConfigError("give a run folder")
    record = read_run(cfg.run)  # first: a damaged folder must fail before anything is computed
    folder = cfg.out or record.path / "plots"
    folder = check_output_folder(folder, "output folder", "give --out a folder")
    predictions = load_predictions(record, device=cfg.device, data_dir=cfg.data_dir)
    startup_finished()
    figures = run_figures(record, predictions, device=cfg.device)
    pngs = [(name, render_png(fig)) for name, _, fig in figures]
    return write_pngs(folder, pngs), predictions


# --- drawing helpers --------------------------------------------------------------------------


def _figure(size: tuple[float, float], **options: Any) -> Figure:
    return Figure(figsize=size, dpi=DPI, **options)


def _image_grid(
    tiles: list[tuple[np.ndarray, str, str]],
    shape: tuple[int, int],
    tile: tuple[float, float],
    title: str,
    subtitle: str,
) -> Figure:
    """(pixels, title, colour) tiles row by row in `shape` (rows, columns) cells of `tile`
    inches, under two title lines. One axes per image, so each keeps its title and colour."""
    rows, columns = shape
    width, height = columns * tile[0], rows * tile[1] + HEADER
    fig = _figure((width, height))
    for k, (pixels, text, colour) in enumerate(tiles):
        row, column = divmod(k, columns)
        left = column * tile[0] + (tile[0] - IMAGE) / 2
        bottom = height - HEADER - (row + 1) * tile[1] + 0.05
        ax = fig.add_axes((left / width, bottom / height, IMAGE / width, IMAGE / height))
        _show(ax, pixels)
        ax.set_title(text, color=colour, fontsize=FONT, pad=3)
    fig.text(0.5, 1 - 0.06 / height, title, ha="center", va="top", fontsize=FONT + 1)
    fig.text(0.5, 1 - 0.25 / height, subtitle, ha="center", va="top", fontsize=FONT, color="0.3")
    return fig


def _show(ax: Any, pixels: np.ndarray) -> None:
    """A uint8 (C, H, W) image: one channel in grey, three as RGB (more: the first three)."""
    if pixels.shape[0] >= 3:
        ax.imshow(np.transpose(pixels[:3], (1, 2, 0)))
    else:
        ax.imshow(pixels[0], cmap="gray", vmin=0, vmax=255)
    ax.set_axis_off()


def _matrix(
    ax: Any, values: np.ndarray, names: list[str], title: str, top: float, text: Callable
) -> None:
    """`values` (K, K) as a colour matrix from 0 to `top`, class names on both axes, and each
    cell's number (`text(value)`) while K is small enough for it to fit."""
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
    ax.figure.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=FONT - 1)
    ticks = np.arange(len(names))
    _class_ticks(ax.set_xticks, ticks, names, rotation=45, ha="right", rotation_mode="anchor")
    _class_ticks(ax.set_yticks, ticks, names)
    ax.tick_params(labelsize=FONT - (len(names) > 10))
    ax.set_xlabel("predicted class", fontsize=FONT)
    ax.set_ylabel("true class", fontsize=FONT)
    ax.set_title(title, fontsize=FONT + 1)
    if len(names) > MAX_CELL_NUMBERS:
        return
    size = FONT - 1 if len(names) <= 10 else FONT - 2
    for (row, column), value in np.ndenumerate(values):
        if np.isfinite(value):  # a class with no test image has an empty row
            colour = "white" if value > top / 2 else "black"  # readable on dark blue too
            ax.text(column, row, text(value), ha="center", va="center", fontsize=size, color=colour)


def _class_ticks(set_ticks: Any, ticks: np.ndarray, names: list[str], **options: Any) -> None:
    """Class names at `ticks`, every k-th one when there are more than MAX_TICK_LABELS."""
    step = math.ceil(len(names) / MAX_TICK_LABELS)
    shown = ticks[::step]
    set_ticks(shown, [shorten(names[i], NAME) for i in shown], **options)
