"""How sure a model is when it is right and when it is wrong: reliability and calibration error.

A model that says "90%" should be right about 90% of the time it says so (Guo et al. 2017,
"On Calibration of Modern Neural Networks"). The predictions' confidences (the probability of
the predicted class) are put into equal-width bins; per bin, the accuracy is set against the
mean confidence, and the expected calibration error weighs each bin's gap by its share of the
images:

    ECE = sum over bins m of (n_m / N) * |accuracy_m - confidence_m|

    result = calibration_of(predictions)          # a Calibration: per bin and overall
    result.ece, result.mce                        # expected and maximum calibration error
    calibration_figure(predictions, result)       # the reliability diagram, right vs wrong

The bins, made explicit because a near miss changes the number:
- K equal-width bins over [0, 1] (BINS = 15, as Guo et al.); bin m holds (m/K, (m+1)/K], closed
  on the right as in Guo et al.'s code (and torchmetrics' `torch.bucketize`), so a confidence on
  an inner edge falls in the lower bin and a confidence of exactly 1.0 (a saturated softmax) in
  the last; the first bin also holds 0. The float32 confidence is compared with float64 edges
  exactly: float32 0.2 is a little above 3/15, so it falls in the bin above that edge (against
  torchmetrics' float32 edges it would sit on the edge, in the bin below).
- The first bin starts at 0, not 1/C for C classes, though the top-class probability is never
  below 1/C: the same edges for every data set keep the ECE comparable with published numbers
  and across runs; the bins below 1/C are simply empty (the diagram greys that range out).
- An empty bin has no accuracy or confidence (NaN): it adds nothing to the ECE and is left out of
  the maximum calibration error (MCE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnlab.errors import ConfigError
from cnnlab.report.plots import DPI, FONT, TRAIN, WRONG
from cnnlab.report.predictions import Predictions

BINS = 15  # equal-width confidence bins, as Guo et al. 2017
CALIBRATION_SIZE = (10.0, 4.0)  # inches: the reliability diagram over its counts; right vs wrong
MAX_COUNT_LABELS = 20  # bins up to which each bin's count is written above its bar
RIGHT_COLOUR = TRAIN  # bars of right predictions (and of accuracy); wrong ones in WRONG
CALIBRATED_WITHIN = 0.005  # |mean confidence - accuracy| below which neither over nor under


@dataclass(frozen=True)
class Calibration:
    """Reliability statistics of N predictions over `edges`' bins; NaN where there is nothing
    to average (an empty bin, no right or no wrong prediction, no prediction at all)."""

    edges: np.ndarray  # (K + 1,) float64: 0, 1/K, ..., 1
    bin_counts: np.ndarray  # (K,) int64: predictions per bin
    bin_confidence: np.ndarray  # (K,) float64: their mean confidence
    bin_accuracy: np.ndarray  # (K,) float64: the share of them that is right
    ece: float  # expected calibration error: sum of (n_m / N) |accuracy_m - confidence_m|
    mce: float  # maximum calibration error: the largest gap of a non-empty bin
    images: int  # N
    right: int  # predictions that are right
    average_confidence: float  # over all N
    confidence_when_right: float
    confidence_when_wrong: float
    num_classes: int | None = None  # C: no top-class probability is below 1/C

    @property
    def accuracy(self) -> float:
        return self.right / self.images if self.images else float("nan")

    @property
    def overconfidence(self) -> float:
        """Mean confidence minus accuracy: > 0 over-confident, < 0 under-confident. It is the
        ECE's sum without the absolute value, so gaps of opposite sign cancel in it."""
        return self.average_confidence - self.accuracy


def bin_edges(num_bins: int = BINS) -> np.ndarray:
    """(num_bins + 1,) equal-width edges from 0 to 1."""
    if isinstance(num_bins, bool) or not isinstance(num_bins, int | np.integer) or num_bins < 1:
        raise ConfigError(
            f"the number of calibration bins must be a whole number ≥ 1, not {num_bins!r}"
        )
    return np.linspace(0.0, 1.0, int(num_bins) + 1)


