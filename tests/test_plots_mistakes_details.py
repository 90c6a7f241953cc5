"""The most confident mistakes and how a run's figures are named and written (report/plots.py's
top_losses_figure, top_losses_gradcam_figure, run_figures, caption, write_plots and plot_run)
in detail: which mistakes are shown and in which order (most confident first, only those whose
pixels are kept, at most n), each tile's image, red title and probability, the grid's size and
title lines, the line a perfect model gets instead; each Grad-CAM tile is its own image's
heatmap; the captions naming the split; the file names in report order; the arguments
write_plots and plot_run hand on, where the files go, and the refusals word for word.

Hand-made validation predictions (nine images of four classes, four mistakes, one of them
without kept pixels), a ten-weight conv model, a hand-made run folder, and stand-ins for the
steps that would load or train a model or encode a PNG, so each test takes milliseconds
(test_plots.py draws tiny_run's real figures). These tests exist because docs/TESTING.md's
mutation run left these paths untested (survivors of `mutmut run "cnnlab.report.plots*"`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import same_color
from matplotlib.figure import Figure
from torch import nn

from cnnlab.config import PlotConfig
from cnnlab.errors import ConfigError
from cnnlab.inspect.gradcam import explain_batch, overlay
from cnnlab.report import plots
from cnnlab.report.plots import (
    FONT,
    WRONG,
    caption,
    plot_run,
    run_figures,
    top_losses_figure,
    top_losses_gradcam_figure,
    write_plots,
)
from cnnlab.report.predictions import Predictions
from cnnlab.report.run_folder import RunRecord
from helpers import hand_predictions

LONG = "bee_of_the_meadow_garden"  # 24 characters: over the 16 of a title
SHORT = "bee_of_…_garden"  # shorten(LONG, 16)
NAMES = ["ant", LONG, "cat", "dog"]
# image:      0    1    2     3    4     5    6    7    8
LABELS = [0, 1, 2, 3, 0, 1, 2, 3, 0]
PREDICTED = [0, 0, 1, 3, 2, 2, 2, 3, 0]  # wrong: 1, 2, 4, 5 (4 mistakes, 5 right)
CONFIDENCE = [0.9, 0.7, 0.95, 0.8, 0.85, 0.6, 0.5, 0.9, 0.9]
# the mistakes, most confident first: 2 (0.95), 4 (0.85, pixels not kept), 1 (0.7), 5 (0.6)
KEPT = [0, 1, 2, 3, 5, 6, 7, 8]
HEIGHT, WIDTH = 4, 6  # not square: a transposed image would show


def made(predicted=PREDICTED, split="val", kept=KEPT) -> Predictions:
    """Predictions made by hand; every image's pixels kept but image 4's (by default)."""
    pixels = np.random.default_rng(0).integers(0, 256, (len(kept), 1, HEIGHT, WIDTH), np.uint8)
    return hand_predictions(LABELS, predicted, NAMES, confidence=CONFIDENCE, images=pixels,
                            image_index=kept, split=split)  # fmt: skip


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.texts]


# --- the most confident mistakes ----------------------------------------------------------------


def test_top_losses_show_the_n_most_confident_kept_mistakes_first():
    p = made()
    fig = top_losses_figure(p, n=3)  # 2, 4, 1 of the four; 4's pixels are not kept
    assert [ax.get_title() for ax in fig.axes] == [
        f"{SHORT} / cat\n0.950",  # predicted / true (names shortened), then the probability
        f"ant / {SHORT}\n0.700",
    ]
    assert all(same_color(ax.title.get_color(), WRONG) for ax in fig.axes)
    # each tile is its own image (grey: the one channel as it is)
    assert np.array_equal(fig.axes[0].images[0].get_array(), p.image(2)[0])
    assert np.array_equal(fig.axes[1].images[0].get_array(), p.image(1)[0])


def test_top_losses_title_counts_shown_and_all_mistakes_and_says_how_to_read_them():
    fig = top_losses_figure(made(), n=3)
    assert _texts(fig) == [
        "the 2 most confident of 4 mistakes",
        "predicted / true class, then the probability given to the prediction",
    ]


def test_top_losses_grid_has_room_for_n_images_in_rows_of_four():
    # 5 mistakes asked for: two rows of 2.0 × 1.45 inches, four columns, a 0.45-inch header
    fig = top_losses_figure(made(), n=5)
    assert len(fig.axes) == 3  # only three mistakes have pixels
    assert tuple(fig.get_size_inches()) == pytest.approx((8.0, 2 * 1.45 + 0.45))
    assert tuple(top_losses_figure(made(), n=4).get_size_inches()) == pytest.approx((8.0, 1.9))


def test_a_model_without_mistakes_gets_one_centred_line_instead_of_a_grid():
    fig = top_losses_figure(made(predicted=LABELS))
    assert fig.axes == []
    (line,) = fig.texts
    assert line.get_text() == "no mistakes: all 9 validation images are predicted right"
    assert line.get_position() == (0.5, 0.5)
    assert (line.get_ha(), line.get_va()) == ("center", "center")
    assert line.get_fontsize() == FONT + 1
    assert tuple(fig.get_size_inches()) == pytest.approx((8.0, 0.6))  # four tiles wide


# --- the same mistakes with their Grad-CAM ------------------------------------------------------


class Tiny(nn.Module):
    """One conv layer (named `conv`), a ReLU, the mean of each map, then the four classes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.head = nn.Linear(2, 4)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


