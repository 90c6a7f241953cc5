"""Details of `compare` (report/compare.py) and of its table (report/comparison.py): where the
files go (the HTML page alone, a PNG folder made with its parents, the one-line refusals of a
bad --out or --html), run records given instead of folders, the table's cells and alignment,
how runs become rows (model_args in any key order, seeds in numeric order, a run without a
seed last), the ranking of a row whose accuracy is 0, the labels of rows (a common name, a
short one, the same name twice), the warnings' exact words, and the small formatters
(durations, settings).

The runs are RunRecords made by hand (a config and a few epoch rows), and no curve is drawn
(plot_curves and the PNG encoding are replaced), so each test takes milliseconds;
test_compare.py checks the same paths on trained runs. These tests exist because
docs/TESTING.md's mutation run showed these paths untested (survivors of mutmut in
report/compare.py and comparison.py).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cnnlab.errors import ConfigError
from cnnlab.report import compare as compare_module
from cnnlab.report.compare import CURVES, compare
from cnnlab.report.comparison import build_comparison, duration, setting, text_table
from cnnlab.report.run_folder import RunRecord

NO_SPREAD = (
    "no measured spread, so an order against it may be seed noise; train with several seeds "
    "to measure it (`cnnlab train --seeds 0,1,2 ...`)"
)


def record(name: str, metrics: list[dict], *, folder: str = "/runs", **config):
    """A RunRecord as read_run gives it (its folder FOLDER/NAME is never read): model, data
    set, as many planned epochs as `metrics` has rows, seed 0, then `config`; `parameters`
    and `selection`, when given, go into config.json's top level as cnnlab train writes them."""
    info = {k: config.pop(k) for k in ("parameters", "selection") if k in config}
    values = {"model": "mnist_cnn", "dataset": "npz:/data/a", "epochs": len(metrics), "seed": 0}
    info["config"] = {**values, "name": name, **config}
    return RunRecord(Path(folder) / name, info, metrics)


def finals(name: str, accuracies: list[float], **config) -> list[RunRecord]:
    """One one-epoch run per final test accuracy, seeds 0, 1, ...: one row of the table."""
    return [
        record(f"{name}-seed{i}", [{"epoch": 1, "test_accuracy": a}], seed=i, **config)
        for i, a in enumerate(accuracies)
    ]


@pytest.fixture
def no_curves(monkeypatch):
    """compare draws no curve and encodes no PNG: the page and the folder get b"png" (patched
    here, not with helpers.skip_png_encoding, which imports torch through report/plots.py)."""
    monkeypatch.setattr(compare_module, "render_png", lambda figure: b"png")
    monkeypatch.setattr(compare_module, "plot_curves", lambda comparison: None)


# --- compare: its files, and the places it refuses -------------------------------------------


def test_compare_writes_the_page_when_only_html_is_given(tmp_path, no_curves):
    page = tmp_path / "c.html"
    c = compare(finals("a", [0.5, 0.75]), html=page)
    assert c.written == [page]
    assert "<title>Comparison of 2 runs</title>" in page.read_text(encoding="utf-8")


def test_compare_creates_the_png_folder_with_its_parents(tmp_path, no_curves):
    out = tmp_path / "new" / "curves"  # neither folder exists yet
    c = compare(finals("a", [0.5]), out=out)
    assert c.written == [out / CURVES]
    assert (out / CURVES).read_bytes() == b"png"


def test_a_png_folder_that_cannot_be_created_is_one_line(tmp_path, no_curves):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "curves"  # passes the check (nothing there), then mkdir fails
    with pytest.raises(ConfigError) as err:
        compare(finals("a", [0.5]), out=out)
    reason = os.strerror(errno.ENOTDIR)  # "Not a directory"
    assert str(err.value) == f"cannot create {out}: {reason}; choose another --out"


def test_an_out_that_is_a_file_is_refused_naming_the_option(tmp_path):
    out = tmp_path / "curves.png"
    out.write_bytes(b"")
    with pytest.raises(ConfigError) as err:
        compare(finals("a", [0.5]), out=out)
    assert str(err.value) == f"--out {out} is a file; give a folder for the PNG files"


