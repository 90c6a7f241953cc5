"""`cnnlab` itself (cli/__init__.py): what `main` returns and prints for each way a command
ends, and what `run`, the console script, exits with.

Plain `cnnlab` prints its help and exits 0; a command's own value is passed on; bad input is
one line on stderr and exit 2 (1 for an error that says so: a lost torchrun process); a run
stopped by a signal prints its resume line (only rank 0 under torchrun) and exits 128 + the
signal; a Ctrl-C outside training prints "interrupted" (130), a SIGTERM "terminated" (143).
`run` exits with `main`'s code, and with 141 when the reader of its output goes away
(`cnnlab convcalc ... | head -1`). The stops are made by a `fit` that raises, as the real one does
when a signal arrives: the command line and `main` are the real ones.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from pathlib import Path

import pytest

import cnnlab.training
from cnnlab import process
from cnnlab.cli import main, run
from cnnlab.training.distributed import LostContact
from cnnlab.training.signals import Terminated, TrainingInterrupted

# a new run that passes every check made before torch (a built-in data set may be downloaded,
# so none needs to be on disk): `fit` is the first thing that runs after them
TRAIN = ["train", "--name", "r", "--progress", "none", "--no-report", "--no-tensorboard"]


def train_stopped_by(exc: BaseException, monkeypatch, tmp_path: Path) -> int:
    """`cnnlab train` whose fit raises `exc`: main's exit code."""

    def fit(cfg):
        raise exc

    monkeypatch.setattr(cnnlab.training, "fit", fit)
    return main([*TRAIN, "--out-dir", str(tmp_path)])


def test_plain_cnnlab_prints_its_help_and_exits_0(capsys):
    assert main([]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: cnnlab [-h] COMMAND ...\n")
    assert "Train, inspect and compare convolutional image classifiers" in out
    assert err == ""


def test_a_command_gets_its_own_arguments_and_exits_0(capsys):
    assert main(["recipes", "cifar2-*"]) == 0
    out = capsys.readouterr().out
    assert "cifar2-net-res-deep" in out
    assert "mnist-cnn" not in out and "cifar10-modern" not in out  # the pattern was read


def test_unknown_arguments_are_named_with_the_commands_help(capsys):
    assert main(["recipes", "--bogus", "--also"]) == 2
    assert capsys.readouterr() == (
        "",
        "error: unrecognized arguments: --bogus --also; see `cnnlab recipes --help`\n",
    )


def test_a_commands_own_parse_error_is_one_line_naming_its_help(capsys):
    assert main(["train", "--epochs"]) == 2
    assert capsys.readouterr() == (
        "",
        "error: argument --epochs: expected one argument; see `cnnlab train --help`\n",
    )


def test_an_error_with_its_own_exit_code_exits_with_it(monkeypatch, tmp_path, capsys):
    lost = LostContact("process 1 stopped answering; see its output")
    assert train_stopped_by(lost, monkeypatch, tmp_path) == 1
    assert capsys.readouterr() == ("", "error: process 1 stopped answering; see its output\n")


@pytest.mark.parametrize(("rank", "says"), [(None, True), ("0", True), ("1", False)])
def test_a_stopped_run_says_how_to_resume_once_and_exits_128_plus_the_signal(
    rank, says, monkeypatch, tmp_path, capsys
):
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    stop = TrainingInterrupted(signal.SIGTERM, tmp_path / "r", epoch=1, step=7)
    assert train_stopped_by(stop, monkeypatch, tmp_path) == 143
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"{stop}\n" if says else "")
    assert str(stop).startswith("stopped by SIGTERM at epoch 2, step 7; checkpoint saved.")


@pytest.mark.parametrize(
    ("stop", "line", "code"),
    [(KeyboardInterrupt(), "interrupted\n", 130), (Terminated(), "terminated\n", 143)],
)
def test_a_stop_outside_training_says_which_and_exits_its_code(
    stop, line, code, monkeypatch, tmp_path, capsys
):
    assert train_stopped_by(stop, monkeypatch, tmp_path) == code
    assert capsys.readouterr() == ("", line)


@pytest.fixture
def console_script(monkeypatch):
    """`run` as the `cnnlab` script, with what it changes in the process put back after: the
    SIGTERM handler and the garbage collector it pauses."""
    handler, enabled = signal.getsignal(signal.SIGTERM), gc.isenabled()
    monkeypatch.setattr(process, "_gc_paused_for_startup", process._gc_paused_for_startup)

    def script(*argv: str) -> int | str | None:
        monkeypatch.setattr(sys, "argv", ["cnnlab", *argv])
        with pytest.raises(SystemExit) as done:
            run()
        return done.value.code

    yield script
    signal.signal(signal.SIGTERM, handler)
    if enabled:
        gc.enable()


def test_the_console_script_exits_with_the_commands_code(console_script, capsys):
    assert console_script("recipes", "mnist-*") == 0
    assert "mnist-cnn-deep" in capsys.readouterr().out
    assert console_script("recipes", "--bogus") == 2
    assert capsys.readouterr().err == (
        "error: unrecognized arguments: --bogus; see `cnnlab recipes --help`\n"
    )


@pytest.mark.parametrize(
    "argv", [("convcalc", "--size", "32", "--kernel", "3"), ("recipes",)], ids=["print", "rich"]
)
def test_output_to_a_closed_pipe_exits_141_with_stdout_on_devnull(
    argv, console_script, monkeypatch
):
    """Whether the command prints or draws a rich table (rich's own handling exits 1)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # `cnnlab convcalc ... | head -1`: head has read its line and gone
    with open(write_end, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        assert console_script(*argv) == 141
        # what is left to write goes nowhere, quietly, as the interpreter closes stdout
        assert os.path.samestat(os.fstat(write_end), os.stat(os.devnull))
