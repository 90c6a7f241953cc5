"""cnnlab in a notebook without a kernel: the progress "notebook" mode redraws one output area
(IPython's display handles, recorded here), `auto` picks it only in a Jupyter kernel, and the
objects a learner looks at have a rich display. tests/test_tutorials.py runs a real kernel."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from cnnlab.training.notebook import in_notebook
from cnnlab.training.outputs import Progress, format_row

pytest.importorskip("IPython")


class Handle:
    """What IPython's display(..., display_id=True) returns, remembering every update."""

    def __init__(self, first):
        self.shown = [first.data]

    def update(self, obj):
        self.shown.append(obj.data)


@pytest.fixture
def handles(monkeypatch) -> list[Handle]:
    import IPython.display

    made: list[Handle] = []

    def display(obj, display_id=False):
        assert display_id is True  # every area is updated in place, never shown twice
        made.append(Handle(obj))
        return made[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    return made


class Sums:
    def __init__(self, seen, loss_sum, correct):
        self.seen, self.loss_sum, self.correct = seen, loss_sum, correct


def test_in_notebook_only_in_a_jupyter_kernel(monkeypatch):
    fake = types.ModuleType("IPython")
    for name, expected in (("ZMQInteractiveShell", True), ("TerminalInteractiveShell", False)):
        shell = type(name, (), {})()
        fake.get_ipython = lambda shell=shell: shell
        monkeypatch.setitem(sys.modules, "IPython", fake)
        assert in_notebook() is expected
    fake.get_ipython = lambda: None  # IPython imported, but no shell running
    assert in_notebook() is False
    monkeypatch.delitem(sys.modules, "IPython")
    assert in_notebook() is False
    monkeypatch.setitem(sys.modules, "IPython", fake)
    fake.get_ipython = lambda: type("ZMQInteractiveShell", (), {})()
    assert Progress("auto", 2).mode == "notebook"
    assert Progress("lines", 2).mode == "lines"  # asked for: kept


def test_the_notebook_mode_redraws_one_bar_and_one_board(handles, capsys):
    progress = Progress("notebook", 2, has_val=False, has_test=True)
    now = [0.0]
    progress.clock = lambda: now[0]
    rows = []
    for epoch in range(2):
        progress.start_epoch(epoch, 4)
        for step in range(4):
            now[0] += 0.3  # the bar's running figures are redrawn every 0.5 s at most
            progress.advance(Sums(8 * (step + 1), 4.0 * (step + 1), 6 * (step + 1)))
        row = {"epoch": epoch + 1, "train_loss": 0.5, "train_accuracy": 0.75,
               "test_loss": 0.6, "test_accuracy": 0.7 + epoch / 10, "lr": 0.1}  # fmt: skip
        rows.append(row)
        progress.end_epoch(row)
    progress.message("run directory: runs/x")
    progress.close()
    assert capsys.readouterr().out == ""  # nothing printed: no line per epoch
    assert len(handles) == 2  # made once, on the first epoch
    bar, board = handles
    texts = [str(html) for html in bar.shown]
    assert texts[0] == "" and texts[-1] == ""  # empty before the first epoch and at the end
    assert 'value="0" max="4"' in texts[1] and "epoch 1/2 0/4" in texts[1]
    assert any("epoch 2/2" in text and "loss 0.500 acc 0.750" in text for text in texts)
    assert len(texts) == 1 + 2 * (1 + 2) + 1  # per epoch: its start, 2 refreshes of 4 steps
    drawn = [str(html) for html in board.shown[1:]]
    assert len(drawn) == 3  # after each epoch, and the message
    for k, html in enumerate(drawn[:2]):
        assert html.count('<img src="data:image/png;base64,') == 1
        assert len(re.findall(r"<tr>", html.split("<tbody>")[-1])) == k + 1
        assert format(rows[k]["test_accuracy"], ".4f") in html
    assert drawn[2].startswith(drawn[1]) and "<pre>run directory: runs/x</pre>" in drawn[2]


def test_other_modes_print_as_before(handles, capsys):
    progress = Progress("lines", 1)
    progress.start_epoch(0, 1)
    progress.advance()
    progress.end_epoch({"epoch": 1, "train_loss": 0.5})
    out = capsys.readouterr().out.splitlines()
    assert out[1] == format_row({"epoch": 1, "train_loss": 0.5}, progress.columns)
    assert handles == []


@pytest.fixture(scope="module")
def run(tiny_run_copy: Path) -> Path:
    """The session's tiny_run, a copy its predictions are computed into."""
    return tiny_run_copy


def test_a_run_and_its_folder_show_curves_and_epochs(run):
    import cnnlab
    from cnnlab.report.run_folder import read_run
    from cnnlab.training.checkpoint import load_checkpoint, rebuild_model
    from cnnlab.training.trainer import TrainResult

    record = read_run(run)
    config = cnnlab.TrainConfig.from_dict(record.config)
    model = rebuild_model(load_checkpoint(run / "best.pt"))
    result = TrainResult(run, model, record.metrics, config)
    assert repr(result) == f"<TrainResult {run}: 3 epochs of mnist_cnn>"  # not the layers
    for html in (result._repr_html_(), record._repr_html_()):
        assert f'<td style="text-align: left">{run}</td>' in html
        assert html.count("<img ") == 1
        body = html.split("<tbody>")[-1]
        assert len(re.findall("<tr>", body)) == len(record.metrics) == 3
        assert format(record.metrics[-1]["test_accuracy"], ".4f") in body


def test_a_summary_a_comparison_and_predictions_have_rich_displays(run):
    import cnnlab
    from cnnlab.report.compare import compare
    from cnnlab.report.predictions import load_predictions

    summary = cnnlab.summary("mnist_cnn", verbose=False)
    html = summary._repr_html_()
    assert summary.title() in html.replace("&gt;", ">")
    assert html.count("<tr>") == 1 + len(summary.shown_rows)
    assert "receptive field" in html
    comparison = compare([run])
    html = comparison._repr_html_()
    assert html.count("<tr>") == 1 + len(comparison.rows)
    assert all(f">{cell}<" in html for cell in comparison.cells()[0])
    predictions = load_predictions(run)
    assert predictions._repr_png_().startswith(b"\x89PNG")
    assert repr(predictions) == (
        f"<Predictions of best.pt on 128 test images: accuracy {predictions.accuracy:.4f}>"
    )


def test_live_curves_grow_into_a_frame_of_the_whole_run():
    from cnnlab.curves import curves_figure

    rows = [{"epoch": 1, "train_loss": 1.0, "test_accuracy": 0.5, "lr": 0.1},
            {"epoch": 2, "train_loss": 0.8, "test_accuracy": 0.6, "lr": 0.1}]  # fmt: skip
    live = curves_figure(rows, epochs=10)
    assert [ax.get_xlim() for ax in live.axes] == [(0.5, 10.5)] * 2  # loss, accuracy
    assert curves_figure(rows).axes[0].get_xlim()[1] < 3  # a finished run: its own epochs
