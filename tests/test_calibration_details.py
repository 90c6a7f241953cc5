"""Calibration in detail (report/calibration.py): the bins at their ends (one bin, float32
confidences, right/wrong given as 0 and 1), the refusals, the means taken in float64, the
sentences of calibration_text word for word (its ±0.005 band, "over 99.9%"), and two panels
of the calibration figure: the counts per bin and the right-vs-wrong shares, with their bars,
numbers, lines, limits, ticks, labels, legend and fonts.

Every number is checked against a plain computation written here on a few hand-made
predictions; the panels are drawn on a bare matplotlib axes and read back without rendering
(milliseconds each). These tests exist because docs/TESTING.md's mutation run left these paths
untested (survivors of `mutmut run "cnnlab.report.calibration*"`).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from cnnlab.errors import ConfigError
from cnnlab.report.calibration import (
    CALIBRATED_WITHIN,
    RIGHT_COLOUR,
    _bin_counts,
    _impossible_range,
    _percent,
    _right_and_wrong,
    bin_edges,
    calibration_of,
    calibration_text,
    measure_calibration,
)
from cnnlab.report.plots import FONT, WRONG
from cnnlab.report.predictions import Predictions

XLABEL = "confidence (probability of the predicted class)"

# Four bins, (0, .25], (.25, .5], (.5, .75], (.75, 1]: right ones in bins 1, 2, 3, 3; wrong
# ones in bins 1 (0.5 on an edge), 3 (1.0) and 2. Per kind, the share of it in each bin.
RIGHT = [0.3, 0.6, 0.8, 0.9]
WRONG_ONES = [0.5, 1.0, 0.7]


def right_and_wrong(right, wrong) -> tuple[np.ndarray, np.ndarray]:
    """(float32 confidences, correct) of right ones then wrong ones."""
    confidence = np.array([*right, *wrong], dtype=np.float32)
    return confidence, np.arange(len(confidence)) < len(right)


def plain_mean(values) -> float:
    """The mean in float64, one value after another."""
    return sum(float(v) for v in values) / len(values)


def axes():
    return Figure().subplots()


# --- the numbers --------------------------------------------------------------------------------


def test_one_bin_is_allowed_and_its_ece_is_the_whole_gap():
    assert bin_edges(1).tolist() == [0.0, 1.0]
    confidence, correct = right_and_wrong(RIGHT, WRONG_ONES)
    result = measure_calibration(confidence, correct, num_bins=1)
    assert result.bin_counts.tolist() == [7]
    # one bin: the ECE and the MCE are |mean confidence - accuracy| over all images
    gap = abs(plain_mean(confidence) - 4 / 7)
    assert result.ece == pytest.approx(gap, abs=1e-12)
    assert result.mce == pytest.approx(gap, abs=1e-12)


def test_float32_confidences_are_averaged_in_float64():
    # float32 arithmetic would give 0.54285717 for these, not 0.54285714...
    confidence = np.array([0.1, 0.2, 0.7, 0.9, 0.3, 0.6, 1.0], dtype=np.float32)
    correct = np.array([True, False, True, True, False, False, True])
    result = measure_calibration(confidence, correct)
    assert result.average_confidence == pytest.approx(plain_mean(confidence), rel=1e-12)
    assert result.confidence_when_right == pytest.approx(plain_mean(confidence[correct]), rel=1e-12)
    assert result.confidence_when_wrong == pytest.approx(
        plain_mean(confidence[~correct]), rel=1e-12
    )


def test_right_and_wrong_given_as_1_and_0_count_as_true_and_false():
    confidence = np.array([0.9, 0.6, 0.8, 0.3])
    as_bools = measure_calibration(confidence, np.array([True, False, True, False]))
    as_ints = measure_calibration(confidence, np.array([1, 0, 1, 0]))
    assert as_ints.right == 2
    # 0/1 taken as indices would average confidence[[1, 0, 1, 0]] instead
    assert as_ints.confidence_when_right == pytest.approx(0.85)
    assert as_ints.confidence_when_wrong == pytest.approx(0.45)
    assert as_ints.ece == as_bools.ece


@pytest.mark.parametrize(
    "confidence, correct, shapes",
    [
        (np.ones(3), np.ones(2, bool), r"\(3,\) and \(2,\)"),
        (np.ones((2, 2)), np.ones((2, 2), bool), r"\(2, 2\) and \(2, 2\)"),  # same, not (N,)
    ],
)
def test_confidence_and_correct_of_other_shapes_are_refused(confidence, correct, shapes):
    why = r"must be two \(N,\) arrays of one length, not "
    with pytest.raises(ConfigError, match=why + shapes):
        measure_calibration(confidence, correct)


def test_empty_bins_and_no_mistakes_give_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's 0/0 and mean-of-nothing warnings included
        result = measure_calibration(np.array([0.9, 0.95]), np.array([True, True]), num_bins=4)
    assert np.isnan(result.bin_accuracy[:3]).all() and result.bin_counts.tolist() == [0, 0, 0, 2]
    assert np.isnan(result.confidence_when_wrong)


def test_calibration_of_predictions_uses_the_bins_asked_for():
    confidence, correct = right_and_wrong(RIGHT, WRONG_ONES)
    labels = np.arange(7) % 4
    predictions = Predictions(
        checkpoint="best.pt",
        digest="0" * 64,
        class_names=["a", "b", "c", "d"],
        labels=labels,
        predicted=np.where(correct, labels, (labels + 1) % 4),
        confidence=confidence,
        p_true=np.where(correct, confidence, 0).astype(np.float32),
        image_index=np.zeros(0, np.int64),
        images=np.zeros((0, 1, 4, 4), np.uint8),
        split="test",
    )
    result = calibration_of(predictions, num_bins=4)
    assert result.bin_counts.tolist() == [0, 2, 2, 3] and result.num_classes == 4


# --- in words -----------------------------------------------------------------------------------


def test_the_text_of_a_calibrated_model_word_for_word():
    # per confidence c, a share c is right: 0.6 x10 (6 right), 0.8 x5 (4), 1.0 x3 (3)
    groups = [(0.6, 10, 6), (0.8, 5, 4), (1.0, 3, 3)]
    confidence = np.concatenate([np.full(n, c) for c, n, _ in groups])
    correct = np.concatenate([np.arange(n) < right for _, n, right in groups])
    text = calibration_text(measure_calibration(confidence, correct, num_bins=10), "test")
    assert text == (
        "Expected calibration error (ECE) on the 18 test images: 0.0000 (10 equal-width bins "
        "of confidence; 0 means that of the predictions made with 80% confidence, 80% are "
        "right). Largest gap in one bin (MCE): 0.0000. When right, the model was on average "
        "75.4% sure; when wrong, 64.0% sure. On the whole it is about as sure as it is right: "
        "72.2% sure, 72.2% right."
    )  # 9.8 / 13 when right, 3.2 / 5 when wrong, 13 / 18 on the whole


def test_the_sentences_of_a_model_never_right_or_never_wrong():
    never_right = measure_calibration(np.array([0.9996, 0.9996]), np.array([False, False]))
    assert calibration_text(never_right, "test").endswith(
        "(MCE): 0.9996. The model was never right; when wrong, over 99.9% sure. On the whole "
        "it is over-confident: on average over 99.9% sure, 0.0% right."
    )
    never_wrong = measure_calibration(np.array([1.0, 0.5]), np.array([True, True]))
    assert calibration_text(never_wrong, "validation").endswith(
        "When right, the model was on average 75.0% sure; it made no mistake. On the whole it "
        "is under-confident: on average 75.0% sure, 100.0% right."
    )


def test_a_gap_of_exactly_half_a_percent_is_about_as_sure_as_right():
    base = measure_calibration(np.array([0.005]), np.array([False]))  # 0.005 sure, 0% right
    # 1 right of 128 (0.0078125) and 0.0028125 sure: exactly 0.005 under
    under = dataclasses.replace(base, images=128, right=1, average_confidence=1 / 128 - 0.005)
    for result in (base, under):
        assert abs(result.overconfidence) == CALIBRATED_WITHIN  # exactly on the band's edge
        assert "On the whole it is about as sure as it is right" in calibration_text(result, "a")


def test_a_share_shows_in_percent_and_just_under_1_as_over_99_9():
    shares = [0.5, 0.99949, 0.9996, 1.0]
    assert [_percent(s) for s in shares] == ["50.0%", "99.9%", "over 99.9%", "100.0%"]


# --- the figure's panels ------------------------------------------------------------------------


def test_the_impossible_range_is_below_1_over_c_and_named():
    ax = axes()
    for no_range in (None, 0, 1):  # no classes known, or one class: nothing is impossible
        _impossible_range(ax, no_range)
    assert not ax.patches
    _impossible_range(ax, 2)
    _impossible_range(ax, 4, label=None)  # unnamed, as on the right-vs-wrong panel
    two, four = ax.patches
    assert (two.get_x(), two.get_width(), four.get_x(), four.get_width()) == (0, 0.5, 0, 0.25)
    assert two.get_facecolor() == four.get_facecolor() == to_rgba("0.93")
    assert two.get_label() == "below 1/2 (impossible)" and four.get_label() is None


def test_the_counts_panel_has_a_bar_and_a_number_per_filled_bin():
    confidence, correct = right_and_wrong(RIGHT, WRONG_ONES)
    ax = axes()
    _bin_counts(ax, measure_calibration(confidence, correct, num_bins=4))
    bars = [(p.get_x(), p.get_width(), p.get_height()) for p in ax.patches]
    assert bars == [(0, 0.25, 0), (0.25, 0.25, 2), (0.5, 0.25, 2), (0.75, 0.25, 3)]
    assert {p.get_facecolor() for p in ax.patches} == {to_rgba("0.55")}
    assert {p.get_edgecolor() for p in ax.patches} == {to_rgba("white")}
    # each number centred over its bar, 5% of the highest count above it; none over an empty bin
    assert [t.get_text() for t in ax.texts] == ["2", "2", "3"]
    positions = np.array([t.get_position() for t in ax.texts])
    assert positions == pytest.approx(np.array([(0.375, 2.15), (0.625, 2.15), (0.875, 3.15)]))
    assert {(t.get_ha(), t.get_va(), t.get_fontsize()) for t in ax.texts} == {
        ("center", "bottom", FONT - 2)
    }
    assert ax.get_ylim() == pytest.approx((0, 3 * 1.45))  # room for the numbers
    assert ax.get_xlim() == (0, 1) and ax.get_xticks() == pytest.approx(np.linspace(0, 1, 6))
    assert ax.get_yticks().tolist() == [0, 2, 4, 6]  # whole images only, few of them
    assert (ax.get_xlabel(), ax.xaxis.label.get_fontsize()) == (XLABEL, FONT)
    assert (ax.get_ylabel(), ax.yaxis.label.get_fontsize()) == ("images", FONT)
    assert ax.get_xticklabels()[0].get_fontsize() == FONT


def test_the_counts_panel_of_one_image_in_twenty_bins_and_of_nine_in_one():
    ax = axes()
    _bin_counts(ax, measure_calibration(np.array([0.5]), np.array([True]), num_bins=20))
    assert [t.get_text() for t in ax.texts] == ["1"]  # 20 bins are still numbered
    assert ax.get_ylim() == pytest.approx((0, 1.45))  # the highest count, 1, not more
    ax = axes()
    _bin_counts(ax, measure_calibration(np.full(9, 0.9), np.ones(9, bool), num_bins=4))
    assert ax.get_yticks().tolist() == [0, 5, 10, 15]  # at most three steps


def test_the_right_and_wrong_panel_shows_each_kind_as_a_share_of_itself():
    confidence, correct = right_and_wrong(RIGHT, WRONG_ONES)
    result = measure_calibration(confidence, correct, num_bins=4, num_classes=4)
    ax = axes()
    _right_and_wrong(ax, result, confidence, correct)
    *bars, impossible = ax.patches
    assert (impossible.get_x(), impossible.get_width()) == (0, 0.25)  # below 1/4
    # right ones in the left half of each bin, wrong ones in the right half
    right = [(0, 0.125, 0), (0.25, 0.125, 1 / 4), (0.5, 0.125, 1 / 4), (0.75, 0.125, 2 / 4)]
    wrong = [(0.125, 0.125, 0), (0.375, 0.125, 1 / 3), (0.625, 0.125, 1 / 3), (0.875, 0.125, 1 / 3)]
    drawn = np.array([(p.get_x(), p.get_width(), p.get_height()) for p in bars])
    assert drawn == pytest.approx(np.array([*right, *wrong]))
    colours = [to_rgba(RIGHT_COLOUR)] * 4 + [to_rgba(WRONG)] * 4
    assert [p.get_facecolor() for p in bars] == colours
    # each kind's mean confidence as a dashed line of its colour
    styles = [(line.get_color(), line.get_linestyle(), line.get_linewidth()) for line in ax.lines]
    assert styles == [(RIGHT_COLOUR, "--", 1), (WRONG, "--", 1)]
    means = np.array([line.get_xdata() for line in ax.lines])
    kinds = [plain_mean(confidence[:4]), plain_mean(confidence[4:])]
    assert means == pytest.approx(np.array([kinds, kinds]).T)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "right: 4, on average 65.0% sure (dashed)",
        "wrong: 3, on average 73.3% sure (dashed)",
    ]
    assert legend.get_texts()[0].get_fontsize() == FONT - 1
    assert legend._get_loc() == 2  # "upper left": above the bars, which the y limit leaves room for
    assert ax.get_ylim() == pytest.approx((0, 0.5 * 1.3))  # the highest share, 0.5, and room
    assert ax.get_xlim() == (0, 1) and ax.get_xticks() == pytest.approx(np.linspace(0, 1, 6))
    assert ax.get_xticklabels()[0].get_fontsize() == FONT
    assert (ax.get_xlabel(), ax.xaxis.label.get_fontsize()) == (XLABEL, FONT)
    ylabel = "share of the right (of the wrong) predictions"
    assert (ax.get_ylabel(), ax.yaxis.label.get_fontsize()) == (ylabel, FONT)
    title = "how sure it was when right and when wrong"
    assert (ax.get_title(), ax.title.get_fontsize()) == (title, FONT + 1)
    grid = ax.xaxis.get_gridlines()[0]
    assert grid.get_visible() and grid.get_alpha() == 0.3


def test_one_mistake_is_all_of_the_mistakes_in_its_bin():
    confidence, correct = right_and_wrong([0.6, 0.8], [0.9])
    ax = axes()
    _right_and_wrong(ax, measure_calibration(confidence, correct, num_bins=4), confidence, correct)
    right, wrong = [0, 0, 0.5, 0.5], [0, 0, 0, 1]  # the mistake: all of the mistakes, not half
    assert [p.get_height() for p in ax.patches] == [*right, *wrong]
    assert ax.get_ylim() == pytest.approx((0, 1.3))
