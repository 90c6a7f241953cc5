"""The drawing helpers of a run's pictures (report/plots.py's _image_grid, _show, _matrix,
_class_ticks and _figure) and its conv figures (_conv_figures) in detail, read back from the
matplotlib Figure objects without rendering them: where each image of a grid sits and how big
the figure is, each image's pixels as shown (grey from 0 to 255, RGB, the first three of more
channels), the titles and their colours; the confusion-style matrix's colours, cell numbers
and their colours and sizes, the class tick labels (shortened, every k-th one of many classes);
the Grad-CAM, filter and feature map figures of a run and their captions, from a checkpoint
saved on a GPU, and none for an empty split or a model without convs.

Everything is made by hand (tiles, matrices, an untrained mnist_cnn checkpoint, predictions),
so each test takes milliseconds. These tests exist because docs/TESTING.md's mutation run left
these paths to the slow tests of test_plots.py or untested (survivors of
`mutmut run "cnnlab.report.plots*"`).
"""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.colors import same_color
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine

from cnnlab.errors import ModelError
from cnnlab.inspect.features import feature_figures
from cnnlab.models.own import canonical_model_name, file_sha256
from cnnlab.models.registry import create_model
from cnnlab.report.plots import DPI, FONT, _conv_figures, _figure, _image_grid, _matrix
from cnnlab.report.run_folder import RunRecord
from cnnlab.training.checkpoint import FORMAT, save_checkpoint
from helpers import hand_predictions, relocate_checkpoint

LONG = "bee_of_the_meadow_garden"  # 24 characters: over the 16 of a title, under shorten's 40
SHORT = "bee_of_…_garden"  # shorten(LONG, 16)


def _inches(ax, fig) -> list[float]:
    """An axes' (left, bottom, width, height) in inches from the figure's bottom left."""
    width, height = fig.get_size_inches()
    x, y, w, h = ax.get_position(original=True).bounds  # not shrunk to the image's aspect
    return [x * width, y * height, w * width, h * height]


def _shown(ax) -> np.ndarray:
    return np.asarray(ax.images[0].get_array())


# --- the image grid -----------------------------------------------------------------------------

GREY = np.arange(10, 30, dtype=np.uint8).reshape(1, 4, 5)  # 10..29: not the full 0..255
RGB = np.arange(18, dtype=np.uint8).reshape(3, 2, 3) * 9  # 2 rows: fewer than 3 channels
RGBA = np.arange(48, dtype=np.uint8).reshape(4, 3, 4) * 5  # a 4th channel: left out
TWO = np.arange(32, dtype=np.uint8).reshape(2, 4, 4) * 7  # 2 channels: the first in grey
TILE = (1.5, 1.25)  # wider than high, so a mix-up of the two shows
# five tiles in a 2 × 3 grid: the second row half full
TILES = [
    (GREY, "grey", "black"),
    (RGB, "rgb", "tab:red"),
    (RGBA, "rgba", "black"),
    (TWO, "two", "tab:red"),
    (GREY, "again", "black"),
]


@pytest.fixture(scope="module")
def grid():
    # a notebook's dpi must not change the figure's size in pixels
    with matplotlib.rc_context({"figure.dpi": 72, "figure.figsize": (3, 2)}):
        return _image_grid(TILES, (2, 3), TILE, "the title", "the subtitle")


def test_grid_is_columns_tiles_wide_and_rows_tiles_plus_the_header_high(grid):
    assert grid.get_size_inches() == pytest.approx([3 * 1.5, 2 * 1.25 + 0.45])
    assert grid.dpi == DPI
    assert len(grid.axes) == 5  # one per image, none for the empty cell


def test_grid_images_row_by_row_one_inch_centred_in_their_tiles(grid):
    # height 2.95: under the 0.45 header, tiles of 1.25 from the top, each image 0.05 above
    # its tile's bottom; 0.25 either side of an image in a tile 1.5 wide
    expected = [
        [0.25, 1.3, 1, 1], [1.75, 1.3, 1, 1], [3.25, 1.3, 1, 1],
        [0.25, 0.05, 1, 1], [1.75, 0.05, 1, 1],
    ]  # fmt: skip
    for ax, box in zip(grid.axes, expected, strict=True):
        assert _inches(ax, grid) == pytest.approx(box)


