"""`cnnlab plot RUN` as the command runs it (cli/plot.py): its flags reach the plots' config,
and the summary it prints: the folder and each file written, the three most frequent mistakes
(or that there were none), and the accuracy on the split drawn, from which checkpoint.

Drawing a run's figures takes seconds and is checked in test_plots.py; here plot_run is
replaced by one that records its config and gives back file names and predictions made by
hand (helpers.hand_predictions), so each line can be told exactly.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.cli import main
from cnnlab.config import PlotConfig
from cnnlab.report import plots
from helpers import PNG_CLASSES, hand_predictions

NAMES = ["curves.png", "predictions.png", "confusion.png"]


def plot_by_hand(monkeypatch, folder: Path, predictions) -> list[PlotConfig]:
    """plot_run gives back NAMES in `folder` and `predictions`; the configs it was given."""
    given: list[PlotConfig] = []

    def by_hand(cfg):
        given.append(cfg)
        return [folder / name for name in NAMES], predictions

    monkeypatch.setattr(plots, "plot_run", by_hand)
    return given


def run_folder(tmp_path: Path) -> Path:
    (tmp_path / "run").mkdir()
    return tmp_path / "run"


def test_plot_prints_the_files_the_three_most_frequent_mistakes_and_the_accuracy(
    tmp_path, monkeypatch, capsys
):
    # ant 0, bee 1, cat 2: bee read as ant 4 times, cat as bee 3, ant as cat 2, cat as ant once
    mistakes = [(1, 0)] * 4 + [(2, 1)] * 3 + [(0, 2)] * 2 + [(2, 0)]
    right = [(0, 0)] * 5 + [(1, 1)] * 3 + [(2, 2)] * 2
    labels, predicted = zip(*(mistakes + right), strict=True)
    out = tmp_path / "figures"
    given = plot_by_hand(monkeypatch, out, hand_predictions(labels, predicted, PNG_CLASSES))
    run = run_folder(tmp_path)
    argv = ["plot", str(run), "--out", str(out), "--device", "cpu", "--data-dir", str(tmp_path)]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"wrote 3 files to {out}/",
        "  curves.png",
        "  predictions.png",
        "  confusion.png",
        "most confused: bee → ant 4×, cat → bee 3×, ant → cat 2×",
        "accuracy: 0.5000 (10 of 20 test images, best.pt)",
    ]
    assert given == [PlotConfig(run=str(run), out=str(out), device="cpu", data_dir=str(tmp_path))]


def test_plot_of_a_model_without_mistakes_says_so(tmp_path, monkeypatch, capsys):
    right = hand_predictions([0, 1, 2, 2], [0, 1, 2, 2], PNG_CLASSES, split="val",
                             checkpoint="last.pt")  # fmt: skip
    run = run_folder(tmp_path)
    plot_by_hand(monkeypatch, run / "plots", right)
    assert main(["plot", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"wrote 3 files to {run / 'plots'}/"
    assert lines[-2:] == [
        "most confused: nothing (no mistakes)",
        "accuracy: 1.0000 (4 of 4 validation images, last.pt)",
    ]