def bin_of(confidence: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(N,) the bin of each confidence: bin m holds (edges[m], edges[m + 1]], the first bin also
    0 (and, against rounding, anything outside [0, 1] goes to the nearest end bin)."""
    # side="left" gives i with edges[i - 1] < c <= edges[i]: a confidence on an edge goes down
    index = np.searchsorted(edges, np.asarray(confidence, dtype=np.float64), side="left") - 1
    return np.clip(index, 0, len(edges) - 2)


def measure_calibration(
    confidence: np.ndarray,
    correct: np.ndarray,
    *,
    num_bins: int = BINS,
    num_classes: int | None = None,
) -> Calibration:
    """The reliability statistics of predictions made with `confidence` (N,) (the probability
    of the predicted class), of which `correct` (N,) bool are right."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ConfigError(
            f"confidence and correct must be two (N,) arrays of one length, not "
            f"{confidence.shape} and {correct.shape}"
        )
    edges = bin_edges(num_bins)
    bins = bin_of(confidence, edges)
    counts = np.bincount(bins, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty bin: 0 / 0 = NaN
        bin_confidence = np.bincount(bins, weights=confidence, minlength=num_bins) / counts
        bin_accuracy = np.bincount(bins, weights=correct, minlength=num_bins) / counts
    filled = counts > 0
    gaps = np.abs(bin_accuracy[filled] - bin_confidence[filled])
    images = len(confidence)
    return Calibration(
        edges=edges,
        bin_counts=counts,
        bin_confidence=bin_confidence,
        bin_accuracy=bin_accuracy,
        ece=float(np.sum(counts[filled] / images * gaps)) if images else float("nan"),
        mce=float(gaps.max()) if len(gaps) else float("nan"),
        images=images,
        right=int(correct.sum()),
        average_confidence=_mean(confidence),
        confidence_when_right=_mean(confidence[correct]),
        confidence_when_wrong=_mean(confidence[~correct]),
        num_classes=num_classes,
    )


def calibration_of(predictions: Predictions, *, num_bins: int = BINS) -> Calibration:
    """The calibration of a run's predictions on their split (test, or validation)."""
    return measure_calibration(
        predictions.confidence,
        predictions.predicted == predictions.labels,
        num_bins=num_bins,
        num_classes=predictions.num_classes,
    )


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


# --- in words ---------------------------------------------------------------------------------


def calibration_text(result: Calibration, split: str) -> str:
    """A few plain sentences: the ECE, how sure the model was when right and when wrong, and
    whether it is over- or under-confident on the whole. `split`: "test" or "validation"."""
    if not result.images:
        return f"There are no {split} images, so there is nothing to calibrate."
    bins = len(result.bin_counts)
    text = (
        f"Expected calibration error (ECE) on the {result.images} {split} images: "
        f"{result.ece:.4f} ({bins} equal-width bins of confidence; 0 means that of the "
        f"predictions made with 80% confidence, 80% are right). Largest gap in one bin "
        f"(MCE): {result.mce:.4f}. "
    )
    text += _when_right_and_wrong(result)
    gap = result.overconfidence
    sure, right = _percent(result.average_confidence), _percent(result.accuracy)
    if gap > CALIBRATED_WITHIN:
        text += f"On the whole it is over-confident: on average {sure} sure, {right} right."
    elif gap < -CALIBRATED_WITHIN:
        text += f"On the whole it is under-confident: on average {sure} sure, {right} right."
    else:
        text += f"On the whole it is about as sure as it is right: {sure} sure, {right} right."
    return text


def _when_right_and_wrong(result: Calibration) -> str:
    """The sentence on how sure the model was when right and when wrong (or that it never was
    right, or never wrong)."""
    if result.right:
        right = (
            f"When right, the model was on average {_percent(result.confidence_when_right)} sure"
        )
    else:
        right = "The model was never right"
    if result.right < result.images:
        wrong = f"when wrong, {_percent(result.confidence_when_wrong)} sure"
    else:
        wrong = "it made no mistake"
    return f"{right}; {wrong}. "


def _percent(share: float) -> str:
    """A share in percent with one decimal ("97.3%"), but "over 99.9%" for one just under 1
    that would show as 100.0% (a model wrong at 99.96% was not sure beyond doubt)."""
    text = f"{share:.1%}"
    return "over 99.9%" if text == "100.0%" and share < 1 else text


# --- the figure -------------------------------------------------------------------------------


def calibration_figure(predictions: Predictions, result: Calibration | None = None) -> Figure:
    """Left, the reliability diagram (accuracy per confidence bin against the diagonal, each
    gap to the bin's mean confidence shaded) over the number of predictions per bin; right,
    the confidence of right and of wrong predictions, each as a share of its own kind (the
    mistakes are few: on one count axis they would not show). Titled with the ECE."""
    result = result if result is not None else calibration_of(predictions)
    fig = Figure(figsize=CALIBRATION_SIZE, dpi=DPI, layout="constrained")
    axes = fig.subplot_mosaic(
        [["diagram", "right_wrong"], ["counts", "right_wrong"]], height_ratios=(3, 1)
    )
    _reliability_diagram(axes["diagram"], result)
    _bin_counts(axes["counts"], result)
    correct = predictions.predicted == predictions.labels
    _right_and_wrong(axes["right_wrong"], result, predictions.confidence, correct)
    split = predictions.split_name
    fig.suptitle(
        f"calibration on {result.images} {split} images: ECE {result.ece:.4f}, "
        f"MCE {result.mce:.4f} ({len(result.bin_counts)} bins)",
        fontsize=FONT + 1,
    )
    return fig


def _reliability_diagram(ax: Any, result: Calibration) -> None:
    """Accuracy bars per bin; a hatched bar from each accuracy to the bin's mean confidence."""
    left, width = result.edges[:-1], np.diff(result.edges)
    filled = result.bin_counts > 0
    _impossible_range(ax, result.num_classes)
    accuracy, confidence = result.bin_accuracy[filled], result.bin_confidence[filled]
    bars = {"width": width[filled], "align": "edge"}
    ax.bar(left[filled], accuracy, color=RIGHT_COLOUR, edgecolor="white", label="accuracy", **bars)
    ax.bar(
        left[filled],
        confidence - accuracy,  # negative where the bin is under-confident: drawn downwards
        bottom=accuracy,
        color=WRONG,
        alpha=0.25,
        hatch="//",
        label="gap to the bin's mean confidence",
        **bars,
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.3", linewidth=1, label="perfectly calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.tick_params(labelsize=FONT, labelbottom=False)  # the counts below carry the x labels
    ax.set_ylabel("accuracy", fontsize=FONT)
    ax.set_title("reliability diagram", fontsize=FONT + 1)
    ax.legend(fontsize=FONT - 1, loc="upper left")
    ax.grid(alpha=0.3)


def _impossible_range(ax: Any, num_classes: int | None, label: str | None = "impossible") -> None:
    """Grey out confidences below 1/C: the top class of C classes always gets at least 1/C."""
    if num_classes and num_classes > 1:
        text = label and f"below 1/{num_classes} ({label})"
        ax.axvspan(0, 1 / num_classes, color="0.93", label=text)


def _bin_counts(ax: Any, result: Calibration) -> None:
    """How many predictions each bin holds (numbered while the bins are few enough)."""
    left, width = result.edges[:-1], np.diff(result.edges)
    ax.bar(left, result.bin_counts, width=width, align="edge", color="0.55", edgecolor="white")
    top = max(int(result.bin_counts.max(initial=0)), 1)
    ax.set_ylim(0, top * 1.45)  # room for the numbers above the highest bar
    if len(result.bin_counts) <= MAX_COUNT_LABELS:
        for x, w, count in zip(left, width, result.bin_counts, strict=True):
            if count:
                y = count + top * 0.05
                ax.text(x + w / 2, y, str(count), ha="center", va="bottom", fontsize=FONT - 2)
    ax.set_xlim(0, 1)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.tick_params(labelsize=FONT)
    ax.set_xlabel("confidence (probability of the predicted class)", fontsize=FONT)
    ax.set_ylabel("images", fontsize=FONT)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=3))  # no half an image