def test_grid_titles_each_image_in_its_colour_just_above_it(grid):
    assert [ax.get_title() for ax in grid.axes] == ["grey", "rgb", "rgba", "two", "again"]
    for ax, (_, _, colour) in zip(grid.axes, TILES, strict=True):
        assert same_color(ax.title.get_color(), colour)
        assert ax.title.get_fontsize() == FONT
        # pad 3 points: 3/72 of an inch above the image
        assert ax.titleOffsetTrans.transform((0, 0))[1] == pytest.approx(3 / 72 * DPI)


def test_grid_title_and_grey_subtitle_centred_at_the_top(grid):
    title, subtitle = grid.texts
    assert title.get_text() == "the title"
    assert subtitle.get_text() == "the subtitle"
    height = 2.95
    assert title.get_position() == pytest.approx((0.5, 1 - 0.06 / height))
    assert subtitle.get_position() == pytest.approx((0.5, 1 - 0.25 / height))
    for text in (title, subtitle):
        assert (text.get_ha(), text.get_va()) == ("center", "top")
    assert title.get_fontsize() == FONT + 1
    assert subtitle.get_fontsize() == FONT
    assert same_color(title.get_color(), "black")
    assert same_color(subtitle.get_color(), "0.3")


def test_grid_shows_one_channel_in_grey_on_the_full_0_to_255_scale(grid):
    for ax, pixels in [(grid.axes[0], GREY), (grid.axes[3], TWO)]:
        np.testing.assert_array_equal(_shown(ax), pixels[0])
        image = ax.images[0]
        assert image.get_cmap().name == "gray"
        # not stretched to the image's own range: a dark image stays dark
        assert image.get_clim() == (0, 255)
        assert not ax.axison


def test_grid_shows_three_or_more_channels_as_rgb_the_first_three(grid):
    np.testing.assert_array_equal(_shown(grid.axes[1]), RGB.transpose(1, 2, 0))
    np.testing.assert_array_equal(_shown(grid.axes[2]), RGBA[:3].transpose(1, 2, 0))
    assert not grid.axes[1].axison


def test_figures_have_their_size_in_pixels_whatever_the_style():
    with matplotlib.rc_context({"figure.dpi": 72, "figure.figsize": (3, 2)}):
        fig = _figure((2.0, 3.5), layout="constrained")
    assert fig.dpi == DPI
    assert list(fig.get_size_inches()) == [2.0, 3.5]
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)


# --- the matrix ---------------------------------------------------------------------------------

# not symmetric, so rows vs columns show; dog's row: a class without images
VALUES = np.array([[0.5, 8, 6], [12, 3, 1], [np.nan] * 3])
TOP = 16.0  # above the largest value: the scale is the one given, not the data's


def _matrix_axes(values, names, top=TOP, text=lambda v: f"{v:g}"):
    fig = Figure()
    ax = fig.subplots()
    _matrix(ax, values, names, "the panel", top, text)
    return fig, ax


@pytest.fixture(scope="module")
def matrix():
    return _matrix_axes(VALUES, ["ant", LONG, "dog"])


def test_matrix_in_blues_from_0_to_the_top_given(matrix):
    _, ax = matrix
    image = ax.images[0]
    np.testing.assert_array_equal(image.get_array(), VALUES)
    assert image.get_cmap().name == "Blues"
    assert image.get_clim() == (0, TOP)


def test_matrix_colour_bar_beside_it_shorter_with_small_numbers(matrix):
    fig, ax = matrix
    bar = fig.axes[1]
    assert bar.get_label() == "<colorbar>"
    # the matrix's scale: its colours from 0 to the top
    assert bar.get_ylim() == (0, TOP)
    assert "Blues" in [mesh.get_cmap().name for mesh in bar.collections]
    assert bar.get_position().height == pytest.approx(0.8 * ax.get_position().height)
    assert bar.yaxis.get_major_ticks()[0].label1.get_fontsize() == FONT - 1


