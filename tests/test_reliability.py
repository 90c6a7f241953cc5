"""Crashes and resumes: a killed run resumes bit for bit; a kill never leaves a torn file."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.training import checkpoint as ckpt
from helpers import write_learnable_npz

pytestmark = pytest.mark.slow

EPOCHS = 3
# 22 steps of 16 an epoch (the last of 8): room for a kill inside epoch 2, and what is checked
# (bit for bit, file by file) does not grow with the epoch
TRAINED = 384 - 4 * 10  # the default validation split holds out 10 of each class's 96


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    return "npz:" + str(write_learnable_npz(tmp_path_factory.mktemp("d"), train=384, test=64))


# The processes stopped or killed are real `cnnlab` processes; what only reads or finishes
# the folder they leave (the uninterrupted run, a resume, compare) runs in this process with
# the same command line: each `cnnlab` process costs 2 s of `import torch`.
CNNLAB = [sys.executable, "-m", "cnnlab"]


def argv(data: str, out: Path, name: str, *extra: str) -> list[str]:
    """`cnnlab train ...` without the `cnnlab`: for `main()`, or after CNNLAB."""
    return [
        "train",
        "--model",
        "mnist_cnn",
        "--dataset",
        data,
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        "16",
        "--lr",
        "0.05",
        "--momentum",
        "0.9",
        "--deterministic",
        "--out-dir",
        str(out),
        "--name",
        name,
        "--progress",
        "lines",
        "--log-every",
        "8",
        "--no-report",
        *extra,
    ]


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> Path:
    """The same run, never interrupted (the same command, in this process)."""
    out = tmp_path_factory.mktemp("straight")
    assert main(argv(data, out, "run")) == 0
    return out / "run"


def read_step(path: Path) -> tuple[int, int]:
    try:
        state = ckpt.load_checkpoint(path)
    except cnnlab.CnnlabError:  # not there yet
        return -1, -1
    return state["step"], state["batch_in_epoch"]


def kill_when(process: subprocess.Popen, last: Path, ready) -> tuple[int, int]:
    """SIGKILL `process` as soon as its last.pt satisfies `ready(step, batch_in_epoch)`.
    Each new last.pt is loaded once: a stat takes microseconds, a load milliseconds of the
    CPU the run needs."""
    deadline, seen = time.monotonic() + 240, None
    while time.monotonic() < deadline and process.poll() is None:
        version = file_version(last)
        if version is not None and version != seen:
            seen = version
            step, batch = read_step(last)
            if step >= 0 and ready(step, batch):
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
                return step, batch
        time.sleep(0.005)
    raise AssertionError(f"the run ended before it could be killed: {process.poll()}")


def file_version(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of `path`: every checkpoint is a new file put in place (os.replace)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def assert_same_run(a: Path, b: Path) -> None:
    first, second = ckpt.load_checkpoint(a / "last.pt"), ckpt.load_checkpoint(b / "last.pt")
    for name, tensor in first["model_state"].items():
        assert torch.equal(tensor, second["model_state"][name]), name  # bit-identical
    keys = (
        "epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
        "test_loss", "test_accuracy",
    )  # fmt: skip
    rows = [[{k: r[k] for k in keys} for r in json.loads(f"[{_rows(d)}]")] for d in (a, b)]
    assert rows[0] == rows[1]


def _rows(run: Path) -> str:
    return ",".join((run / "metrics.jsonl").read_text().splitlines())


@pytest.mark.parametrize("where", ["mid-epoch", "epoch boundary"])
def test_sigkill_then_resume_is_bit_identical_to_an_uninterrupted_run(
    data, straight, tmp_path, where
):
    steps_per_epoch = -(-TRAINED // 16)
    if where == "mid-epoch":  # a random step inside epoch 2, with a checkpoint every step
        target = random.Random().randrange(steps_per_epoch + 1, 2 * steps_per_epoch - 1)
        process = subprocess.Popen(
            [*CNNLAB, *argv(data, tmp_path, "run", "--checkpoint-every", "1")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, batch = kill_when(
            process, tmp_path / "run" / "last.pt", lambda step, batch: step >= target
        )
        assert batch > 0
    else:  # only epoch-end checkpoints; killed somewhere in epoch 2 (in epoch 3 should a
        # loaded machine keep this process from seeing epoch 1's checkpoint in time)
        process = subprocess.Popen(
            [*CNNLAB, *argv(data, tmp_path, "run")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        unfinished = (steps_per_epoch, 2 * steps_per_epoch)
        _, batch = kill_when(
            process, tmp_path / "run" / "last.pt", lambda step, batch: step in unfinished
        )
        assert batch == 0
    assert process.returncode == -signal.SIGKILL
    assert main(["train", "--resume", str(tmp_path / "run"), "--progress", "lines"]) == 0
    assert_same_run(straight, tmp_path / "run")


def wait_for_training(process: subprocess.Popen, run: Path) -> None:
    """Until `process` starts its epochs: it writes metrics.jsonl then, after it has set its
    SIGINT / SIGTERM handlers, and a signal from then on stops it after a step (step > 0)."""
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "the run never started training"
        time.sleep(0.01)


def test_sigterm_saves_prints_the_resume_command_and_exits_143(
    data, straight, tmp_path, reports_on
):
    process = subprocess.Popen(
        [*CNNLAB, *argv(data, tmp_path, "run", "--report")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_training(process, tmp_path / "run")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert f"Resume with: cnnlab train --resume {tmp_path / 'run'}" in err
    assert read_step(tmp_path / "run" / "last.pt")[0] > 0
    assert not (tmp_path / "run" / "report.html").exists()  # written when the run ends
    # the command writes report.html at the end; in this process, with reports_on
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    assert_same_run(straight, tmp_path / "run")
    assert (tmp_path / "run" / "report.html").is_file()


def test_sigint_exits_130_with_a_checkpoint(data, tmp_path):
    process = subprocess.Popen(
        [*CNNLAB, *argv(data, tmp_path, "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_training(process, tmp_path / "run")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "stopped by SIGINT" in err
    assert read_step(tmp_path / "run" / "last.pt")[0] > 0


def test_kills_during_saves_never_leave_a_torn_file(tmp_path):
    """SIGKILL checkpoint writers at random moments, 40 times; every load must succeed."""
    script = Path(__file__).parent / "save_killer.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "40"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    kills, loads = (int(part.split("=")[1]) for part in done.stdout.split())
    assert kills == 40 and loads >= 30  # the first kills may come before any save ends
    # temporary files of killed writers may remain (never read); the checkpoint is whole
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert all(name.startswith(".last.pt.") for name in leftovers)


def test_overwrite_replaces_an_existing_run(data, tmp_path):
    cfg = dict(
        model="mnist_cnn",
        dataset=data,
        epochs=1,
        batch_size=64,
        out_dir=str(tmp_path),
        name="run",
        progress="none",
        lr=0.01,
    )
    cnnlab.train(**cfg)
    (tmp_path / "run" / "stale.txt").write_text("from the old run")
    cnnlab.train(**cfg, overwrite=True)
    assert not (tmp_path / "run" / "stale.txt").exists()
    assert (tmp_path / "run" / "last.pt").exists()


def test_deterministic_says_what_it_cannot_promise(data, tmp_path, capsys):
    cnnlab.train(
        model="mnist_cnn",
        dataset=data,
        epochs=1,
        batch_size=64,
        out_dir=str(tmp_path),
        name="run",
        progress="lines",
        lr=0.01,
        deterministic=True,
    )
    assert (
        "deterministic: results are bit-exact only on the same hardware" in capsys.readouterr().out
    )
    assert torch.are_deterministic_algorithms_enabled() is False  # restored after the run


@pytest.mark.parametrize(
    ("signum", "delays"),
    [(signal.SIGINT, ("0.5", "1.4", "2.2")), (signal.SIGTERM, ("0.9", "1.8"))],
)
def test_a_run_stopped_at_any_moment_is_taken_up_by_the_same_command(
    data, tmp_path, capsys, signum, delays
):
    """`timeout -s INT 2 cnnlab train ...` as a user types it, stopped earlier and later too
    (imports, data, model, the first epoch): each time the folder is gone or resumable, and
    the same command with the same --name then finishes the run, and compare reads it."""
    # 4 short epochs (most of a second): time for a late signal to land in training, even on a
    # fast machine
    command = argv(data, tmp_path / "runs", "run", "--epochs", "4")
    run = tmp_path / "runs" / "run"
    for delay in delays:
        stopped = subprocess.run(
            ["timeout", "--preserve-status", "-s", signal.Signals(signum).name, delay,
             *CNNLAB, *command],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if stopped.returncode == 0:  # finished before the signal (a fast machine)
            break
        assert stopped.returncode == 128 + signum, stopped.stderr
        assert "Traceback" not in stopped.stderr, stopped.stderr
        assert not run.exists() or (run / "last.pt").is_file(), sorted(run.iterdir())
    code, err = main(command), capsys.readouterr().err  # the same command, not stopped now
    if code != 0:  # a signal came as it closed: the run had finished; it says so
        assert code == 2 and "already finished its 4 epochs" in err
    assert ckpt.load_checkpoint(run / "last.pt")["finished"]
    assert main(["compare", *map(str, (tmp_path / "runs").iterdir())]) == 0
    assert capsys.readouterr().out.splitlines()[2].startswith("run ")


def test_ctrl_c_during_a_lazy_import_arrives_once_the_import_is_done(monkeypatch):
    """A KeyboardInterrupt inside numpy's or torch's first import would leave it half loaded
    (a traceback, not a clean stop: seen under load with `timeout -s INT 0.5 cnnlab train`);
    lazy exports hold the signal until the module is imported, then deliver it."""
    import importlib
    import os

    from cnnlab.lazy import lazy_exports

    imported = []

    def slow_import(name):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the import
        imported.append(name)
        return types.SimpleNamespace(thing=42)

    monkeypatch.setattr(importlib, "import_module", slow_import)
    getattr_ = lazy_exports("pkg", {"thing": "mod"})
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own
    try:
        with pytest.raises(KeyboardInterrupt):
            getattr_("thing")
        assert imported == ["pkg.mod"]  # the import ran to its end first
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
