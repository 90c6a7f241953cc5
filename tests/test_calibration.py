"""Calibration: the reliability bins, the expected calibration error, its figure and its
section of report.html."""

from __future__ import annotations

import base64
import io
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from cnnlab.errors import ConfigError
from cnnlab.report import run_report
from cnnlab.report.calibration import (
    CALIBRATION_SIZE,
    bin_edges,
    bin_of,
    calibration_figure,
    calibration_of,
    calibration_text,
    measure_calibration,
)
from cnnlab.report.plots import DPI
from cnnlab.report.predictions import Predictions, load_predictions

FIGURE_PIXELS = (round(CALIBRATION_SIZE[0] * DPI), round(CALIBRATION_SIZE[1] * DPI))


def reference_ece(confidence, correct, num_bins: int) -> float:
    """Guo et al.'s ECE written out: one pass per bin (lo, hi], the first bin also holding 0,
    each non-empty bin's |accuracy - mean confidence| weighted by its share of the images."""
    total, n = 0.0, len(confidence)
    for m in range(num_bins):
        lo, hi = m / num_bins, (m + 1) / num_bins
        members = [i for i, c in enumerate(confidence) if lo < c <= hi or (m == 0 and c == 0)]
        if members:
            accuracy = sum(bool(correct[i]) for i in members) / len(members)
            mean_confidence = sum(float(confidence[i]) for i in members) / len(members)
            total += len(members) / n * abs(accuracy - mean_confidence)
    return total


def predictions_of(confidence, correct, num_classes: int = 4, split: str = "test") -> Predictions:
    """Predictions with the given confidences, right where `correct` (wrong: the next class)."""
    confidence = np.asarray(confidence, dtype=np.float32)
    labels = np.arange(len(confidence), dtype=np.int64) % num_classes
    predicted = np.where(correct, labels, (labels + 1) % num_classes)
    return Predictions(
        checkpoint="best.pt",
        digest="0" * 64,
        class_names=[f"class{k}" for k in range(num_classes)],
        labels=labels,
        predicted=predicted,
        confidence=confidence,
        p_true=np.where(correct, confidence, 0.0).astype(np.float32),
        image_index=np.zeros(0, np.int64),
        images=np.zeros((0, 1, 4, 4), np.uint8),
        split=split,
    )


# Four bins, (0, .25], (.25, .5], (.5, .75], (.75, 1]. 0.5 sits on an edge (bin 1, not 2),
# 1.0 is in the last bin, bin 2 is empty; bin 1 is under-confident by 0.05 (2 images), bin 3
# over-confident by 0.9 - 0.5 (6 images). ECE = 2/8 * 0.05 + 6/8 * 0.4 = 0.3125. The near
# misses give other numbers: 0.5 in bin 2 (bins closed on the left) 0.4375; the plain mean of
# the two gaps 0.225; the signed sum 0.2875; the two 1.0s left out 0.1875 (or an IndexError).
NEAR_MISSES = [  # (confidence, right)
    (0.5, False), (0.4, True),  # bin 1
    (1.0, True), (1.0, False), (0.8, True), (0.9, True), (0.8, False), (0.9, False),  # bin 3
]  # fmt: skip


def test_ece_on_edges_empty_bins_and_weights_is_the_hand_computed_number():
    confidence, correct = (np.array(column) for column in zip(*NEAR_MISSES, strict=True))
    confidence = confidence.astype(np.float32)  # as Predictions holds it
    result = measure_calibration(confidence, correct, num_bins=4)
    assert result.bin_counts.tolist() == [0, 2, 0, 6]
    assert result.ece == pytest.approx(0.3125, abs=1e-6)
    assert result.ece == pytest.approx(reference_ece(confidence, correct, 4), abs=1e-9)
    assert result.mce == pytest.approx(0.4, abs=1e-6)
    assert np.isnan(result.bin_accuracy[[0, 2]]).all()  # empty: no accuracy, not 0
    assert result.bin_confidence[1] == pytest.approx(0.45)
    assert result.bin_accuracy[3] == pytest.approx(0.5)
    assert result.confidence_when_right == pytest.approx((0.4 + 1 + 0.8 + 0.9) / 4)
    assert result.confidence_when_wrong == pytest.approx((0.5 + 1 + 0.8 + 0.9) / 4)
    assert result.overconfidence == pytest.approx((0.9 + 5.4) / 8 - 4 / 8)


def test_a_confidence_on_an_edge_falls_in_the_bin_below_and_1_in_the_last():
    edges = bin_edges(4)
    assert edges.tolist() == [0, 0.25, 0.5, 0.75, 1]  # from 0, not from 1/classes
    on_edges = np.array([0, 0.25, 0.5, 0.75, 1.0], dtype=np.float32)
    assert bin_of(on_edges, edges).tolist() == [0, 0, 1, 2, 3]
    assert bin_of(np.array([0.2500001, 1.0000001, -1e-7]), edges).tolist() == [1, 3, 0]
    # float32 0.2 is a little above 3/15: compared exactly, it lies in the bin above that edge
    assert bin_of(np.array([0.2], dtype=np.float32), bin_edges()).tolist() == [3]
    assert len(bin_edges()) == 16