def _right_and_wrong(
    ax: Any, result: Calibration, confidence: np.ndarray, correct: np.ndarray
) -> None:
    """Per bin, the share of the right and of the wrong predictions made with that confidence,
    side by side, and each kind's mean confidence as a dashed line."""
    edges, width = result.edges, np.diff(result.edges)
    kinds = (
        (correct, "right", RIGHT_COLOUR, result.confidence_when_right, 0.0),
        (~correct, "wrong", WRONG, result.confidence_when_wrong, 0.5),
    )
    highest = 0.0
    for chosen, name, colour, mean, offset in kinds:
        counts = np.bincount(bin_of(confidence[chosen], edges), minlength=len(width))
        share = counts / max(int(chosen.sum()), 1)
        label = f"{name}: {int(chosen.sum())}"
        if chosen.any():
            label += f", on average {_percent(mean)} sure (dashed)"
            ax.axvline(mean, color=colour, linestyle="--", linewidth=1)
        left = edges[:-1] + offset * width
        ax.bar(left, share, width=width / 2, align="edge", color=colour, label=label)
        highest = max(highest, float(share.max()))
    _impossible_range(ax, result.num_classes, label=None)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, max(highest, 0.1) * 1.3)  # room for the legend above the bars
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.tick_params(labelsize=FONT)
    ax.set_xlabel("confidence (probability of the predicted class)", fontsize=FONT)
    ax.set_ylabel("share of the right (of the wrong) predictions", fontsize=FONT)
    ax.set_title("how sure it was when right and when wrong", fontsize=FONT + 1)
    ax.legend(fontsize=FONT - 1, loc="upper left")
    ax.grid(alpha=0.3)
