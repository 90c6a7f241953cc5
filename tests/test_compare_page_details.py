"""The details of `cnnlab compare --html` (report/compare_page.py's html_page) and of a run folder
read back (report/run_folder.py): the page's title and subtitle in the singular and plural, its
three sections, the warnings under the table, the table of every run cell by cell (numbers
right-aligned, "-" where a run has no value), a run's notebook display (its facts and the
columns of its epochs) and the warning for a metrics.jsonl cut after one epoch; and the curves
of a comparison (plot_curves): the figure's size and panels, one legend entry per row outside the
panels, a colour per row (a line style more after the tenth), the lines' look, markers up to 30
epochs, the train loss panel, titles, grid and whole-epoch axes.

The runs are RunRecords made by hand (a config and a few epoch rows, as config.json and
metrics.jsonl hold them), and the page gets b"png" for its curves, so each test takes
milliseconds; test_compare.py and test_no_eval_test.py check pages and curves of trained runs.
These tests exist because docs/TESTING.md's mutation run showed these paths untested (survivors
of mutmut).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from cnnlab.report.compare_page import html_page, plot_curves
from cnnlab.report.comparison import Comparison, build_comparison
from cnnlab.report.run_folder import RunRecord, read_run

STARTED = "2025-03-01T10:00:00+01:00"
DEVICE = "cpu (Test CPU, 2 threads)"


def epoch(n: int, *, val: float | None = None, test: float | None = None) -> dict:
    """One metrics.jsonl row: 1.5 s per epoch, validation and test numbers where given."""
    row = {"epoch": n, "train_loss": 1.0 / n, "train_accuracy": 0.5, "epoch_seconds": 1.5}
    if val is not None:
        row.update(val_loss=0.6, val_accuracy=val)
    if test is not None:
        row.update(test_loss=0.5, test_accuracy=test)
    return row


def record(name: str, metrics: list[dict], *, seed: int = 0, val: bool = True, **config):
    """A RunRecord as read_run gives it: a folder `/runs/NAME` (never read), its config.json values
    (model, data set, 2 epochs, `config`) and when and where it ran (`val`: a validation split
    chose best.pt, and it was started on a known device; else an older folder without them)."""
    values = {"model": "mnist_cnn", "dataset": "npz:/data/shapes", "epochs": 2, "seed": seed}
    info = {"config": {**values, "name": name, **config}}
    if val:
        info.update(selection="val", started=STARTED, device=DEVICE)
    return RunRecord(Path("/runs") / name, info, metrics)


@pytest.fixture
def three_runs() -> list[RunRecord]:
    """Seeds 0 and 1 of `a` (best.pt chosen on validation at epoch 1, the final accuracy at
    epoch 2), and `b`, another setting without a validation split that stopped after 1 of
    its 2 epochs and whose config.json says neither when nor where it ran."""
    a0 = record("a-seed0", [epoch(1, val=0.95, test=0.75), epoch(2, val=0.9, test=0.8125)])
    a1 = record("a-seed1", [epoch(1, val=0.9, test=0.8), epoch(2, val=0.92, test=0.875)], seed=1)
    b = record("b", [epoch(1, test=0.5)], val=False, weight_decay=0.01)
    return [b, a1, a0]  # in no order: the table sorts them


def section(page: str, anchor: str) -> str:
    """The inside of the page's <section id=anchor>, its <h2> included."""
    [body] = re.findall(rf'<section id="{anchor}">\n(.*?)\n</section>', page, re.DOTALL)
    return body


def table_rows(body: str) -> list[list[str]]:
    """Each row of the (first) table in `body`: its cells' text, `>` marking a right-aligned
    (numeric) cell."""
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body)
    cell = r"<(th|td)( class=num)?>(.*?)</\1>"
    return [[(">" if num else "") + html.unescape(text) for _, num, text in
             re.findall(cell, row)] for row in rows]  # fmt: skip


def test_the_page_of_three_runs_in_two_rows_is_titled_in_the_plural(three_runs):
    page = html_page(build_comparison(three_runs), b"png")
    assert "<title>Comparison of 3 runs</title>" in page
    assert "<h1>Comparison of 3 runs</h1>" in page
    assert '<p class="sub">2 rows: runs that differ only in seed are one row</p>' in page


