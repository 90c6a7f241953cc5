"""The pictures of a comparison: every run's curves overlaid (`plot_curves`, the PNG `out=` gets)
and one self-contained HTML page (`html_page`) of the table, the warnings, the curves and every
run. matplotlib is imported only when the curves are drawn.

A run trained with --no-eval-test measured no test accuracy: its validation accuracy is drawn
instead, dashed with hollow markers, and its row's legend entry and the panel's title say so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.report import html as H
from cnnlab.report.comparison import duration, last_measured_accuracy, setting

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cnnlab.report.comparison import Comparison
    from cnnlab.report.run_folder import RunRecord

DPI = 100
STYLES = ("-", "--", ":", "-.")  # after ten rows the colours come back with another line style
VALIDATION_LOOK = dict(linestyle="--", markerfacecolor="none")  # a run's val accuracy curve


def accuracy_key(run: RunRecord) -> str:
    """The accuracy drawn for a run: its test accuracy, else (--no-eval-test) its validation
    accuracy."""
    return "test_accuracy" if run.measured_test else "val_accuracy"


def accuracy_title(comparison: Comparison) -> str:
    """The accuracy panel's title: the accuracies it draws."""
    keys = {accuracy_key(run) for row in comparison.rows for run in row.runs}
    if keys == {"val_accuracy"}:
        return "validation accuracy (no test split measured)"
    if "val_accuracy" in keys:
        return "test accuracy (dashed: validation, runs without)"
    return "test accuracy"


def plot_curves(comparison: Comparison) -> Figure:
    """Test accuracy (validation accuracy for a run without: --no-eval-test) and train loss per
    epoch of every run, overlaid; one colour per row."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    colours = colormaps["tab10"].colors
    fig = Figure(figsize=(12, 4.2), dpi=DPI, layout="constrained")
    accuracy, loss = fig.subplots(1, 2)
    handles = []
    last_epoch = max(r["epoch"] for row in comparison.rows for run in row.runs for r in run.metrics)
    for i, row in enumerate(comparison.rows):
        colour, style = colours[i % len(colours)], STYLES[i // len(colours) % len(STYLES)]
        untested = sum(accuracy_key(run) == "val_accuracy" for run in row.runs)
        # what its dashed lines are
        drawn = "" if not untested else ", validation" if untested == row.n else ", dashed: val"
        for j, run in enumerate(row.runs):
            label = f"{row.label} (n={row.n}{drawn})" if j == 0 else None
            kw = dict(color=colour, linestyle=style, linewidth=1.4, alpha=0.85)
            key = accuracy_key(run)
            points = [(r["epoch"], r[key]) for r in run.metrics if r.get(key) is not None]
            marker = "o" if len(run.metrics) <= 30 else None
            # validation accuracy is not test accuracy: drawn apart, dashed with hollow markers
            look = {**kw, **VALIDATION_LOOK} if key == "val_accuracy" else kw
            if points:
                (line,) = accuracy.plot(*zip(*points, strict=True), marker=marker, ms=3, **look)
                if label:
                    line.set_label(label)
                    handles.append(line)
            losses = [(r["epoch"], r["train_loss"]) for r in run.metrics
                      if r.get("train_loss") is not None]  # fmt: skip
            if losses:
                loss.plot(*zip(*losses, strict=True), marker=marker, ms=3, **kw)
    for axes, title in ((accuracy, accuracy_title(comparison)), (loss, "train loss")):
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
        if last_epoch <= 1:  # one point per run: an axis of one whole epoch, not 0.96-1.04
            axes.set_xlim(0.5, 1.5)
            axes.set_xticks([1])
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    return fig


def html_page(comparison: Comparison, png: bytes) -> str:
    """One self-contained page: the table, the warnings, the curves, and every run."""
    rows = comparison.rows
    groups = {i: "group" for i in comparison.group_starts()}  # a rule above each data set
    table = H.table(comparison.header, comparison.cells(), comparison.numeric_columns(), groups)
    notes = "".join(H.paragraph(w, "warn") for w in comparison.warnings)
    runs_header = ["row", "run", "seed", "final test acc", "best.pt test acc", "best.pt val acc",
                   "epochs", "wall time", "started", "device", "folder"]  # fmt: skip
    runs_rows = [
        [
            row.label, run.name, setting(run.config.get("seed")),
            _accuracy(last_measured_accuracy(run)), _accuracy(run.best_accuracy),
            _accuracy(run.best_val_accuracy), len(run.metrics),
            duration(run.wall_seconds), run.started or "-", setting(run.info.get("device")),
            str(run.path),
        ]
        for row in rows
        for run in row.runs
    ]  # fmt: skip
    body = (
        H.section("Table", table + notes)
        + H.section("Curves", H.image(png, f"{accuracy_title(comparison)} and train loss per epoch",
                                      "one colour per row; every run of a row is drawn"))
        + H.section("Runs", H.table(runs_header, runs_rows, numeric=(2, 3, 4, 5, 6, 7)))
    )  # fmt: skip
    n_runs = sum(row.n for row in rows)
    title = f"Comparison of {n_runs} run{'s' if n_runs != 1 else ''}"
    plural = "s" if len(rows) != 1 else ""
    subtitle = f"{len(rows)} row{plural}: runs that differ only in seed are one row"
    return H.page(title, body, subtitle)


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
