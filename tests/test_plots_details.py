"""The prediction grid, the confusion figure and the per-class figure (report/plots.py's
prediction_grid, confusion_figure and per_class_figure) in detail: the class names shortened in
the grid's titles and its subtitle; the two confusion panels side by side with their titles,
colour ranges and the colour of each cell's number, its title, and no warning for a class
without images; the per-class bars, the dashed overall line, the axis limits, ticks, labels and
font sizes, and the number beside each bar (or the line for a class with no image), up to 15
classes. All read from the matplotlib Figure, without rendering it.

Four hand-made validation predictions of four classes, the last without an image (so rows vs
columns, rates vs counts and the empty class all show), figures shared by the module
(milliseconds). These tests exist because docs/TESTING.md's mutation run left these paths
untested (survivors of `mutmut run "cnnlab.report.plots*"`).
"""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pytest
from cycler import cycler
from matplotlib.colors import same_color, to_rgba
from matplotlib.layout_engine import ConstrainedLayoutEngine

from cnnlab.report.plots import FONT, TRAIN, confusion_figure, per_class_figure, prediction_grid
from cnnlab.report.predictions import Predictions
from helpers import hand_predictions

LONG = "bee_of_the_meadow_garden"  # 24 characters: over the 16 of a title, under shorten's 40
SHORT = "bee_of_…_garden"  # shorten(LONG, 16)
NAMES = ["ant", LONG, "cat", "dog"]
# true 0 1 1 2, predicted 0 1 2 0: counts (rows true, columns predicted), at most 1 per cell
#   ant [1 0 0 0]   rates [1  0  0  0]     per class: ant 1/1, bee 1/2, cat 0/1, dog none
#   bee [0 1 1 0]         [0 .5 .5  0]     accuracy 2/4
#   cat [1 0 0 0]         [1  0  0  0]
#   dog [0 0 0 0]         [nan ...    ]
LABELS, PREDICTED = [0, 1, 1, 2], [0, 1, 2, 0]


def made(labels=LABELS, predicted=PREDICTED, names=NAMES, split="val") -> Predictions:
    """Predictions made by hand, the 2×2 grey pixels of every image kept."""
    pixels = np.arange(len(labels) * 4, dtype=np.uint8).reshape(-1, 1, 2, 2)
    return hand_predictions(labels, predicted, names, confidence=0.6, images=pixels, split=split)


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


# --- the prediction grid ------------------------------------------------------------------------


def test_grid_titles_shorten_long_class_names_to_16_characters():
    fig = prediction_grid(made())
    titles = [ax.get_title() for ax in fig.axes]
    # the predicted name and the true one of a mistake alike
    assert titles == ["ant", SHORT, f"cat\n(true: {SHORT})", "ant\n(true: cat)"]


def test_grid_title_counts_and_subtitle_says_how_to_read_it():
    title, subtitle = prediction_grid(made()).texts
    assert title.get_text() == "predictions on the first 4 validation images: 2 right, 2 wrong"
    assert subtitle.get_text() == (
        "titled with the predicted class; in red, a mistake, with the true class"
    )


# --- the confusion figure -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def confusion():
    with warnings.catch_warnings():
        # the class without images divides 0 by 0 (a NaN row): no RuntimeWarning for it
        warnings.simplefilter("error")
        return confusion_figure(made())


def test_confusion_panels_stand_side_by_side_counts_left(confusion):
    left, right = confusion.axes[:2]  # then their colour bars
    assert left.get_subplotspec().get_geometry() == (1, 2, 0, 0)
    assert right.get_subplotspec().get_geometry() == (1, 2, 1, 1)
    assert left.get_title() == "counts"
    assert right.get_title() == "each row divided by its total"
    assert isinstance(confusion.get_layout_engine(), ConstrainedLayoutEngine)  # nothing overlaps


def test_confusion_title_gives_the_images_split_and_accuracy(confusion):
    assert confusion.get_suptitle() == "confusion matrix of 4 validation images (accuracy 0.5000)"
    assert confusion._suptitle.get_fontsize() == FONT + 1  # a point over the panels' text


def test_counts_run_from_0_to_the_largest_count_its_cells_white_on_dark(confusion):
    left = confusion.axes[0]
    assert left.images[0].get_clim() == (0, 1)  # the largest count is 1: a full-dark cell
    ones = [t for t in left.texts if t.get_text() == "1"]
    zeros = [t for t in left.texts if t.get_text() == "0"]
    assert len(ones) == 4 and len(zeros) == 12  # dog's row: four 0s
    assert all(same_color(t.get_color(), "white") for t in ones)
    assert all(same_color(t.get_color(), "black") for t in zeros)


