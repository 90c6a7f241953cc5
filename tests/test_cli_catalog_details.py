"""What `cnnlab models`, `cnnlab recipes` and `cnnlab datasets` print (cli/catalog.py), cell by
cell: each table's header, every cell of every row in order, the lines printed after a table,
that a PATTERN or --data-dir reaches the listing, and the width of the table in a pipe and at a
terminal.

`cnnlab models` is fed a table of three made-up models (models.catalog._compute replaced: the
real one builds every seed model and takes seconds), so each column's rule shows on known rows:
an input shape joined by ×, a parameter count with thousands separators, and "?" for a model
whose size is unknown until it runs. `cnnlab recipes` lists the shipped recipes and
`cnnlab datasets` looks in folders made here, named by relative paths so that the lines stay
short and exact.
"""

from __future__ import annotations

import io
import re
import sys

import pytest

from cnnlab.cli import main
from cnnlab.config.recipes import recipe_catalog
from cnnlab.data.specs import BUILTIN_DATASETS
from cnnlab.models import catalog
from helpers import write_mnist_files

NOT_ON_DISK = "not on disk: downloaded on first use"

MODELS = [
    {"name": "big_net", "seed": "007", "input_shape": [3, 32, 48], "parameters": 1234567,
     "description": "a net of 1.2 M parameters"},
    {"name": "lazy_net", "seed": "", "input_shape": [1, 28, 28], "parameters": None,
     "description": "sized once it runs"},
    {"name": "small", "seed": "torchvision", "input_shape": [3, 224, 224], "parameters": 999,
     "description": "left out by the pattern *_net"},
]  # fmt: skip


def fake_models(monkeypatch, rows: list[dict]) -> None:
    """`cnnlab models` lists `rows` (the per-test cache is empty, so the table is computed)."""
    monkeypatch.setattr(catalog, "_compute", lambda: [dict(row) for row in rows])


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"[│┃]", line)[1:-1]]


def table(out: str) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, lines after the table) of one rich table in `out`; a cell wrapped onto
    the next line is joined to its row with a space."""
    lines = out.splitlines()
    [header] = [cells(line) for line in lines if "┃" in line]
    rows: list[list[str]] = []
    for line in lines:
        if "│" not in line:
            continue
        row = cells(line)
        if row[0] or not rows:
            rows.append(row)
        else:  # a continuation line of the row above
            rows[-1] = [f"{a} {b}" if b else a for a, b in zip(rows[-1], row, strict=True)]
    end = max(i for i, line in enumerate(lines) if line.startswith("└"))
    return header, rows, lines[end + 1 :]


# --- cnnlab models --------------------------------------------------------------------------


def test_models_prints_every_column_of_every_row(monkeypatch, capsys):
    fake_models(monkeypatch, MODELS)
    assert main(["models"]) == 0
    header, rows, after = table(capsys.readouterr().out)
    assert header == ["name", "seed", "input", "parameters", "description"]
    assert rows == [
        ["big_net", "007", "3×32×48", "1,234,567", "a net of 1.2 M parameters"],
        ["lazy_net", "", "1×28×28", "?", "sized once it runs"],
        ["small", "torchvision", "3×224×224", "999", "left out by the pattern *_net"],
    ]
    assert after == []


def test_models_pattern_keeps_only_the_matching_names(monkeypatch, capsys):
    fake_models(monkeypatch, MODELS)
    assert main(["models", "*_NET"]) == 0  # shell-style, in any case
    _, rows, _ = table(capsys.readouterr().out)
    assert [row[0] for row in rows] == ["big_net", "lazy_net"]


# --- cnnlab recipes -------------------------------------------------------------------------


def test_recipes_prints_name_and_purpose_of_the_matching_recipes_then_how_to_train(capsys):
    assert main(["recipes", "mnist-cnn*"]) == 0
    header, rows, after = table(capsys.readouterr().out)
    assert header == ["name", "purpose"]
    assert [row[0] for row in rows] == ["mnist-cnn", "mnist-cnn-deep"]
    assert rows == [list(item) for item in recipe_catalog("mnist-cnn*")]
    assert rows[0][1].startswith("Seed 003: a simple CNN on MNIST")
    assert after == ["train one: cnnlab train --recipe NAME (or --recipe FILE, a TOML of your own)"]


# --- cnnlab datasets ------------------------------------------------------------------------


@pytest.fixture
def data_places(tmp_path, monkeypatch):
    """mnist in data/ (for --data-dir data), fashion-mnist in more/ ($CNNLAB_DATA), an empty
    cache/ ($CNNLAB_CACHE), all relative to the working folder; no system folders."""
    monkeypatch.chdir(tmp_path)
    write_mnist_files(tmp_path / "data" / "mnist", seed=0)
    write_mnist_files(tmp_path / "more" / "fashion-mnist", seed=10)
    monkeypatch.setenv("CNNLAB_DATA", "more")
    monkeypatch.setenv("CNNLAB_CACHE", "cache")


def test_datasets_says_where_each_is_found_and_where_it_looked(data_places, capsys):
    assert main(["datasets", "--data-dir", "data"]) == 0
    header, rows, after = table(capsys.readouterr().out)
    assert header == ["name", "classes", "found in"]
    found = {"mnist": "data/mnist", "fashion-mnist": "more/fashion-mnist"}
    assert rows == [
        [name, str(len(spec.class_names)), found.get(name, NOT_ON_DISK)]
        for name, spec in BUILTIN_DATASETS.items()
    ]
    assert rows[0] == ["mnist", "10", "data/mnist"]
    assert rows[1] == ["fashion-mnist", "10", "more/fashion-mnist"]
    assert ["cifar2", "2", NOT_ON_DISK] in rows
    assert after == [
        "searched, in order: data, more, cache",
        "your own data: --dataset npz:FOLDER (train.npz, test.npz) or folder:FOLDER",
    ]


# --- the width of the tables ----------------------------------------------------------------

LONG = [{"name": "wide_net", "seed": "000", "input_shape": [1, 8, 8], "parameters": 10,
         "description": "a very long description " * 12}]  # fmt: skip


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def columns_env(monkeypatch):
    """A terminal of 100 columns as rich reads it ($COLUMNS), and no colour settings of the
    machine's that would change whether rich thinks it writes to a terminal."""
    monkeypatch.setenv("COLUMNS", "100")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TERM"):
        monkeypatch.delenv(name, raising=False)


def widths(out: str) -> set[int]:
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)  # a terminal gets colours and bold
    return {len(line) for line in plain.splitlines() if line}


def test_a_pipe_gets_rows_160_columns_wide_whatever_the_terminal(monkeypatch, capsys, columns_env):
    fake_models(monkeypatch, LONG)
    assert main(["models"]) == 0
    assert widths(capsys.readouterr().out) == {160}


def test_a_terminal_gets_rows_as_wide_as_the_terminal(monkeypatch, columns_env):
    fake_models(monkeypatch, LONG)
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    assert main(["models"]) == 0
    assert widths(screen.getvalue()) == {100}
