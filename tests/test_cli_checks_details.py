"""What the command line refuses before a command starts its work (cli/checks.py), word for
word: a --data-dir that is not a folder, a misspelt --dataset, and the checkpoint, run folder,
model file or --resume folder a command is given when it is missing or of the wrong kind.

These checks come first: a misspelt data set is named before the checkpoint is read, a
missing file before the other flags' values are checked. What passes them (a model name, a
folder that exists, a run folder holding last.pt) goes on to the command's next check, which
these tests make fail with a line of its own to show how far the command got.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.cli import main

HINT = "give the folder `cnnlab train` printed"
SUMMARY_HINT = "give a model name, a .pt file or a run folder (`cnnlab models` lists the names)"
# the summary's next check, made once a model passes the command line's: --input needs 3 sides
BAD_INPUT = "error: --input expects CxHxW, like 3x32x32, got '28x28'\n"


@pytest.fixture
def paths(tmp_path: Path) -> Path:
    """tmp_path with `file` (a file), `empty/` (a folder) and `run/` holding a last.pt and a
    best.pt that are not checkpoints (read, they would fail with a line of their own)."""
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "run").mkdir()
    for name in ("last.pt", "best.pt"):
        (tmp_path / "run" / name).write_bytes(b"never read: the command line is refused first")
    return tmp_path


def refused(argv: list[str], capsys) -> str:
    """The one line `cnnlab ARGV` writes to stderr, having exited 2 and printed nothing."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(("name", "what"), [("none", "does not exist"), ("file", "is a file")])
def test_a_data_dir_that_is_not_a_folder(name, what, paths, capsys):
    assert refused(["datasets", "--data-dir", str(paths / name)], capsys) == (
        f"error: --data-dir {paths / name} {what}; give a folder holding data sets, or leave it "
        "out (`cnnlab datasets` shows where they are looked for)\n"
    )


@pytest.mark.parametrize("command", ["eval", "features"])
def test_a_misspelt_dataset_is_named_before_the_checkpoint_is_read(command, paths, capsys):
    err = refused([command, str(paths / "run"), "--dataset", "mnsit"], capsys)
    assert err.startswith("error: unknown data set 'mnsit'; did you mean mnist?")


def test_a_missing_checkpoint_is_named_before_the_flags_values(paths, capsys):
    assert refused(["eval", str(paths / "none.pt"), "--batch-size", "0"], capsys) == (
        f"error: checkpoint {paths / 'none.pt'} does not exist; give a .pt file or a run folder\n"
    )


@pytest.mark.parametrize("command", ["plot", "report"])
@pytest.mark.parametrize(("name", "what"), [("none", "does not exist"), ("file", "is a file")])
def test_a_run_folder_that_is_not_a_folder(command, name, what, paths, capsys):
    assert refused([command, str(paths / name)], capsys) == (
        f"error: run folder {paths / name} {what}; {HINT}\n"
    )


def test_a_missing_model_file(paths, capsys):
    assert refused(["predict", str(paths / "none.pt"), "x.png"], capsys) == (
        f"error: model file {paths / 'none.pt'} does not exist; give a run folder, a .pt "
        "checkpoint, or an exported .onnx, .safetensors or .torchscript.pt file\n"
    )


@pytest.mark.parametrize("given", ["none.pt", "{tmp}/none.pt", "{tmp}/none"])
def test_summary_of_a_missing_checkpoint_or_folder(given, paths, monkeypatch, capsys):
    monkeypatch.chdir(paths)  # none.pt: a name in the working folder
    text = given.format(tmp=paths)
    assert refused(["summary", text, "--input", "28x28"], capsys) == (
        f"error: {text} does not exist; {SUMMARY_HINT}\n"
    )


@pytest.mark.parametrize("given", ["lenet", "{tmp}/empty", "{tmp}/run/last.pt"])
def test_summary_of_a_model_name_or_a_path_that_exists_goes_on(given, paths, capsys):
    # a name is the registry's to check, a path that exists the checkpoint loader's
    assert refused(["summary", given.format(tmp=paths), "--input", "28x28"], capsys) == BAD_INPUT


def test_resume_from_a_file_names_its_folder(paths, capsys):
    assert refused(["train", "--resume", str(paths / "run" / "last.pt")], capsys) == (
        f"error: --resume {paths / 'run' / 'last.pt'} is a file; give its run folder, "
        f"{paths / 'run'}\n"
    )


def test_resume_from_a_missing_folder(paths, capsys):
    assert refused(["train", "--resume", str(paths / "none")], capsys) == (
        f"error: run folder {paths / 'none'} does not exist; {HINT}\n"
    )


def test_resume_from_a_folder_without_last_pt(paths, capsys):
    assert refused(["train", "--resume", str(paths / "empty")], capsys) == (
        f"error: {paths / 'empty'} has no last.pt to resume from; {HINT}, or train again\n"
    )


@pytest.mark.parametrize("resume", [["--resume", "{tmp}/run"], []])
def test_a_run_folder_with_last_pt_or_no_resume_goes_on_to_the_flags(resume, paths, capsys):
    argv = ["train", *(part.format(tmp=paths) for part in resume), "--epochs", "0"]
    assert refused(argv, capsys) == "error: --epochs must be at least 1, got 0\n"