def test_matrix_axes_labelled_and_titled(matrix):
    _, ax = matrix
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert ax.xaxis.label.get_fontsize() == ax.yaxis.label.get_fontsize() == FONT
    assert ax.get_title() == "the panel"
    assert ax.title.get_fontsize() == FONT + 1


def test_matrix_class_names_on_both_axes_shortened_slanted_below(matrix):
    _, ax = matrix
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ant", SHORT, "dog"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ant", SHORT, "dog"]
    for label in ax.get_xticklabels():  # slanted, their ends under their columns
        assert label.get_rotation() == 45
        assert label.get_ha() == "right"
        assert label.get_rotation_mode() == "anchor"
    assert all(label.get_rotation() == 0 for label in ax.get_yticklabels())
    ticks = ax.xaxis.get_major_ticks() + ax.yaxis.get_major_ticks()
    assert all(tick.label1.get_fontsize() == FONT for tick in ticks)  # up to 10 classes


def test_matrix_numbers_in_their_cells_white_above_half_the_top(matrix):
    _, ax = matrix
    cells = [(t.get_position(), t.get_text()) for t in ax.texts]
    # at (column, row); dog's row of NaNs has none
    assert cells == [
        ((0, 0), "0.5"), ((1, 0), "8"), ((2, 0), "6"),
        ((0, 1), "12"), ((1, 1), "3"), ((2, 1), "1"),
    ]  # fmt: skip
    white = [t.get_text() for t in ax.texts if same_color(t.get_color(), "white")]
    black = [t.get_text() for t in ax.texts if same_color(t.get_color(), "black")]
    assert white == ["12"]  # 8 is half of 16: not above it
    assert black == ["0.5", "8", "6", "3", "1"]
    for t in ax.texts:
        assert (t.get_ha(), t.get_va()) == ("center", "center")
        assert t.get_fontsize() == FONT - 1


@pytest.mark.parametrize(
    "classes, tick_size, number_size",
    [
        (10, FONT, FONT - 1),
        (11, FONT - 1, FONT - 2),
        (15, FONT - 1, FONT - 2),
        (16, FONT - 1, None),
    ],
)
def test_matrix_text_smaller_over_10_classes_no_numbers_over_15(classes, tick_size, number_size):
    _, ax = _matrix_axes(np.eye(classes), [f"c{k}" for k in range(classes)], top=1.0)
    assert ax.xaxis.get_major_ticks()[0].label1.get_fontsize() == tick_size
    assert ax.yaxis.get_major_ticks()[0].label1.get_fontsize() == tick_size
    if number_size is None:
        assert len(ax.texts) == 0
    else:
        assert len(ax.texts) == classes * classes
        assert {t.get_fontsize() for t in ax.texts} == {number_size}


@pytest.mark.parametrize("classes, step", [(30, 1), (31, 2), (61, 3)])
def test_over_30_classes_every_kth_is_named(classes, step):
    names = [f"c{k}" for k in range(classes)]
    _, ax = _matrix_axes(np.zeros((classes, classes)), names, top=1.0)
    for ticks, labels in [
        (ax.get_xticks(), ax.get_xticklabels()),
        (ax.get_yticks(), ax.get_yticklabels()),
    ]:
        assert list(ticks) == list(range(0, classes, step))
        assert [t.get_text() for t in labels] == names[::step]


# --- the conv figures of a run ------------------------------------------------------------------

CLASSES = ["ant", "bee", "cat"]
FLAT_NET = """
from torch import nn


class Flat(nn.Sequential):
    def __init__(self, num_classes=3, in_channels=1):
        super().__init__(nn.Flatten(), nn.Linear(in_channels * 28 * 28, num_classes))
"""


def _checkpoint(folder, model_name, model, source=None):
    """folder/best.pt of `model` (untrained), as if saved on a GPU: it loads onto the device
    asked for (the CPU here), not onto the one it was saved on."""
    state = {
        "format": FORMAT, "version": 1, "model_name": model_name,
        "model_args": {"num_classes": 3, "in_channels": 1}, "class_names": CLASSES,
        "mean": [0.5], "std": [0.25], "model_state": model.state_dict(), "model_source": source,
    }  # fmt: skip
    save_checkpoint(state, folder / "cpu.pt")
    relocate_checkpoint(folder / "cpu.pt", folder / "best.pt")
    return RunRecord(folder, {"dataset": "npz:/somewhere"}, [])