STATE = {"mean": [0.5], "std": [0.25]}


def test_each_gradcam_tile_is_its_own_mistakes_heatmap_over_it():
    p, model = made(), Tiny()
    fig = top_losses_gradcam_figure(p, model, STATE, n=3)
    assert [ax.get_title() for ax in fig.axes] == [f"{SHORT} / cat\n0.950", f"ant / {SHORT}\n0.700"]
    assert all(same_color(ax.title.get_color(), WRONG) for ax in fig.axes)
    for ax, i in zip(fig.axes, [2, 1], strict=True):
        # each image alone, normalised as the run was trained: (pixel / 255 - 0.5) / 0.25
        x = (torch.from_numpy(p.image(i)[None]).float() / 255 - 0.5) / 0.25
        heatmap = explain_batch(model, x).heatmap[0].numpy()
        assert heatmap.max() > heatmap.min()  # a heatmap that shows something
        expected = overlay(p.image(i), heatmap)  # (H, W, 3)
        assert np.abs(ax.images[0].get_array().astype(int) - expected).max() <= 1
    assert _texts(fig) == [
        "Grad-CAM of the 2 most confident mistakes (layer conv)",
        "heatmap of the predicted class over each image; predicted / true, then its probability",
    ]
    assert tuple(fig.get_size_inches()) == pytest.approx((8.0, 1.9))


def test_gradcam_of_a_model_without_mistakes_is_the_same_line():
    fig = top_losses_gradcam_figure(made(predicted=LABELS, split="test"), Tiny(), STATE)
    assert fig.axes == []
    assert _texts(fig) == ["no mistakes: all 9 test images are predicted right"]


# --- every figure of a run, and their captions --------------------------------------------------


def test_captions_name_the_split_and_fill_in_their_numbers():
    p = made()
    assert caption("per_class", p) == "Validation accuracy of each class."
    assert caption("predictions", made(split="test")) == (
        "The first 30 test images and what the model predicts; mistakes in red."
    )
    assert caption("maps", p, 2, 3) == (
        "Validation image 0 (top left of the predictions) out of conv layer 2 of 3."
    )


METRICS = [
    {"epoch": 1, "train_loss": 1.2, "train_accuracy": 0.4, "val_loss": 1.1, "val_accuracy": 0.5},
    {"epoch": 2, "train_loss": 0.8, "train_accuracy": 0.6, "val_loss": 0.9, "val_accuracy": 0.6},
]


@pytest.fixture
def conv_calls(monkeypatch) -> list:
    """_conv_figures replaced by a stand-in that records its arguments (no model to load)."""
    calls = []

    def stand_in(record, predictions, device):
        calls.append((record, predictions, device))
        return [("filters.png", "the filters", Figure())]

    monkeypatch.setattr(plots, "_conv_figures", stand_in)
    return calls


