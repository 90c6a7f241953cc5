"""A run's curves per epoch, drawn from its metrics rows (metrics.jsonl): loss, accuracy and the
learning rate. The report and `cnnlab plot` draw them from a finished run, a notebook redraws
them live after each epoch (training/notebook.py), so they live here, below both. Like every
figure cnnlab draws, they are matplotlib Figures made without pyplot (figures.py says why).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100  # pixels per inch: axis text at FONT points is 11 pixels high
FONT = 8  # points
CURVES_SIZE = (10.0, 3.0)  # inches: three panels, loss, accuracy, learning rate
TRAIN, VAL, TEST = "tab:blue", "tab:purple", "tab:orange"


def curves_figure(metrics: list[dict[str, Any]], epochs: int | None = None) -> Figure:
    """Per epoch: train, validation (when held out) and test loss and accuracy (d2l's Animator
    shows train loss, train accuracy and test accuracy), and the learning rate. An epoch that
    was not evaluated has no test point (a run trained with --no-eval-test: no test line);
    markers show every point, so a one-epoch run still shows something. The accuracy panel's
    title names best.pt's epoch and the split that chose it. A learning rate that never changed
    is one line of text under the panels instead of a panel of its own. `epochs`: the x axis
    runs to this epoch (a run still training, redrawn as its curves grow into the frame, as
    d2l's Animator does); by default to the last row's."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=CURVES_SIZE, dpi=DPI, layout="constrained")
    rates = [value for _, value in points(metrics, "lr")]
    constant = bool(rates) and min(rates) == max(rates)
    loss, accuracy, *rest = fig.subplots(1, 2 if constant else 3)
    splits = (("train", TRAIN), ("val", VAL), ("test", TEST))
    lines(loss, metrics, tuple((f"{name}_loss", name, colour) for name, colour in splits), "loss")
    lines(
        accuracy,
        metrics,
        tuple((f"{name}_accuracy", name, colour) for name, colour in splits),
        "accuracy",
    )
    chooser = "val" if any("val_accuracy" in row for row in metrics) else "test"
    best = best_epoch(metrics, f"{chooser}_accuracy")
    if best is not None:
        title = f"accuracy (best {chooser} {best[1]:.4f}, epoch {best[0]})"
        accuracy.set_title(title, fontsize=FONT + 1)
    if epochs is not None:
        for ax in fig.axes:
            ax.set_xlim(0.5, max(epochs, 1) + 0.5)
    if constant:  # a flat line would take a third of the figure to say one number
        fig.supxlabel(f"learning rate: {rates[0]:g} throughout", fontsize=FONT + 1, color="0.3")
        return fig
    (lr,) = rest
    lines(lr, metrics, (("lr", None, "tab:green"),), "learning rate (at the epoch's last step)")
    if rates and min(rates) > 0 and max(rates) > 10 * min(rates):
        lr.set_yscale("log")  # a schedule spanning decades is flat on a linear axis
    return fig


def lines(ax: Any, metrics: list[dict[str, Any]], series: tuple, title: str) -> None:
    """One line per (key, label, colour) over the epochs that recorded it."""
    from matplotlib.ticker import MaxNLocator

    drawn: list[float] = []
    for key, label, colour in series:
        found = points(metrics, key)
        if found:
            epochs, values = zip(*found, strict=True)
            ax.plot(epochs, values, marker="o", markersize=3, color=colour, label=label)
            drawn += values
    if not drawn:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    elif sum(label is not None for _, label, _ in series) > 1:
        ax.legend(fontsize=FONT - 1)
    ax.set_title(title, fontsize=FONT + 1)
    ax.set_xlabel("epoch", fontsize=FONT)
    # no epoch 1.5; and one tick, not 0.945 to 1.050, when there is only one epoch to show
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3)


def points(metrics: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(epoch, value) of every epoch that recorded a finite `key`."""
    return [
        (row["epoch"], float(row[key]))
        for row in metrics
        if isinstance(row.get(key), int | float) and math.isfinite(row[key])
    ]


def best_epoch(metrics: list[dict[str, Any]], key: str) -> tuple[int, float] | None:
    """(epoch, `key`) of the best evaluated epoch (the first of equals, as best.pt)."""
    scored = [(row["epoch"], row.get(key)) for row in metrics]
    scored = [(epoch, value) for epoch, value in scored if value is not None]
    return max(scored, key=lambda pair: pair[1]) if scored else None
