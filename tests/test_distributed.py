"""DDP on torchrun: 2 Gloo processes on this CPU take the steps 1 process takes, write every
file once, resume with 1 process, stop together on SIGTERM, and exit when a rank dies.

Each test starts a real `torchrun --standalone --nproc_per_node=2 -m cnnlab train` job.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.errors import ConfigError
from cnnlab.training import checkpoint as ckpt
from cnnlab.training.distributed import (
    LostContact,
    World,
    is_collective_failure,
    process_device,
    process_group,
)
from cnnlab.training.signals import StopSignals
from helpers import write_learnable_npz

pytestmark = pytest.mark.slow

# 384 training images in batches of 61: the processes' parts are 31 and 30 images (and 9 and 9
# in the last batch of 18), so the weighting by share is what makes the steps equal
SETTINGS = dict(
    model="mnist_cnn", batch_size=61, lr=0.05, momentum=0.9, deterministic=True,
    progress="lines", report=False, log_every=3,
)  # fmt: skip


def flags(settings: dict) -> list[str]:
    out = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is False:
            out.append("--no-" + key.replace("_", "-"))
        else:
            out += [flag, str(value)]
    return out


def torchrun_argv(*args: str, processes: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={processes}", "-m", "cnnlab", "train", *args,
    ]  # fmt: skip


def job_env() -> dict[str, str]:
    """This environment without a launcher's variables (pytest may itself run under one)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1"}


def torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        torchrun_argv(*args), capture_output=True, text=True, timeout=timeout, env=job_env()
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    return "npz:" + str(write_learnable_npz(tmp_path_factory.mktemp("ddp"), train=384, test=100))


# the job that SIGTERM stops once its first epoch has ended: 5 epochs (a second or more) for
# the signal to arrive before it ends
STOPPED_JOB_EPOCHS = 6


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory) -> dict[int, Path]:
    """The same run in one plain process, for 2 epochs and for STOPPED_JOB_EPOCHS."""
    out = tmp_path_factory.mktemp("one")
    runs = {}
    for epochs in (2, STOPPED_JOB_EPOCHS):
        name = f"e{epochs}"
        cnnlab.train(dataset=data, out_dir=str(out), name=name, epochs=epochs, **SETTINGS)
        runs[epochs] = out / name
    return runs


def start_job(data: str, run: Path, epochs: int) -> subprocess.Popen:
    """A 2-process job training into `run`, once its first epoch has ended (by then both
    processes handle signals)."""
    job = subprocess.Popen(
        torchrun_argv(*flags(SETTINGS), "--dataset", data, "--epochs", str(epochs),
                      "--out-dir", str(run.parent), "--name", run.name),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=job_env(),
    )  # fmt: skip
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + 180
    while time.monotonic() < deadline and job.poll() is None:
        if metrics.exists() and metrics.read_text().strip():
            return job
        time.sleep(0.02)
    job.kill()
    raise AssertionError(f"the job never finished an epoch: {job.communicate()[1][-3000:]}")