def test_run_figures_in_report_order_with_their_captions(conv_calls, tmp_path):
    # every image kept, as load_predictions keeps the prediction grid's
    p, record = made(kept=range(9)), RunRecord(tmp_path, {"config": {}}, METRICS)
    figures = run_figures(record, p)
    assert [(name, text) for name, text, _ in figures] == [
        ("curves.png", "Loss, accuracy and learning rate per epoch."),
        ("predictions.png", caption("predictions", p)),
        ("confusion.png", caption("confusion", p)),
        ("per_class.png", "Validation accuracy of each class."),
        ("top_losses.png", "The mistakes the model was most sure of."),
        ("filters.png", "the filters"),  # then the conv figures
    ]
    # each figure is the one its name says, of this run and these predictions
    curves, grid, confusion, per_class, top = (fig for _, _, fig in figures[:5])
    assert curves.axes[1].get_title() == "accuracy (best val 0.6000, epoch 2)"
    assert grid.texts[0].get_text().startswith("predictions on the first 9 validation images")
    assert confusion.get_suptitle().startswith("confusion matrix of 9 validation images")
    bars = [bar.get_width() for bar in per_class.axes[0].patches]
    assert bars == pytest.approx([2 / 3, 0, 0.5, 1])  # ant 2/3, bee 0/2, cat 1/2, dog 2/2
    assert top.texts[0].get_text() == "the 4 most confident of 4 mistakes"
    # the conv figures come from the same run and predictions, on the device asked for
    assert conv_calls == [(record, p, "auto")]
    run_figures(record, p, device="cpu")
    assert conv_calls[-1] == (record, p, "cpu")


# --- writing them: write_plots and plot_run -----------------------------------------------------


def test_write_plots_hands_its_arguments_on_as_a_plot_config(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(plots, "plot_run", lambda cfg: (seen.append(cfg) or ["a.png"], "preds"))
    assert write_plots(tmp_path / "run", tmp_path / "out", device="cpu", data_dir="data") == [
        "a.png"
    ]  # the paths only
    assert seen[0] == PlotConfig(
        run=str(tmp_path / "run"), out=str(tmp_path / "out"), device="cpu", data_dir="data"
    )
    cfg = PlotConfig(run="elsewhere")
    write_plots(cfg)
    assert seen[1] is cfg  # a whole PlotConfig is used as it is


def test_write_plots_names_itself_when_an_argument_has_the_wrong_type():
    with pytest.raises(ConfigError) as caught:
        write_plots(5)
    assert str(caught.value) == "write_plots: run must be a string, got 5"


@pytest.fixture
def run_folder(tmp_path) -> Path:
    """A run folder as read_run reads it: a config.json and one epoch row."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {}}))
    (run / "metrics.jsonl").write_text(json.dumps(METRICS[0]) + "\n")
    return run


@pytest.fixture
def steps(monkeypatch) -> dict:
    """plot_run's steps after reading the run replaced by stand-ins that record their
    arguments: the predictions, the figures (two), and each PNG (its figure's label)."""
    calls: dict = {"predictions": made()}

    def load(record, *, device, data_dir):
        calls["load"] = (record, device, data_dir)
        return calls["predictions"]

    def figures(record, predictions, *, device):
        calls["figures"] = (record, predictions, device)
        return [(f"{name}.png", "", Figure(label=name)) for name in ("one", "two")]

    monkeypatch.setattr(plots, "load_predictions", load)
    monkeypatch.setattr(plots, "run_figures", figures)
    monkeypatch.setattr(plots, "render_png", lambda fig: f"png of {fig.get_label()}".encode())
    return calls


def test_plot_run_writes_each_figure_into_run_plots_by_default(run_folder, steps):
    paths, predictions = plot_run(PlotConfig(run=str(run_folder), device="cpu", data_dir="d"))
    folder = run_folder / "plots"
    assert paths == [folder / "one.png", folder / "two.png"]
    assert [path.read_bytes() for path in paths] == [b"png of one", b"png of two"]
    assert predictions is steps["predictions"]
    record, device, data_dir = steps["load"]
    assert (record.path, record.metrics, device, data_dir) == (run_folder, [METRICS[0]], "cpu", "d")
    assert steps["figures"] == (record, steps["predictions"], "cpu")


def test_plot_run_writes_into_out_when_given(run_folder, steps, tmp_path):
    paths, _ = plot_run(PlotConfig(run=str(run_folder), out=str(tmp_path / "pictures")))
    assert paths == [tmp_path / "pictures" / "one.png", tmp_path / "pictures" / "two.png"]
    assert not (run_folder / "plots").exists()


def test_plot_run_refuses_no_run_and_an_out_that_is_a_file(run_folder, steps, tmp_path):
    with pytest.raises(ConfigError) as caught:
        plot_run(PlotConfig())
    assert str(caught.value) == "give a run folder"
    file = tmp_path / "file.png"
    file.write_bytes(b"")
    with pytest.raises(ConfigError) as caught:
        plot_run(PlotConfig(run=str(run_folder), out=str(file)))
    assert str(caught.value) == f"output folder {file} is a file; give --out a folder"
    assert "load" not in steps  # refused before predicting
