"""`cnnlab eval CHECKPOINT` as the command runs it (cli/evaluate.py): the loss line, the
accuracy line with its count of right answers, and one aligned line per class with its
accuracy and number of images.

The checkpoint is the session's `tiny_run` (4 classes, 128 test images, 16 of them labelled
as the next class); its metrics.jsonl holds what the run measured on the same split. The
column widths are checked on an evaluation made by hand, with class names of several lengths.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.config import EvalConfig
from cnnlab.training import evaluation
from cnnlab.training.loop import EvalResult


def test_eval_prints_the_runs_loss_accuracy_and_each_class(tiny_run, capsys):
    last = json.loads((tiny_run / "metrics.jsonl").read_text().splitlines()[-1])
    dataset = json.loads((tiny_run / "config.json").read_text())["config"]["dataset"]
    with np.load(Path(dataset.removeprefix("npz:")) / "test.npz") as test:
        totals = np.bincount(test["y"], minlength=4).tolist()
    assert main(["eval", str(tiny_run / "last.pt")]) == 0
    loss, accuracy, *classes = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"test loss      \d\.\d{4}", loss)
    assert float(loss.split()[-1]) == pytest.approx(last["test_loss"], abs=2e-4)
    right = round(last["test_accuracy"] * 128)
    assert accuracy == f"test accuracy  {last['test_accuracy']:.4f}  ({right}/128)"
    rows = [re.fullmatch(r"  (class\d)  (\d\.\d{4})  \(n=(\d+)\)", line) for line in classes]
    assert all(rows), classes
    assert [row[1] for row in rows] == ["class0", "class1", "class2", "class3"]
    assert [int(row[3]) for row in rows] == totals
    # each class's accuracy of its n images adds up to the images right in all
    assert sum(round(float(row[2]) * int(row[3])) for row in rows) == right


def test_eval_lines_are_aligned_under_the_longest_class_name(tmp_path, monkeypatch, capsys):
    checkpoint = tmp_path / "m.pt"
    checkpoint.touch()  # the command line checks it exists; the evaluation is made by hand
    seen: list[EvalConfig] = []

    def by_hand(cfg: EvalConfig):
        seen.append(cfg)
        return EvalResult(0.5, 0.75, [3, 0, 9], [4, 2, 10]), ["cat", "hippo", "ox"]

    monkeypatch.setattr(evaluation, "evaluate_checkpoint", by_hand)
    argv = ["eval", str(checkpoint), "--split", "val", "--batch-size", "7", "--device", "cpu"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        "val loss      0.5000",
        "val accuracy  0.7500  (12/16)",
        "  cat    0.7500  (n=4)",
        "  hippo  0.0000  (n=2)",
        "  ox     0.9000  (n=10)",
    ]
    [cfg] = seen
    assert cfg == EvalConfig(checkpoint=str(checkpoint), split="val", batch_size=7, device="cpu")