def _own_model_run(folder):
    """A run of Flat (a model without convs) from folder/flat.py."""
    folder.mkdir()
    file = folder / "flat.py"
    file.write_text(FLAT_NET)
    name = canonical_model_name(f"{file}:Flat")
    model = create_model(name, num_classes=3, in_channels=1)
    return _checkpoint(
        folder, name, model, {"file": str(file.resolve()), "sha256": file_sha256(file)}
    )


def _predictions(count=4):
    """Validation predictions of `count` 28×28 grey images, each a different picture; images
    0 and 2 are mistakes."""
    pixels = np.random.default_rng(0).integers(0, 256, (count, 1, 28, 28), dtype=np.uint8)
    return hand_predictions(
        [0, 1, 2, 0][:count],
        [1, 1, 0, 0][:count],
        CLASSES,
        confidence=[0.9, 0.6, 0.7, 0.6][:count],
        p_true=0.1,
        images=pixels,
        split="val",
    )


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    torch.manual_seed(0)
    return _checkpoint(
        tmp_path_factory.mktemp("conv_run"),
        "mnist_cnn",
        create_model("mnist_cnn", num_classes=3, in_channels=1),
    )


@pytest.fixture(scope="module")
def conv_figures(conv_run):
    return _conv_figures(conv_run, _predictions(), "cpu")


def test_conv_figures_gradcam_filters_then_one_maps_figure_per_layer(conv_figures):
    assert [(name, text) for name, text, _ in conv_figures] == [
        ("top_losses_gradcam.png",
         "The same mistakes with their Grad-CAM heatmaps (`cnnlab explain`): where the model "
         "looked for the class it wrongly chose; red is where it found the most for it."),
        ("filters.png", "The filters of conv layer 1 of 2, the first the forward pass calls."),
        ("maps-01-conv1.png",
         "Validation image 0 (top left of the predictions) out of conv layer 1 of 2."),
        ("maps-02-conv2.png",
         "Validation image 0 (top left of the predictions) out of conv layer 2 of 2."),
    ]  # fmt: skip
    titles = [fig.texts[-2].get_text() for _, _, fig in conv_figures]
    assert titles == [
        "Grad-CAM of the 2 most confident mistakes (layer conv2)",
        "conv layer 1 of 2 (module conv1): 10 filters, each 1×5×5",
        "conv layer 1 of 2 (module conv1): output 10×24×24 (C×H×W)",
        "conv layer 2 of 2 (module conv2): output 20×8×8 (C×H×W)",
    ]
    gradcam = conv_figures[0][2]  # the mistakes, most confident first
    assert [ax.get_title() for ax in gradcam.axes] == ["bee / ant\n0.900", "ant / cat\n0.700"]


def test_conv_figures_maps_are_of_image_0(conv_run, conv_figures):
    from cnnlab.training.checkpoint import load_checkpoint, rebuild_model

    state = load_checkpoint(conv_run.path / "best.pt")
    model = rebuild_model(state)
    predictions = _predictions()
    assert not np.array_equal(predictions.image(0), predictions.image(1))  # each its own maps
    (_, first), *_ = feature_figures(model, state, predictions.image(0), "")[2:]
    np.testing.assert_array_equal(_shown(conv_figures[2][2].axes[0]), _shown(first.axes[0]))


def test_no_conv_figures_for_an_empty_split(conv_run):
    assert _conv_figures(conv_run, _predictions(count=0), "cpu") == []


def test_no_conv_figures_for_a_model_without_convs(tmp_path):
    assert _conv_figures(_own_model_run(tmp_path / "flat"), _predictions(), "cpu") == []


def test_a_changed_model_file_is_refused_naming_the_run(tmp_path):
    record = _own_model_run(tmp_path / "flat")
    (record.path / "flat.py").write_text(FLAT_NET + "\n# changed\n")
    with pytest.raises(ModelError, match=f"^{re.escape(str(record.path))} needs .* has changed"):
        _conv_figures(record, _predictions(), "cpu")
