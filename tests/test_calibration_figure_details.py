"""The calibration figure in detail (report/calibration.py's calibration_figure and
_reliability_diagram): the three panels and how they are laid out, the title with the ECE of
the result passed in, and what the reliability diagram shows (the accuracy bars of the
non-empty bins only, the hatched gap from each to the bin's mean confidence, drawn downwards
where the bin is under-confident, the dashed diagonal, the greyed range below 1/C, its axes,
labels and legend), read from the matplotlib Figure without rendering it.

Six hand-made predictions, one figure shared by the module (milliseconds). These tests exist
because docs/TESTING.md's mutation run left these paths untested (survivors of
`mutmut run "cnnlab.report.calibration*"`).
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from cycler import cycler
from matplotlib.colors import to_rgba
from matplotlib.layout_engine import ConstrainedLayoutEngine

from cnnlab.report.calibration import calibration_figure, calibration_of
from cnnlab.report.plots import DPI, FONT, TRAIN, WRONG
from cnnlab.report.predictions import Predictions
from helpers import hand_predictions

# (confidence, right) in four bins (0, .25], (.25, .5], (.5, .75], (.75, 1] of 4 classes:
# bin 0 empty; bin 1 under-confident (accuracy 0.5, confidence 0.45); bin 2 a single image
# (accuracy 1, confidence 0.6); bin 3 over-confident (accuracy 2/3, confidence 0.9).
# ECE = 2/6 * 0.05 + 1/6 * 0.4 + 3/6 * (0.9 - 2/3) = 0.2; MCE 0.4. Four right, two wrong.
SIX = [(0.5, False), (0.4, True), (0.6, True), (1.0, True), (0.9, True), (0.8, False)]
LEFTS = [0.25, 0.5, 0.75]  # the non-empty bins
ACCURACY = [0.5, 1.0, 2 / 3]
CONFIDENCE = [0.45, 0.6, 0.9]


def predictions_of(pairs, num_classes: int = 4, split: str = "val") -> Predictions:
    """Predictions of (confidence, right) pairs (a wrong one predicts the next class)."""
    confidence = np.array([c for c, _ in pairs], dtype=np.float32).reshape(-1)
    correct = np.array([r for _, r in pairs], dtype=bool).reshape(-1)
    labels = np.arange(len(confidence), dtype=np.int64) % num_classes
    predicted = np.where(correct, labels, (labels + 1) % num_classes)
    names = [f"class{k}" for k in range(num_classes)]
    p_true = np.where(correct, confidence, 0.0)
    return hand_predictions(labels, predicted, names, confidence=confidence, p_true=p_true,
                            split=split)  # fmt: skip


def panels(fig) -> dict:
    """The figure's axes by their place: the diagram top left over the counts; right_wrong."""
    found = {}
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec.colspan.start == 1:
            found["right_wrong"] = ax
        else:
            found["diagram" if spec.rowspan.start == 0 else "counts"] = ax
    return found


@pytest.fixture(scope="module")
def six():
    """The figure of SIX drawn with a 4-bin result passed in (the default is 15 bins)."""
    predictions = predictions_of(SIX)
    return calibration_figure(predictions, calibration_of(predictions, num_bins=4))


@pytest.fixture(scope="module")
def diagram(six):
    return panels(six)["diagram"]


def _bars(ax, label_index: int):
    return list(ax.containers[label_index])


# --- the figure ---------------------------------------------------------------------------------


def test_title_names_the_split_and_the_passed_results_ece_mce_and_bins(six):
    # the result passed in is drawn, not one recomputed with the default 15 bins
    assert six.get_suptitle() == (
        "calibration on 6 validation images: ECE 0.2000, MCE 0.4000 (4 bins)"
    )
    assert six._suptitle.get_fontsize() == FONT + 1


def test_three_panels_the_diagram_three_times_as_high_as_the_counts(six):
    assert len(six.axes) == 3
    found = panels(six)
    assert found["right_wrong"].get_subplotspec().rowspan == range(0, 2)  # the full height
    high = found["diagram"].get_position().height / found["counts"].get_position().height
    assert high == pytest.approx(3)
    assert isinstance(six.get_layout_engine(), ConstrainedLayoutEngine)  # nothing overlaps


def test_right_and_wrong_panel_counts_the_right_ones_as_right(six):
    texts = [t.get_text() for t in panels(six)["right_wrong"].get_legend().get_texts()]
    assert texts[0].startswith("right: 4,") and texts[1].startswith("wrong: 2,")


