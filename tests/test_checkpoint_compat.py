"""Checkpoints written by earlier cnnlab versions load and resume; newer ones are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.training import checkpoint as ckpt
from cnnlab.training.session import build_session
from cnnlab.training.trainer import run
from helpers import write_learnable_npz

OLD = Path(__file__).parent / "data" / "checkpoint-v1-mnist_cnn.pt"


def test_a_checkpoint_from_before_the_session_split_rebuilds_its_model():
    saved = cnnlab.load_checkpoint(OLD)
    model = cnnlab.rebuild_model(saved).eval()
    assert model.model_name == "mnist_cnn"
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved["model_state"][name]), name
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 4)


def test_a_checkpoint_from_before_the_session_split_resumes(tmp_path):
    saved = ckpt.load_checkpoint(OLD)
    data = write_learnable_npz(tmp_path / "data", train=64, test=32, size=16)
    run_dir = tmp_path / "runs" / "old"
    run_dir.mkdir(parents=True)
    shutil.copy(OLD, run_dir / "last.pt")
    # the data set's path is the old machine's: point the same config at the same-shaped data
    # (saved before validation splits: read as the run it was, every image trained on)
    assert "test_fraction" not in saved["config"] and "early_stop" not in saved
    old_config = cnnlab.config.saved_train_values(saved["config"])
    values = {**old_config, "dataset": f"npz:{data}", "epochs": 2, "progress": "none"}
    values.update(out_dir=str(run_dir.parent), name="old")
    cfg = cnnlab.TrainConfig.from_dict(values)
    session = build_session(cfg, saved)
    # everything the old file holds is back: weights, momentum buffers, counters, metrics
    restored = session.parts.optimizer.state_dict()["state"]
    assert restored and all(
        torch.equal(restored[k]["momentum_buffer"], v["momentum_buffer"])
        for k, v in saved["optimizer_state"]["state"].items()
    )
    assert (session.state.epoch, session.state.step) == (saved["epoch"], saved["step"]) == (1, 2)
    assert session.parts.val_loader is None and session.facts["selection"] == "test"
    result = run(session)
    assert [row["epoch"] for row in result.metrics] == [1, 2]
    assert result.metrics[0] == saved["metrics"][0]  # the old epoch's row, untouched
    assert result.metrics[1]["step"] == 4
    assert ckpt.load_checkpoint(run_dir / "last.pt")["finished"]


def test_a_checkpoint_from_a_newer_cnnlab_is_refused_in_one_line(tmp_path):
    state = ckpt.load_checkpoint(OLD)
    state["version"] = ckpt.VERSION + 1
    ckpt.save_checkpoint(state, tmp_path / "new.pt")
    with pytest.raises(cnnlab.CheckpointError) as info:
        cnnlab.load_checkpoint(tmp_path / "new.pt")
    assert "newer cnnlab" in str(info.value) and "\n" not in str(info.value)