def weights(run: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(run / "last.pt")["model_state"]


def assert_same_weights(a: Path, b: Path, tolerance: float = 1e-5) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        torch.testing.assert_close(second[name], tensor, rtol=0, atol=tolerance, msg=name)


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_take_the_steps_of_one_and_write_every_file_once(data, one_process, tmp_path):
    done = torchrun(*flags(SETTINGS), "--dataset", data, "--epochs", "2", "--out-dir",
                    str(tmp_path), "--name", "two")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run, alone = tmp_path / "two", one_process[2]
    assert_same_weights(alone, run)  # same global batches, gradients weighted by share
    assert len(rows(run)) == 2  # rank 0 alone writes: one row per epoch, not two
    for ours, theirs in zip(rows(run), rows(alone), strict=True):
        for key in ("step", "train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), key
    config = json.loads((run / "config.json").read_text())
    assert config["processes"] == 2 and config["config"]["batch_size"] == 61
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert done.stdout.count("run directory:") == 2  # at the start and the end, rank 0 only
    assert done.stdout.count("a global batch of 61 shared between them") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two"]  # no second run folder


def test_sigterm_stops_every_rank_at_one_step_and_one_process_resumes_the_run(
    data, one_process, tmp_path
):
    """SIGTERM to torchrun (it passes it on to both processes): one checkpoint, every rank
    stops; the run then resumes in one plain process and ends where one process ends."""
    job = start_job(data, tmp_path / "run", epochs=STOPPED_JOB_EPOCHS)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=120)
    assert job.returncode != 0
    assert err.count("stopped by SIGTERM") == 1, err[-3000:]  # both stopped; rank 0 says so
    assert "Resume with: cnnlab train --resume" in err
    saved = ckpt.load_checkpoint(tmp_path / "run" / "last.pt")
    assert 0 < saved["epoch"] < STOPPED_JOB_EPOCHS, "the job ended before it was stopped"
    assert len(rows(tmp_path / "run")) == saved["epoch"]

    cnnlab.train(resume=tmp_path / "run")  # 2 processes → 1
    assert_same_weights(one_process[STOPPED_JOB_EPOCHS], tmp_path / "run")
    resumed, alone = rows(tmp_path / "run"), rows(one_process[STOPPED_JOB_EPOCHS])
    assert [r["step"] for r in resumed] == [r["step"] for r in alone]
    assert resumed[-1]["test_loss"] == pytest.approx(alone[-1]["test_loss"], rel=1e-4)


def worker_pids(parent: int) -> dict[int, int]:
    """{rank: pid} of the processes `parent` (torchrun) started."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # gone, or not ours
        ranks = [item[5:] for item in environ if item.startswith(b"RANK=")]
        if ppid == parent and ranks:
            found[int(ranks[0])] = int(stat.parent.name)
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
def test_a_rank_that_dies_makes_the_job_exit_with_a_clear_line(data, tmp_path):
    job = start_job(data, tmp_path / "run", epochs=500)
    workers = worker_pids(job.pid)
    assert sorted(workers) == [0, 1], workers
    os.kill(workers[1], signal.SIGKILL)
    killed_at = time.monotonic()
    _, err = job.communicate(timeout=90)
    assert job.returncode != 0
    assert time.monotonic() - killed_at < 60  # torchrun's 30 s grace at the very most
    assert "rank 0 lost contact with the other processes" in err, err[-3000:]
    assert ckpt.load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] >= 1  # kept, loadable


def test_bad_input_stops_every_rank_with_the_same_line_before_the_process_group(data, tmp_path):
    done = torchrun("--dataset", data, "--sync-bn", "--device", "cpu", "--out-dir",
                    str(tmp_path))  # fmt: skip
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    # one line per rank, the same; torchrun may stop the second rank (SIGTERM, once the first
    # has failed) before it gets to write its own
    assert len(lines) in (1, 2) and len(set(lines)) == 1, lines
    assert "--sync-bn needs GPUs" in lines[0], lines
    assert "[rank0]:" not in done.stderr and "[rank1]:" not in done.stderr  # no worker traceback
    assert "exitcode  : 2" in done.stderr  # torchrun's own report of its processes' exit codes
    assert not any(tmp_path.iterdir())  # nothing written


# ---- the parts, in one process ----------------------------------------------------------


def test_world_comes_from_torchruns_variables():
    assert World.from_env({}) == World()
    world = World.from_env(
        {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    )
    assert (world.rank, world.size, world.local_rank, world.launched) == (3, 4, 1, True)
    assert not world.writes and World.from_env({"RANK": "0", "WORLD_SIZE": "4"}).writes
    with pytest.raises(ConfigError, match="whole numbers"):
        World.from_env({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match=r"not in 0\.\.WORLD_SIZE-1"):
        World.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_devices_a_process_group_cannot_use_are_refused():
    launched = World(rank=0, size=2, local_size=2, launched=True)
    cpu = torch.device("cpu")
    config = cnnlab.TrainConfig(sync_bn=True)
    whole = (
        "--sync-bn needs GPUs (torch's SyncBatchNorm runs on CUDA only); remove it, and each "
        "process normalises with its own part of the batch"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(whole)}$"):
        process_device(cpu, config, World())
    assert process_device(cpu, cnnlab.TrainConfig(), launched) == cpu
    with pytest.raises(ConfigError, match="cuda or cpu"):
        process_device(torch.device("mps"), cnnlab.TrainConfig(), launched)


def test_collective_failures_are_told_from_the_models_own_errors():
    gloo = RuntimeError("[../gloo/transport/tcp/pair.cc:545] Read error: Connection reset")
    assert is_collective_failure(gloo)
    assert is_collective_failure(torch.distributed.DistError("anything"))
    assert not is_collective_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_a_signal_repeated_within_the_window_is_the_same_request():
    """Under torchrun Ctrl-C arrives twice (terminal and torchrun): one stop, not an abort."""
    with StopSignals(repeats_within=60.0) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT
    with StopSignals() as stop, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # a plain run: the second one stops now


def test_an_empty_part_gives_zero_gradients_through_the_fast_conv():
    """A last batch smaller than the world leaves a process an empty part; it still joins."""
    from cnnlab.models import create_model
    from cnnlab.training.fast_ops import use_fast_cpu_ops

    model = create_model("mnist_cnn", num_classes=4, in_channels=1, image_size=[28, 28])
    assert use_fast_cpu_ops(model)
    logits = model(torch.zeros(0, 1, 28, 28))
    (logits.sum() * 0.0).backward()
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


def test_dist_timeout_bounds_the_wait_for_a_process_that_never_comes(monkeypatch):
    """Rank 0 of 2 alone: the process group gives up after --dist-timeout (1 s, not 300).
    (torch's store adds a second: it gives up after 2 s.)"""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    started = time.monotonic()
    with (
        pytest.raises(LostContact, match=r"rank 0 .* while starting the process group"),
        process_group(World(rank=0, size=2, launched=True), torch.device("cpu"), timeout_s=1),
    ):
        pass
    assert 0.75 < time.monotonic() - started < 15


def test_sync_bn_gives_syncbatchnorm_layers_with_the_plain_models_state_dict(npz_data):
    """--sync-bn reaches the model (only under torchrun; its forward needs a process group)."""
    from cnnlab.data import load_dataset
    from cnnlab.training.session import _build_model

    data = load_dataset(npz_data)
    cfg = cnnlab.TrainConfig(model="net_batchnorm", sync_bn=True)
    cpu = torch.device("cpu")
    synced, _ = _build_model(cfg, data, cpu, fresh=True, world=World(size=2, launched=True))
    plain, _ = _build_model(cfg, data, cpu, fresh=True, world=World())
    kinds = {type(m) for m in synced.modules()}
    assert torch.nn.SyncBatchNorm in kinds and torch.nn.BatchNorm2d not in kinds
    assert torch.nn.SyncBatchNorm not in {type(m) for m in plain.modules()}
    assert synced.state_dict().keys() == plain.state_dict().keys()  # checkpoints load either way