def test_rates_run_from_0_to_1_only_a_whole_row_white(confusion):
    right = confusion.axes[1]
    assert right.images[0].get_clim() == (0, 1.0)
    colours = {t.get_text(): set() for t in right.texts}
    for t in right.texts:
        colours[t.get_text()].add("white" if same_color(t.get_color(), "white") else "black")
    # bee's 0.50s sit at the middle of the scale: not above it, so black
    assert colours == {"1.00": {"white"}, "0.50": {"black"}, "0.00": {"black"}}
    assert _texts(right).count("1.00") == 2 and _texts(right).count("0.50") == 2
    assert len(right.texts) == 12  # dog's row, 0 of 0 images, has no numbers


# --- the per-class figure -----------------------------------------------------------------------

# a notebook's style must not change the figure: another colour cycle, line width and font size
STYLE = {
    "axes.prop_cycle": cycler(color=["tab:green", "tab:olive"]),
    "lines.linewidth": 3,
    "font.size": 13,
}


@pytest.fixture(scope="module")
def per_class():
    with matplotlib.rc_context(STYLE):
        fig = per_class_figure(made())
    return fig, fig.axes[0]


def test_per_class_bars_in_the_train_colour_with_gaps_between(per_class):
    fig, ax = per_class
    assert [bar.get_width() for bar in ax.patches] == [1, 0.5, 0, 0]  # dog: none, drawn as 0
    assert all(bar.get_height() == pytest.approx(0.7) for bar in ax.patches)
    assert all(bar.get_facecolor() == to_rgba(TRAIN) for bar in ax.patches)
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)


def test_per_class_dashed_grey_line_at_the_overall_accuracy(per_class):
    (line,) = per_class[1].lines
    assert list(line.get_xdata()) == [0.5, 0.5]
    assert line.get_color() == "0.3"
    assert line.get_linestyle() == "--"
    assert line.get_linewidth() == 1


def test_per_class_axis_from_0_to_1_15_ticked_every_fifth(per_class):
    ax = per_class[1]
    assert ax.get_xlim() == (0, 1.15)  # room for the numbers right of a full bar
    np.testing.assert_allclose(ax.get_xticks(), [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert ax.get_xlabel() == "validation accuracy"
    assert ax.xaxis.label.get_fontsize() == FONT
    ticks = ax.xaxis.get_major_ticks() + ax.yaxis.get_major_ticks()
    assert all(tick.label1.get_fontsize() == FONT for tick in ticks)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ant", SHORT, "cat", "dog"]


def test_per_class_title_gives_the_overall_accuracy(per_class):
    ax = per_class[1]
    assert ax.get_title() == "accuracy per class (dashed: all classes, 0.5000)"
    assert ax.title.get_fontsize() == FONT + 1


def test_per_class_numbers_beside_each_bar_and_a_line_for_a_class_without_images(per_class):
    ax = per_class[1]
    # accuracy (right/total); a class with a single image is numbered like the others
    assert _texts(ax) == ["1.00 (1/1)", "0.50 (1/2)", "0.00 (0/1)", "no validation image"]
    assert [t.get_position()[0] for t in ax.texts] == pytest.approx([1.01, 0.51, 0.01, 0.01])


def test_per_class_numbers_sit_centred_on_their_bar_on_white_so_the_line_stays_behind(per_class):
    ax = per_class[1]
    for text in ax.texts:
        assert text.get_verticalalignment() == "center"
        assert text.get_fontsize() == FONT - 1
        box = text.get_bbox_patch()  # the white box the dashed line passes behind
        assert box is not None and box.get_facecolor() == to_rgba("white")
        assert box.get_edgecolor() == (0.0, 0.0, 0.0, 0.0)  # "none": no frame
        # matplotlib keeps the pad as a share of the font size, to two decimals: 1 point
        assert box.get_boxstyle().pad * text.get_fontsize() == pytest.approx(1, abs=0.05)


@pytest.mark.parametrize("classes, numbered", [(15, True), (16, False)])
def test_per_class_numbers_up_to_15_classes(classes, numbered):
    names = [f"c{k}" for k in range(classes)]
    fig = per_class_figure(made(list(range(classes)), list(range(classes)), names))
    assert len(fig.axes[0].texts) == (classes if numbered else 0)