def test_ece_of_many_predictions_matches_the_loop_over_fifteen_bins():
    rng = np.random.default_rng(7)
    confidence = rng.uniform(0.1, 1.0, 3000).astype(np.float32)
    confidence[:40] = 1.0  # saturated softmax
    correct = rng.random(3000) < confidence**2  # over-confident, more so at low confidence
    result = calibration_of(predictions_of(confidence, correct, num_classes=10))
    assert result.ece == pytest.approx(reference_ece(confidence, correct, 15), abs=1e-9)
    assert result.bin_counts.sum() == 3000 and result.bin_counts[0] == 0  # below 1/15: none
    assert result.right == int(correct.sum()) and result.num_classes == 10


def test_a_calibrated_model_has_ece_near_0_and_an_overconfident_one_its_gap():
    # per confidence c, exactly a share c of the predictions is right: calibrated exactly
    groups = [(0.6, 10, 6), (0.8, 5, 4), (1.0, 3, 3)]
    confidence = np.concatenate([np.full(n, c) for c, n, _ in groups])
    correct = np.concatenate([np.arange(n) < right for _, n, right in groups])
    assert measure_calibration(confidence, correct).ece == pytest.approx(0, abs=1e-12)
    shifted = measure_calibration(confidence - 0.1, correct)  # under-confident by 0.1
    assert shifted.ece == pytest.approx(0.1) and shifted.overconfidence == pytest.approx(-0.1)
    assert "under-confident" in calibration_text(shifted, "test")
    # drawn at random: right with probability c; then told 0.1 surer than it is
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.3, 0.9, 100_000)
    drawn = rng.random(truth.shape) < truth
    assert measure_calibration(truth, drawn).ece < 0.01
    overconfident = measure_calibration(truth + 0.1, drawn)
    assert overconfident.ece == pytest.approx(0.1, abs=0.01)
    assert "over-confident" in calibration_text(overconfident, "test")


def test_all_right_all_wrong_and_bad_bins():
    all_right = measure_calibration(np.array([0.9, 0.7]), np.array([True, True]))
    assert all_right.ece == pytest.approx(0.2) and np.isnan(all_right.confidence_when_wrong)
    assert "it made no mistake" in calibration_text(all_right, "test")
    all_wrong = measure_calibration(np.array([0.9, 0.7]), np.array([False, False]))
    assert all_wrong.ece == pytest.approx(0.8) and np.isnan(all_wrong.confidence_when_right)
    assert "never right" in calibration_text(all_wrong, "test")
    nothing = measure_calibration(np.zeros(0), np.zeros(0, bool))
    assert np.isnan(nothing.ece) and "no test images" in calibration_text(nothing, "test")
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="calibration bins"):
            bin_edges(bad)


def png_size(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def test_figure_renders_at_its_pixel_size_titled_with_the_ece():
    from cnnlab.figures import render_png

    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.25, 1.0, 500)
    typical = predictions_of(confidence, rng.random(500) < confidence)
    figure = calibration_figure(typical)
    assert f"ECE {calibration_of(typical).ece:.4f}" in figure.get_suptitle()
    assert png_size(render_png(figure)) == FIGURE_PIXELS
    # no mistake at all: built here; the all-wrong test below draws the mirror case
    perfect = calibration_figure(predictions_of(np.ones(8), np.ones(8, bool)))
    assert "ECE 0.0000" in perfect.get_suptitle()


def test_validation_split_is_named_and_a_split_all_wrong_is_drawn():
    section = run_report.calibration(predictions_of([0.6, 0.9], [False, False], split="val"))
    assert "on the 2 validation images" in section and " test " not in section
    assert "never right" in section and png_size(embedded_png(section)) == FIGURE_PIXELS


def embedded_png(html_text: str) -> bytes:
    return base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', html_text)[1])


def test_report_has_the_calibration_section_of_its_predictions(tiny_run, tmp_path, monkeypatch):
    # the plots are test_report.py's: leaving them out here saves two seconds of drawing
    monkeypatch.setattr(run_report, "plots", lambda record, predictions, device: "")
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    text = run_report.write_report(run).read_text()
    ids = re.findall(r'<section id="([^"]+)"', text)
    assert ids == list(run_report.SECTIONS)
    assert ids.index("calibration") == ids.index("per-class-accuracy") + 1
    section = text[text.index('<section id="calibration">') :]
    section = section[: section.index("</section>")]
    result = calibration_of(load_predictions(run))
    assert f"ECE) on the 128 test images: {result.ece:.4f}" in section
    # tiny_run's 16 mislabelled test images are predicted as surely as the rest
    assert result.images - result.right == 16 and result.overconfidence > 0.1
    assert "over-confident" in section
    assert png_size(embedded_png(section)) == FIGURE_PIXELS