def test_an_html_that_is_a_folder_is_refused_naming_the_option(tmp_path):
    with pytest.raises(ConfigError) as err:
        compare(finals("a", [0.5]), html=tmp_path)
    assert str(err.value) == f"--html {tmp_path} is a folder; give a file name like compare.html"


def test_an_html_in_a_missing_folder_says_to_create_it(tmp_path):
    page = tmp_path / "missing" / "c.html"
    with pytest.raises(ConfigError) as err:
        compare(finals("a", [0.5]), html=page)
    assert str(err.value) == (
        f"--html {page}: the folder {tmp_path / 'missing'} does not exist; create it first"
    )


def test_compare_takes_run_records_without_reading_their_folders():
    # /runs/... does not exist: the records are used as given
    b = record("b", [{"epoch": 1, "test_accuracy": 0.25}], lr=0.1)
    c = compare([*finals("a", [0.5, 0.75]), b])
    assert [(row.label, row.n) for row in c.rows] == [("a", 2), ("b", 1)]


# --- the table -----------------------------------------------------------------------------


def test_the_cells_of_runs_without_a_validation_split():
    a = [
        {"epoch": 1, "test_accuracy": 0.75, "epoch_seconds": 30.0, "examples_per_second": 1200},
        {"epoch": 2, "test_accuracy": 0.8125, "epoch_seconds": 45.0, "examples_per_second": 1300.6},
    ]
    # b: an older folder, without the parameter count and the speed; it stopped after 1 of 2
    b = record("b", [{"epoch": 1, "test_accuracy": 0.5, "epoch_seconds": 2.5}], epochs=2, lr=0.1)
    c = build_comparison([b, record("a", a, parameters=61706, lr=0.01)])
    assert c.header == [
        "run", "n", "final test acc", "best.pt test acc", "chosen on", "parameters", "epochs",
        "wall time", "examples/s", "lr",
    ]  # fmt: skip
    # no validation column (no run held one out); the median speed, numbers with thousands
    assert c.cells() == [
        ["a", "1", "0.8125", "0.8125", "test", "61,706", "2", "1m15s", "1,250", "0.01"],
        ["b", "1", "0.5000", "0.5000", "test", "-", "1/2", "2.5 s", "-", "0.1"],
    ]


def test_a_text_table_right_aligns_numbers_and_ends_no_line_in_spaces():
    table = text_table(["run", "n", "lr"], [["alpha", "3", "0.1"], ["b", "12", "-"]], right=[1])
    assert table.split("\n") == [
        "run     n  lr",
        "-----  --  ---",
        "alpha   3  0.1",
        "b      12  -",
    ]


# --- rows: grouping, order, labels -----------------------------------------------------------


def test_runs_whose_model_args_differ_only_in_key_order_are_one_row():
    # config.json keeps the order the arguments were given in: it decides nothing
    one = record("x-seed0", [{"epoch": 1, "test_accuracy": 0.5}], model_args={"a": 1, "b": 2})
    two = record(
        "x-seed1", [{"epoch": 1, "test_accuracy": 0.5}], seed=1, model_args={"b": 2, "a": 1}
    )
    c = build_comparison([one, two])
    assert [(row.label, row.n) for row in c.rows] == [("x", 2)]


def test_a_rows_runs_are_in_numeric_seed_order():
    # by name, x-seed10 would come before x-seed2
    runs = [record(f"x-seed{s}", [{"epoch": 1, "test_accuracy": 0.5}], seed=s) for s in (10, 2)]
    [row] = build_comparison(runs).rows
    assert row.seeds == [2, 10]


def test_a_run_whose_config_names_no_seed_comes_after_the_seeded_ones():
    seedless = record("a", [{"epoch": 1, "test_accuracy": 0.5}])
    del seedless.info["config"]["seed"]
    seeded = record("b", [{"epoch": 1, "test_accuracy": 0.5}], seed=1)
    [row] = build_comparison([seedless, seeded]).rows
    assert row.seeds == [1, None]


def test_a_row_of_zero_accuracy_ranks_last():
    c = build_comparison([*finals("zero", [0.0]), *finals("half", [0.5], lr=0.1)])
    assert [row.label for row in c.rows] == ["half-seed0", "zero-seed0"]