def test_a_users_matplotlib_settings_change_neither_pixels_nor_colours():
    # a notebook's style (another dpi, another colour cycle) must not change the report's
    # figure: its size is fixed in pixels, and its accuracy bars share the colour of the
    # right predictions in the panel beside them
    style = {"figure.dpi": 72, "axes.prop_cycle": cycler(color=["tab:green", "tab:olive"])}
    with matplotlib.rc_context(style):
        fig = calibration_figure(predictions_of(SIX))
    assert fig.dpi == DPI
    ax = panels(fig)["diagram"]
    accuracy, gap = _bars(ax, 0), _bars(ax, 1)
    assert all(bar.get_facecolor() == to_rgba(TRAIN) for bar in accuracy)
    assert all(bar.get_facecolor() == to_rgba(WRONG, 0.25) for bar in gap)  # see-through
    assert ax.lines[0].get_color() == "0.3"


# --- the reliability diagram --------------------------------------------------------------------


def test_accuracy_bars_fill_the_non_empty_bins_only(diagram):
    bars = _bars(diagram, 0)
    assert [bar.get_x() for bar in bars] == pytest.approx(LEFTS)  # bin 0 empty; bin 2 holds 1
    assert [bar.get_width() for bar in bars] == pytest.approx([0.25] * 3)
    assert [bar.get_y() for bar in bars] == [0, 0, 0]
    assert [bar.get_height() for bar in bars] == pytest.approx(ACCURACY)
    # white edges part neighbouring bars
    assert all(bar.get_edgecolor() == to_rgba("white") for bar in bars)


def test_gap_bars_run_from_the_accuracy_to_the_mean_confidence(diagram):
    bars = _bars(diagram, 1)
    assert [bar.get_x() for bar in bars] == pytest.approx(LEFTS)
    assert [bar.get_width() for bar in bars] == pytest.approx([0.25] * 3)
    assert [bar.get_y() for bar in bars] == pytest.approx(ACCURACY)
    # under-confident bins (1 and 2) drawn downwards, the over-confident bin 3 upwards
    gaps = np.subtract(CONFIDENCE, ACCURACY)
    assert [bar.get_height() for bar in bars] == pytest.approx(gaps, abs=1e-6)
    assert all(bar.get_hatch() == "//" for bar in bars)
    assert all(bar.get_facecolor() == to_rgba(WRONG, 0.25) for bar in bars)


def test_dashed_grey_diagonal_is_perfect_calibration(diagram):
    (line,) = diagram.lines
    assert list(line.get_xdata()) == [0, 1] and list(line.get_ydata()) == [0, 1]
    assert line.get_linestyle() == "--" and line.get_color() == "0.3"
    assert line.get_linewidth() == 1


def test_confidences_below_one_over_classes_are_greyed_out(diagram):
    (span,) = [p for p in diagram.patches if p.get_facecolor() == to_rgba("0.93")]
    assert span.get_x() == 0 and span.get_width() == pytest.approx(1 / 4)


def test_legend_names_every_mark_in_the_upper_left(diagram):
    legend = diagram.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "below 1/4 (impossible)",
        "perfectly calibrated",
        "accuracy",
        "gap to the bin's mean confidence",
    ]
    assert all(t.get_fontsize() == FONT - 1 for t in legend.get_texts())
    assert legend._get_loc() == 2  # "upper left": above the empty low-confidence bins


def test_axes_span_0_to_1_with_ticks_every_fifth_and_x_labels_left_to_the_counts(diagram):
    assert diagram.get_xlim() == (0, 1) and diagram.get_ylim() == (0, 1)
    assert list(diagram.get_xticks()) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1])
    assert not any(tick.label1.get_visible() for tick in diagram.xaxis.get_major_ticks())
    assert all(tick.label1.get_fontsize() == FONT for tick in diagram.yaxis.get_major_ticks())
    assert diagram.get_ylabel() == "accuracy" and diagram.yaxis.label.get_fontsize() == FONT
    assert diagram.get_title() == "reliability diagram"
    assert diagram.title.get_fontsize() == FONT + 1
    assert all(line.get_alpha() == 0.3 for line in diagram.xaxis.get_gridlines())


def test_without_predictions_the_diagram_still_spans_0_to_1():
    # no bars at all: the limits are set, not left to autoscaling around the diagonal
    empty = predictions_of([])
    ax = panels(calibration_figure(empty))["diagram"]
    assert ax.get_xlim() == (0, 1) and ax.get_ylim() == (0, 1)