def test_the_page_of_one_run_is_titled_in_the_singular(three_runs):
    page = html_page(build_comparison(three_runs[:1]), b"png")
    assert "<title>Comparison of 1 run</title>" in page
    assert '<p class="sub">1 row: runs that differ only in seed are one row</p>' in page


def test_the_page_has_its_three_sections_in_order(three_runs):
    page = html_page(build_comparison(three_runs), b"png")
    titles = re.findall(r'<section id="([a-z]+)">\n<h2>(.*?)</h2>', page)
    assert titles == [("table", "Table"), ("curves", "Curves"), ("runs", "Runs")]


def test_the_curves_are_described_and_captioned(three_runs):
    curves = section(html_page(build_comparison(three_runs), b"png"), "curves")
    # b"png" in base64: the image is the one given, described by what it draws
    alt = "test accuracy and train loss per epoch"
    assert f'<img src="data:image/png;base64,cG5n" alt="{alt}">' in curves
    assert "<figcaption>one colour per row; every run of a row is drawn</figcaption>" in curves


def test_every_warning_is_its_own_paragraph_under_the_table(three_runs):
    comparison = build_comparison(three_runs)
    single, stopped = comparison.warnings
    assert single.startswith("single run (b):")
    assert stopped.startswith("b stopped after 1 of 2 epochs;")
    table = section(html_page(comparison, b"png"), "table")
    notes = table.split("</table></div>\n", 1)[1]  # what follows the table, nothing between
    assert notes == (
        f'<p class="warn">{html.escape(single)}</p>\n<p class="warn">{html.escape(stopped)}</p>\n'
    )


def test_the_runs_table_shows_every_run_cell_by_cell(three_runs):
    runs = section(html_page(build_comparison(three_runs), b"png"), "runs")
    # rows in the table's order (a, then b), a's runs by seed; the numbers right-aligned;
    # the final test accuracy is the last epoch's, best.pt's are those of the best val epoch
    assert table_rows(runs) == [
        ["row", "run", ">seed", ">final test acc", ">best.pt test acc", ">best.pt val acc",
         ">epochs", ">wall time", "started", "device", "folder"],
        ["a", "a-seed0", ">0", ">0.8125", ">0.7500", ">0.9500", ">2", ">3.0 s", STARTED,
         DEVICE, "/runs/a-seed0"],
        ["a", "a-seed1", ">1", ">0.8750", ">0.8750", ">0.9200", ">2", ">3.0 s", STARTED,
         DEVICE, "/runs/a-seed1"],
        # no validation split, no start time, no device recorded: "-"
        ["b", "b", ">0", ">0.5000", ">0.5000", ">-", ">1", ">1.5 s", "-", "-", "/runs/b"],
    ]  # fmt: skip


# --- a run folder read back -------------------------------------------------------------------


def no_curves(patch: pytest.MonkeyPatch) -> None:
    """A notebook display without its curves, neither drawn nor encoded (matplotlib is not even
    imported): test_notebook.py checks them; the tables around them are what is read here."""
    from cnnlab import curves, figures

    patch.setattr(curves, "curves_figure", lambda rows, epochs=None: None)
    patch.setattr(figures, "render_png", lambda figure: b"png")


ALL_COLUMNS = ["epoch", "train loss", "train accuracy", "validation loss", "validation accuracy",
               "test loss", "test accuracy", "examples/s", "seconds", "learning rate"]  # fmt: skip
NO_VAL = [c for c in ALL_COLUMNS if not c.startswith("validation")]
NO_TEST = [c for c in ALL_COLUMNS if not c.startswith("test")]


