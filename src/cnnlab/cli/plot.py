"""`cnnlab plot RUN`: a run's curves, predictions, confusion matrix and filters as PNG files."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import add_command, command_config
from cnnlab.config import PlotConfig


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, PlotConfig, run_plot,
        help="draw a run's curves, predictions and confusion matrix as PNG files",
        description=(
            "Draw a finished (or stopped) run as PNG files in RUN/plots (or --out): loss, "
            "accuracy and learning rate per epoch (curves.png), the first 30 test images with "
            "their predicted class, mistakes in red (predictions.png), the confusion matrix "
            "(confusion.png), accuracy per class (per_class.png), the most confident mistakes "
            "(top_losses.png), the first conv layer's filters (filters.png) and test image "
            "0's feature maps (maps-NN-<layer>.png). The model's test-split predictions are "
            "computed once, from best.pt (else last.pt), and kept in RUN/predictions.npz. A run "
            "trained with --no-eval-test is drawn on its validation split instead: its test "
            "split is never measured."
        ),
    )  # fmt: skip


def run_plot(args: argparse.Namespace) -> None:
    from cnnlab.report.plots import plot_run

    cfg = command_config(args, PlotConfig)
    paths, predictions = plot_run(cfg)
    print(f"wrote {len(paths)} files to {paths[0].parent}/")
    for path in paths:
        print(f"  {path.name}")
    names = predictions.class_names
    pairs = [f"{names[t]} → {names[p]} {n}×" for t, p, n in predictions.most_confused(3)]
    print(f"most confused: {', '.join(pairs) or 'nothing (no mistakes)'}")
    total = len(predictions.labels)
    print(
        f"accuracy: {predictions.accuracy:.4f} ({predictions.correct} of {total} "
        f"{predictions.split_name} images, {predictions.checkpoint})"
    )