@pytest.mark.parametrize(
    ("names", "label"),
    [
        # the common start, without the separator it ends in (an X is kept: no separator)
        (["LeNetX-wide-seed0", "LeNetX-deep-seed1"], "LeNetX"),
        (["abc-x", "abc-y"], "abc"),  # three characters are enough
        (["ab-x", "ab-y", "ab-z"], "ab-x (+2)"),  # two are not: the first run, and the others
    ],
)
def test_the_label_of_runs_with_different_names(names, label):
    runs = [record(n, [{"epoch": 1, "test_accuracy": 0.5}], seed=i) for i, n in enumerate(names)]
    [row] = build_comparison(runs).rows
    assert row.label == label


def test_rows_of_the_same_name_are_numbered():
    # three folders that each hold a run named `run`, with different settings
    runs = [
        record("run", [{"epoch": 1, "test_accuracy": a}], folder=f"/runs/{i}", lr=lr)
        for i, (a, lr) in enumerate([(0.9, 0.1), (0.8, 0.2), (0.7, 0.3)])
    ]
    c = build_comparison(runs)
    assert [row.label for row in c.rows] == ["run", "run #2", "run #3"]


# --- the warnings' words -----------------------------------------------------------------


def test_a_row_overlapping_two_below_names_both():
    # the same spread three times: equal means, so the rows are in the order of their labels
    runs = [*finals("a", [0.5, 0.75]), *finals("b", [0.5, 0.75], lr=0.1)]
    c = build_comparison([*runs, *finals("c", [0.5, 0.75], lr=0.2)])
    words = "(final test accuracy, mean ± std): their order may be seed noise"
    assert c.warnings == [f"a overlaps b, c {words}", f"b overlaps c {words}"]


def test_one_single_run_has_no_spread():
    c = build_comparison([*finals("a", [0.5, 0.75]), *finals("b", [0.25], lr=0.1)])
    assert c.warnings == [f"single run (b-seed0): it has {NO_SPREAD}"]


def test_two_single_runs_have_no_spread():
    c = build_comparison([*finals("a", [0.5]), *finals("b", [0.25], lr=0.1)])
    assert c.warnings == [f"single runs (a-seed0, b-seed0): they have {NO_SPREAD}"]


def untested(name: str, val: float, *, seed: int = 0, **config) -> RunRecord:
    """A run of --no-eval-test: best.pt chosen on validation, no test accuracy."""
    metrics = [{"epoch": 1, "val_accuracy": val}]
    return record(name, metrics, seed=seed, selection="val", eval_test=False, **config)


def test_the_rows_ranked_on_validation_are_named_together():
    c = build_comparison(
        [*finals("t", [0.5]), untested("p", 0.9, lr=0.1), untested("q", 0.8, lr=0.2)]
    )
    assert [row.label for row in c.rows] == ["t-seed0", "p", "q"]
    assert c.warnings[0] == (
        "p, q measured no test accuracy (trained with --no-eval-test): ranked after the rows "
        "that did, by best.pt validation accuracy"
    )


def test_a_row_tested_by_two_of_its_three_runs_shows_their_means():
    c = build_comparison([*finals("r", [0.5, 0.75]), untested("r-seed2", 0.9, seed=2)])
    assert c.warnings == [
        "r: 1 of its 3 runs measured no test accuracy (--no-eval-test); its test accuracies "
        "(final and best.pt) are the means over the 2 runs that did"
    ]


# --- formatters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (59.94, "59.9 s"),
        (60, "1m00s"),  # a minute is minutes and seconds
        (60.5, "1m00s"),  # rounded to the second
        (125, "2m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),  # an hour is hours and minutes
        (3660, "1h01m"),
        (7385, "2h03m"),
    ],
)
def test_a_duration_in_seconds_minutes_or_hours(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        ([0.9, 0.999], "0.9,0.999"),
        ([True, None], "true,-"),
        # a dict: its keys in order, each value as a setting
        (
            {"n_chans1": 32, "dropout": True, "widths": [8, 16]},
            "dropout=true n_chans1=32 widths=8,16",
        ),
        ({}, "-"),
    ],
)
def test_a_setting_as_the_table_shows_it(value, text):
    assert setting(value) == text