@pytest.mark.parametrize(
    ("val", "eval_test", "tested", "columns"),
    [
        (True, True, True, ALL_COLUMNS),
        (False, True, True, NO_VAL),  # best.pt chosen on the test split: no validation split
        (True, False, False, NO_TEST),  # --no-eval-test: no test numbers
        (True, False, True, ALL_COLUMNS),  # --no-eval-test, resumed with --eval-test
    ],
)
def test_a_runs_notebook_display_shows_the_epoch_columns_it_has(
    val, eval_test, tested, columns, monkeypatch
):
    no_curves(monkeypatch)
    metrics = [epoch(n, val=0.9 if val else None, test=0.8 if tested else None) for n in (1, 2)]
    run = record("r", metrics, val=val, eval_test=eval_test)
    head = re.search(r"<thead>(.*?)</thead>", run._repr_html_()).group(1)
    assert re.findall(r"<th[^>]*>(.*?)</th>", head) == columns


def test_a_runs_notebook_display_begins_with_its_folder_model_and_epochs(monkeypatch):
    no_curves(monkeypatch)
    run = record("r", [epoch(1, test=0.8)], epochs=5)  # stopped after 1 of 5
    facts = re.match(r"<table><tbody>(.*?)</tbody></table>", run._repr_html_()).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", facts)
    assert cells == [
        "run folder", "/runs/r", "model", "mnist_cnn on npz:/data/shapes", "epochs", "1 of 5"
    ]  # fmt: skip


def test_a_metrics_file_cut_after_one_epoch_reads_that_epoch_in_the_singular(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"config": {"epochs": 2}}))
    (tmp_path / "metrics.jsonl").write_text(json.dumps(epoch(1)) + '\n{"epoch": 2, "train_lo')
    run = read_run(tmp_path, partial=True)
    assert [row["epoch"] for row in run.metrics] == [1]
    assert run.warnings == [
        f"{tmp_path / 'metrics.jsonl'} line 2 is not a complete JSON row (cut short by a kill "
        "while it was written); read the 1 epoch before it"
    ]


# --- the curves of a comparison (plot_curves) -------------------------------------------------
# Drawn from hand-made runs too: building a figure takes milliseconds (only the legend's place
# needs it laid out, once); test_no_eval_test.py checks the curves of trained runs.


@pytest.fixture(scope="module")
def mixed() -> Comparison:
    """Two rows of 2-epoch runs: `a`, a run measured on the test split and a --no-eval-test run
    (its validation accuracy drawn, dashed), and `b`, one tested run."""
    a0 = record("a-seed0", [epoch(1, val=0.8, test=0.7), epoch(2, val=0.85, test=0.75)])
    a1 = record("a-seed1", [epoch(1, val=0.6), epoch(2, val=0.65)], seed=1, eval_test=False)
    b = record("b", [epoch(1, test=0.5), epoch(2, test=0.55)], lr=0.1)
    return build_comparison([b, a1, a0])


@pytest.fixture(scope="module")
def mixed_figure(mixed):
    return plot_curves(mixed)


def rgb(colour) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(colour)


def test_the_curves_are_two_panels_side_by_side_of_a_fixed_size(mixed_figure):
    # 1200 × 420 pixels, accuracy on the left, loss on the right, at the same height
    assert tuple(mixed_figure.get_size_inches()) == (12, 4.2)
    assert mixed_figure.dpi == 100
    accuracy, loss = mixed_figure.axes
    assert accuracy.get_subplotspec().get_geometry() == (1, 2, 0, 0)
    assert loss.get_subplotspec().get_geometry() == (1, 2, 1, 1)


def test_the_curves_keep_their_pixel_size_under_a_users_matplotlibrc(mixed):
    # the PNG is drawn at the figure's dpi: a matplotlibrc of 72 dpi must not shrink it
    import matplotlib

    with matplotlib.rc_context({"figure.dpi": 72}):
        assert plot_curves(mixed).dpi == 100


def test_the_legend_names_each_row_once_and_what_its_dashed_lines_are(mixed_figure):
    # a row tested in part says its dashed lines are validation; one entry per row, not per run
    labels = [text.get_text() for text in mixed_figure.legends[0].get_texts()]
    assert labels == ["a (n=2, dashed: val)", "b (n=1)"]


def test_the_legend_is_small_frameless_and_outside_the_panels(mixed_figure):
    legend = mixed_figure.legends[0]
    assert [text.get_fontsize() for text in legend.get_texts()] == [8, 8]
    assert legend.get_frame_on() is False
    # laid out, it sits right of the loss panel, covering no curve
    mixed_figure.draw_without_rendering()
    loss = mixed_figure.axes[1]
    assert legend.get_window_extent().x0 >= loss.get_window_extent().x1


