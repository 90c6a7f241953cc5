"""`cnnlab sweep SPACE.toml` (cli/sweep.py) without Optuna or a trial: the config and the SPACE
file read from the command line that are handed to cnnlab.sweeps.run_sweep (--trials over the
file's [study] trials), and what is refused in one line before the sweep starts: a bad --name,
a missing SPACE file, a data set the trials would not find on disk. Real sweeps are
test_sweep.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab import sweeps
from cnnlab.cli import main
from cnnlab.config import SweepConfig
from cnnlab.sweeps.space import Space

SEARCH = "[search]\nlr = { low = 1e-3, high = 1.0, log = true }\n[study]\ntrials = 5\n"


def write_space(folder: Path, fixed: str = "") -> Path:
    path = folder / "space.toml"
    path.write_text(f'model = "mnist_cnn"\ndataset = "mnist"\n{fixed}{SEARCH}', encoding="utf-8")
    return path


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list:
    """cnnlab.sweeps.run_sweep replaced: the (config, space) of each sweep started is kept."""
    calls: list = []

    def run_sweep(cfg, space=None, say=print):
        calls.append((cfg, space))

    monkeypatch.setattr(sweeps, "run_sweep", run_sweep)
    return calls


def test_the_flags_and_the_space_read_are_handed_to_the_sweep(started, tmp_path):
    space_file = write_space(tmp_path)
    argv = ["sweep", str(space_file), "--trials", "3", "--workers", "2", "--out-dir",
            str(tmp_path / "out"), "--name", "first", "--storage", "sqlite:///x.db",
            "--no-report"]  # fmt: skip
    assert main(argv) == 0
    [(cfg, space)] = started
    assert cfg == SweepConfig(
        space=str(space_file), trials=3, workers=2, out_dir=str(tmp_path / "out"),
        name="first", storage="sqlite:///x.db", report=False,
    )  # fmt: skip
    assert isinstance(space, Space) and space.path == space_file
    assert space.trials == 3  # --trials over the file's trials = 5
    assert [p.name for p in space.params] == ["lr"]
    assert space.fixed["model"] == "mnist_cnn" and space.fixed["eval_test"] is False


def test_without_trials_the_space_file_s_trials_stand(started, tmp_path):
    assert main(["sweep", str(write_space(tmp_path))]) == 0
    [(cfg, space)] = started
    assert cfg == SweepConfig(space=str(tmp_path / "space.toml"))
    assert cfg.trials is None and space.trials == 5


def test_a_data_set_not_on_disk_is_refused_before_the_sweep_starts(started, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    space_file = write_space(tmp_path, f'download = false\ndata_dir = "{empty}"\n')
    assert main(["sweep", str(space_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: mnist was not found in {empty}") and err.count("\n") == 1
    assert "allow downloading it (drop --no-download" in err
    assert started == []


def test_a_missing_space_file_is_refused_in_one_line(started, tmp_path, capsys):
    missing = tmp_path / "nowhere.toml"
    assert main(["sweep", str(missing)]) == 2
    assert capsys.readouterr().err == f"error: search space {missing} does not exist\n"
    assert started == []


def test_a_bad_name_is_refused_before_the_space_is_read(started, tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nowhere.toml"), "--name", "a/b"]) == 2
    assert capsys.readouterr().err == "error: --name must be a plain folder name, got 'a/b'\n"
    assert started == []
