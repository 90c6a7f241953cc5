"""Small details of report/: `compare` with no run folder and a page it cannot write (one line
each), the data-set groups of a comparison table, its notebook display (numbers right-aligned,
every warning under the table), two spreads that just touch (an overlap), the file and line a
run folder warning names (the caller of write_report), and write_plots' default device.

The runs are RunRecords or folders made by hand (a config and a few epoch rows), so each test
takes milliseconds; test_compare.py and test_damaged_runs.py check the same paths on trained
runs. These tests exist because docs/TESTING.md's mutation run showed these paths untested
(survivors of mutmut in report/compare.py, comparison.py, run_report.py and plots.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cnnlab.errors import ConfigError
from cnnlab.report import plots
from cnnlab.report.compare import _write, compare
from cnnlab.report.comparison import build_comparison
from cnnlab.report.run_folder import RunFolderWarning, RunRecord
from cnnlab.report.run_report import write_report


def record(name: str, finals: list[float], *, seed: int = 0, **config) -> RunRecord:
    """A run of one epoch per accuracy in `finals` (the last is its final test accuracy), as
    read_run gives it; its folder `/runs/NAME` is never read."""
    values = {"model": "mnist_cnn", "dataset": "npz:/data/a", "epochs": len(finals), "seed": seed}
    rows = [{"epoch": i + 1, "train_loss": 0.5, "test_accuracy": a} for i, a in enumerate(finals)]
    return RunRecord(Path("/runs") / name, {"config": {**values, "name": name, **config}}, rows)


def seeds(name: str, finals: list[float], **config) -> list[RunRecord]:
    """One run per final accuracy, seeds 0, 1, ...: one row of the table."""
    return [record(f"{name}-seed{i}", [a], seed=i, **config) for i, a in enumerate(finals)]


def test_compare_of_no_run_folder_says_to_give_one():
    with pytest.raises(ConfigError) as err:
        compare([])
    assert str(err.value) == "give at least one run folder to compare"


def test_a_page_that_cannot_be_written_is_one_line_naming_it(tmp_path):
    path = tmp_path / "gone" / "compare.html"  # its folder went away after the checks
    with pytest.raises(ConfigError) as err:
        _write(path, b"<html>")
    assert str(err.value) == f"cannot write {path}: No such file or directory"


def test_the_second_data_set_group_starts_at_its_first_row():
    # a (dataset a) ranks first, then b's two rows: one boundary, before row 1 (not row 0,
    # and not missed because it is the first pair)
    runs = [
        record("a", [0.9]),
        record("b1", [0.8], dataset="npz:/data/b", lr=0.1),
        record("b2", [0.7], dataset="npz:/data/b", lr=0.2),
    ]
    c = build_comparison(runs)
    assert [row.dataset for row in c.rows] == ["npz:/data/a", "npz:/data/b", "npz:/data/b"]
    assert c.group_starts() == [1]


def test_notebook_display_right_aligns_numbers_and_lists_every_warning():
    c = build_comparison([record("a", [0.9]), record("b", [0.8], lr=0.1)])
    c.folder_warnings = ["skipped /runs/c: holds no finished epoch"]
    page = c._repr_html_()
    # the `n` column is a number (right), the run's name text (left)
    assert '<th style="text-align: right; font-variant-numeric: tabular-nums">n</th>' in page
    assert '<th style="text-align: left">run</th>' in page
    # the table, then each warning as a `warning: ...` line, folder warnings first, nothing
    # between them
    assert c.warnings and c.warnings[0].startswith("single runs (a, b)")
    notes = [*c.folder_warnings, *c.warnings]
    tail = "".join(f"<pre>warning: {text}</pre>" for text in notes)
    assert page.endswith("</table>" + tail)


@pytest.mark.parametrize(
    ("y_finals", "overlap"),
    [
        ([0.5, 0.625, 0.75], True),  # 0.625 - 0.125 == 0.375 + 0.125: the spreads touch
        ([0.515625, 0.640625, 0.765625], False),  # 1/64 above: apart
    ],
)
def test_spreads_that_just_touch_overlap(y_finals, overlap):
    # x: 0.375 ± 0.125, y: its mean ± 0.125 (exact in binary, so the edge is exact)
    c = build_comparison([*seeds("x", [0.25, 0.375, 0.5]), *seeds("y", y_finals, lr=0.1)])
    assert [row.label for row in c.rows] == ["y", "x"]
    line = "y overlaps x (final test accuracy, mean ± std): their order may be seed noise"
    assert (line in c.warnings) is overlap


def test_a_run_folder_warning_names_the_line_that_called_write_report(tmp_path):
    if "MUTANT_UNDER_TEST" in os.environ:  # read now: mutmut sets it after importing the tests
        pytest.skip("under mutmut every function is called through a trampoline, a frame more")
    run = tmp_path / "cut"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {"name": "cut", "epochs": 3}}))
    rows = [json.dumps({"epoch": n, "train_loss": 0.5}) for n in (1, 2)]
    (run / "metrics.jsonl").write_text("\n".join(rows) + '\n{"epoch": 3, "tr')
    # the warning comes as the folder is read; the missing folder of `out` then stops it cheaply
    with (
        pytest.warns(RunFolderWarning, match="read the 2 epochs before it") as caught,
        pytest.raises(ConfigError, match="does not exist"),
    ):
        write_report(run, tmp_path / "missing" / "report.html")
    # the user's own line, not run_report.py nor pytest's
    assert [Path(w.filename) for w in caught] == [Path(__file__)]


def test_write_plots_runs_on_the_auto_device_unless_told(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(plots, "plot_run", lambda cfg: (seen.append(cfg), ([], None))[1])
    assert plots.write_plots(tmp_path) == []
    # auto: cuda, then mps, then cpu (any other default is refused or pins one device)
    assert [cfg.device for cfg in seen] == ["auto"]
