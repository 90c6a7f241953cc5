"""`cnnlab eval CHECKPOINT`: test loss, accuracy and accuracy per class."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import add_command, command_config
from cnnlab.config import EvalConfig


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, EvalConfig, run_eval, help="evaluate a checkpoint on a test split",
        description="Evaluate a checkpoint: test loss, accuracy and accuracy per class (and "
        "the accuracy on the exact images alone, where the data set marks some: test.npz's "
        "`exact`).",
    )  # fmt: skip


def run_eval(args: argparse.Namespace) -> None:
    from cnnlab.training.evaluation import evaluate_checkpoint

    cfg = command_config(args, EvalConfig)
    result, class_names = evaluate_checkpoint(cfg)
    print(f"{cfg.split} loss      {result.loss:.4f}")
    print(
        f"{cfg.split} accuracy  {result.accuracy:.4f}  ({sum(result.per_class_correct)}"
        f"/{sum(result.per_class_total)})"
    )
    if result.exact is not None:
        exact = result.exact
        print(
            f"{cfg.split} accuracy on its exact images  {exact.accuracy:.4f}  "
            f"({sum(exact.per_class_correct)}/{sum(exact.per_class_total)}; the others are "
            "lossy copies)"
        )
    width = max(len(n) for n in class_names)
    for name, acc, total in zip(
        class_names, result.per_class_accuracy, result.per_class_total, strict=True
    ):
        print(f"  {name:<{width}}  {acc:.4f}  (n={total})")