def test_every_curve_of_a_row_has_its_colour_in_both_panels(mixed, mixed_figure):
    from matplotlib import colormaps

    tab10 = colormaps["tab10"].colors
    accuracy, loss = mixed_figure.axes
    # a's two runs, then b's: each row one colour, whatever the panel
    expected = [rgb(tab10[0]), rgb(tab10[0]), rgb(tab10[1])]
    assert [rgb(line.get_color()) for line in accuracy.get_lines()] == expected
    assert [rgb(line.get_color()) for line in loss.get_lines()] == expected


def test_the_curves_are_thin_translucent_lines_with_small_round_markers(mixed_figure):
    for axes in mixed_figure.axes:
        for line in axes.get_lines():
            assert (line.get_linewidth(), line.get_alpha()) == (1.4, 0.85)
            assert (line.get_marker(), line.get_markersize()) == ("o", 3)
        assert [line.get_linestyle() for line in axes.get_lines()] == (
            ["-", "--", "-"] if axes is mixed_figure.axes[0] else ["-", "-", "-"]
        )  # only the accuracy panel dashes a run's validation accuracy


def test_the_loss_panel_draws_every_runs_train_loss_per_epoch(mixed_figure):
    loss = mixed_figure.axes[1]
    # epoch() writes a train loss of 1/epoch: one curve per run, its points each epoch's
    assert [list(line.get_xdata()) for line in loss.get_lines()] == [[1, 2]] * 3
    assert [list(line.get_ydata()) for line in loss.get_lines()] == [[1.0, 0.5]] * 3


def test_the_panels_are_titled_labelled_and_gridded(mixed_figure):
    accuracy, loss = mixed_figure.axes
    assert accuracy.get_title() == "test accuracy (dashed: validation, runs without)"
    assert loss.get_title() == "train loss"
    for axes in (accuracy, loss):
        assert axes.get_xlabel() == "epoch"
        grid = axes.xaxis.get_gridlines() + axes.yaxis.get_gridlines()
        assert all(line.get_visible() and line.get_alpha() == 0.3 for line in grid)


def test_the_epoch_axis_of_two_epochs_has_whole_ticks_over_the_data(mixed_figure):
    for axes in mixed_figure.axes:
        low, high = axes.get_xlim()
        assert low < 1 and high > 2  # both epochs shown, no axis of one epoch
        # epochs are whole: no tick at 1.2 or 1.5
        assert [tick for tick in axes.get_xticks() if low <= tick <= high] == [1, 2]


def test_the_epoch_axis_of_one_epoch_is_one_whole_epoch_wide():
    only = build_comparison([record("a", [epoch(1, test=0.5)])])
    for axes in plot_curves(only).axes:
        # not matplotlib's 0.96-1.04 around the single point
        assert axes.get_xlim() == (0.5, 1.5)
        assert list(axes.get_xticks()) == [1]


def test_rows_after_the_tenth_change_line_style_and_long_runs_lose_their_markers():
    # eleven settings (lr) of one run each; two of them long: 30 epochs keep their markers, 31
    # would be a blur of them
    lengths = {0.01: 30, 0.02: 31}
    runs = [
        record(f"r{k}", [epoch(n, test=0.5) for n in range(1, lengths.get(lr, 1) + 1)], lr=lr)
        for k, lr in enumerate([0.01 * (k + 1) for k in range(11)])
    ]
    comparison = build_comparison(runs)
    assert len(comparison.rows) == 11
    for axes in plot_curves(comparison).axes:
        lines = axes.get_lines()
        # one curve per row, in the rows' order: the eleventh row has the first's colour, dashed
        assert [line.get_linestyle() for line in lines] == ["-"] * 10 + ["--"]
        assert rgb(lines[10].get_color()) == rgb(lines[0].get_color())
        markers = {
            len(row.runs[0].metrics): line.get_marker()
            for row, line in zip(comparison.rows, lines, strict=True)
        }
        assert (markers[1], markers[30], markers[31]) == ("o", "o", "None")
