"""read_run's one-line refusals, word for word (report/run_folder.py): a path that is no folder,
a config.json that is no run's config, a file that cannot be read (the OS's reason cut to its
first 100 characters), a metrics.jsonl line that is cut short or damaged or no epoch row, and
an empty metrics.jsonl, each with the error class that decides whether `cnnlab compare` skips
the folder (UnusableRun) or stops (RunFolderError).

The run folders are written by hand (a config.json with an empty 'config' table, a few epoch
rows): nothing is trained. The process runs as root, so a file that cannot be read is made by
having Path.read_text / read_bytes raise the PermissionError the OS gives other users.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cnnlab.errors import RunFolderError
from cnnlab.report.run_folder import UnusableRun, read_run

RESTORE = "restore the file or train the run again"
NO_CHECKPOINT = "train it again (it saved no checkpoint to resume from)"


def run_folder(path: Path, *, config: str = '{"config": {}}', metrics: bytes | None) -> Path:
    """A folder with config.json and (unless None) metrics.jsonl holding these bytes."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(config)
    if metrics is not None:
        (path / "metrics.jsonl").write_bytes(metrics)
    return path


def refused(path: Path, *, partial: bool = False) -> RunFolderError:
    with pytest.raises(RunFolderError) as info:
        read_run(path, partial=partial)
    return info.value


@pytest.mark.parametrize("what", ["is a file", "does not exist"])
def test_a_path_that_is_no_folder_says_whether_it_is_a_file_or_missing(tmp_path, what):
    path = tmp_path / "run"
    if what == "is a file":
        path.write_text("not a folder")
    error = refused(path)
    assert type(error) is RunFolderError
    assert str(error) == f"run folder {path} {what}; give the folder `cnnlab train` printed"


@pytest.mark.parametrize(
    "config",
    ["[]", '[{"config": {}}]', "null", '"config"', '{"model": "mnist_cnn"}', '{"config": [1]}'],
)
def test_a_config_json_with_no_config_table_is_no_run_config(tmp_path, config):
    run = run_folder(tmp_path / "run", config=config, metrics=b'{"epoch": 1}\n')
    error = refused(run)
    assert type(error) is RunFolderError  # not a damaged run: compare stops on it
    assert str(error) == (
        f"{run / 'config.json'} is not a cnnlab run's config.json (no 'config' table)"
    )


def test_a_config_json_that_is_no_json_is_damaged(tmp_path):
    run = run_folder(tmp_path / "run", config='{"config": {', metrics=b'{"epoch": 1}\n')
    error = refused(run)
    assert type(error) is UnusableRun
    assert str(error) == (
        f"{run / 'config.json'} is damaged (Expecting property name enclosed in double quotes: "
        "line 1 column 13 (char 12)); restore it or train the run again"
    )


def refuse_to_read(monkeypatch, name: str, method: str) -> None:
    """Path.`method` of a file called `name` raises what open() gives a user without access."""
    original = getattr(Path, method)

    def read(self, *args, **kwargs):
        if self.name == name:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, method, read)


DENIED = "[Errno 13] Permission denied"


@pytest.mark.parametrize(
    "name, method", [("config.json", "read_text"), ("metrics.jsonl", "read_bytes")]
)
@pytest.mark.parametrize(
    "length, shown", [(100, "whole"), (101, f"{DENIED}…")], ids=["fits", "cut"]
)
def test_a_file_that_cannot_be_read_quotes_the_first_100_characters_of_why(
    tmp_path, monkeypatch, name, method, length, shown
):
    monkeypatch.chdir(tmp_path)  # a relative folder: the reason's length is set by its name
    folder = "r" * (length - len(f"{DENIED}: '/{name}'"))
    run = run_folder(Path(folder), metrics=b'{"epoch": 1}\n')
    refuse_to_read(monkeypatch, name, method)
    why = f"{DENIED}: '{run / name}'"
    assert len(why) == length
    error = refused(run)
    assert type(error) is RunFolderError
    assert str(error) == f"{run / name} cannot be read ({why if shown == 'whole' else shown})"


@pytest.mark.parametrize(
    "metrics, number, why",
    [
        (b'{"epoch": 1}\n{"epo', 2, "cut short"),  # the last line, with no newline
        (b'{"epoch": 1}\n\n{"epo', 3, "cut short"),  # blank lines are counted
        (b'{"epoch": 1}\n{"epo\n', 2, "damaged or edited"),  # the last line, its newline kept
        (b'{"epoch": 1}\n{"epo\n{"epoch": 3}', 2, "damaged or edited"),  # a middle line
        (b'{"epoch": 1}\n\xff\n{"epoch": 2}\n', 2, "damaged or edited"),  # not UTF-8
    ],
)
def test_a_line_that_is_no_json_says_whether_it_was_cut_short(tmp_path, metrics, number, why):
    run = run_folder(tmp_path / "run", metrics=metrics)
    error = refused(run)
    assert type(error) is UnusableRun
    assert str(error) == (
        f"{run / 'metrics.jsonl'} line {number} is not a complete JSON row ({why}); {RESTORE}"
    )


@pytest.mark.parametrize(
    "metrics",
    [b'{"epoch": 1}\n{"epo\n', b'{"epoch": 1}\n{"epo\n{"epoch": 3}'],
    ids=["last-with-newline", "middle"],
)
def test_partial_reading_still_refuses_a_line_that_was_not_cut_by_a_kill(tmp_path, metrics):
    run = run_folder(tmp_path / "run", metrics=metrics)
    error = refused(run, partial=True)
    assert str(error) == (
        f"{run / 'metrics.jsonl'} line 2 is not a complete JSON row (damaged or edited); {RESTORE}"
    )


def test_partial_reading_leaves_out_a_cut_last_line_and_says_so(tmp_path):
    run = run_folder(tmp_path / "run", metrics=b'{"epoch": 1}\n{"epo')
    record = read_run(run, partial=True)
    assert record.metrics == [{"epoch": 1}]
    assert record.warnings == [
        f"{run / 'metrics.jsonl'} line 2 is not a complete JSON row (cut short by a kill while "
        "it was written); read the 1 epoch before it"
    ]


@pytest.mark.parametrize(
    "row",
    [b'{"loss": 0.5}', b'{"epoch": "2"}', b'{"epoch": 2.0}', b"[2]", b"null", b"2", b'"epoch"'],
)
def test_a_json_line_that_is_no_epoch_row_is_refused(tmp_path, row):
    run = run_folder(tmp_path / "run", metrics=b'{"epoch": 1}\n' + row + b"\n")
    error = refused(run)
    assert type(error) is UnusableRun
    assert str(error) == (
        f"{run / 'metrics.jsonl'} line 2 is not an epoch row (no 'epoch'); {RESTORE}"
    )


@pytest.mark.parametrize("metrics", [b"", b"\n \n\t\n"], ids=["no-bytes", "blank-lines"])
@pytest.mark.parametrize("checkpoint", [False, True], ids=["no-last-pt", "last-pt"])
def test_an_empty_metrics_jsonl_names_its_file_and_its_folder(tmp_path, metrics, checkpoint):
    run = run_folder(tmp_path / "run", metrics=metrics)
    if checkpoint:
        (run / "last.pt").write_bytes(b"")  # only its presence is looked at
    todo = f"resume it with `cnnlab train --resume {run}` or train again"
    error = refused(run)
    assert type(error) is UnusableRun
    assert str(error) == (
        f"run folder {run} holds no finished epoch (metrics.jsonl is empty); "
        f"{todo if checkpoint else NO_CHECKPOINT}"
    )
