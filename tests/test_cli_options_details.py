"""The options generated from the config dataclasses (cli/options.py): what a flag reads and
hands on to the config, and how the help is laid out.

`given_values` gives back exactly what was typed, as config values (a number as a number, a
repeated --model-arg as a dict, a comma-separated list as numbers, a --no-flag as False) and
nothing else; a field that takes a number or a word (--lr 0.01 / --lr find) reads either and
refuses anything else in one line; a malformed command line is one line naming the command's
--help; the help's text starts at column 32 and is never wider than 100 columns.
"""

from __future__ import annotations

import pytest

from cnnlab.cli import build_parser, main
from cnnlab.cli.options import given_values
from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError


def typed(*argv: str) -> dict:
    """What `cnnlab train ARGV` hands on to its config."""
    return given_values(build_parser().parse_args(["train", *argv]), TrainConfig)


def test_nothing_typed_gives_nothing():
    assert typed() == {}


def test_each_flag_reaches_the_config_as_a_value_of_its_type():
    values = typed(
        "--batch-size", "7", "--lr", "0.05", "--no-normalize", "--class-weights", "1,2.5",
        "--betas", "0.8,0.99", "--model-arg", "n_chans1=8", "--model-arg", "act=relu",
        "--progress", "none",
    )  # fmt: skip
    assert values == {
        "batch_size": 7,
        "lr": 0.05,
        "normalize": False,
        "class_weights": [1.0, 2.5],
        "betas": [0.8, 0.99],
        "model_args": {"n_chans1": 8, "act": "relu"},
        "progress": "none",
    }
    assert type(values["batch_size"]) is int and type(values["lr"]) is float


def test_a_field_late_in_the_config_is_not_lost():
    assert typed("--progress", "lines") == {"progress": "lines"}


def test_a_number_or_a_word_field_reads_both():
    assert typed("--lr", "find") == {"lr": "find"}
    assert typed("--lr", "1e-3") == {"lr": 0.001}


def test_a_number_or_a_word_field_refuses_anything_else_in_one_line(capsys):
    assert main(["train", "--lr", "fast"]) == 2
    assert capsys.readouterr().err == (
        "error: argument --lr: expects a number or find, got 'fast'; see `cnnlab train --help`\n"
    )


def test_a_number_field_refuses_a_word_as_argparse_says(capsys):
    assert main(["train", "--epochs", "x"]) == 2
    assert capsys.readouterr().err == (
        "error: argument --epochs: invalid int value: 'x'; see `cnnlab train --help`\n"
    )


def test_a_bad_list_of_numbers_is_named_by_its_flag(capsys):
    with pytest.raises(ConfigError) as err:
        typed("--class-weights", "1,x")
    assert str(err.value) == "--class-weights expects numbers separated by commas, got '1,x'"
    assert main(["train", "--class-weights", "1,x"]) == 2
    assert capsys.readouterr().err == f"error: {err.value}\n"


def test_an_unknown_command_is_refused_with_the_main_help(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument COMMAND: invalid choice: 'trian' (choose from 'train',")
    assert err.endswith("'sweep'); see `cnnlab --help`\n")


def train_help(monkeypatch, capsys, columns: int) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["train", "--help"]) == 0
    return capsys.readouterr().out.splitlines()


def test_help_text_starts_at_column_32(monkeypatch, capsys):
    lines = train_help(monkeypatch, capsys, 100)
    epochs = "  --epochs EPOCHS".ljust(32) + "number of passes over the training set"
    assert any(line.startswith(epochs) for line in lines)
    # an option too long for the first column gets a line of its own, the text below it
    at = lines.index("  --test-fraction TEST_FRACTION")
    assert lines[at + 1].startswith(" " * 32 + "folder: data without train/")


def test_help_is_no_wider_than_100_columns_on_a_wide_terminal(monkeypatch, capsys):
    wide = train_help(monkeypatch, capsys, 200)
    assert max(map(len, wide)) == 100
    assert wide == train_help(monkeypatch, capsys, 100)
