"""`cnnlab export CHECKPOINT --format onnx|torchscript|safetensors`: a file to deploy."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import add_command, command_config
from cnnlab.config import ExportConfig


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, ExportConfig, run_export,
        help="export a trained model to ONNX, TorchScript or safetensors",
        description=(
            "Export a trained model to a file that runs without cnnlab: ONNX (onnxruntime, "
            "a dynamic batch dimension), TorchScript (torch.jit.load, also from C++) or "
            "safetensors (weights only). Beside it goes a model card, <stem>.json: model "
            "name and arguments, class names, input shape, normalisation and metrics; ONNX "
            "and TorchScript files also carry it inside. The file is checked before it is "
            "kept: reloaded and run on test images of the run's data set (random inputs "
            "where the data set is not on this machine, and it says so), its logits must be "
            "within 1e-4 of PyTorch's; a file that fails is not written, and an existing "
            "file is replaced only by one that passed."
        ),
    )  # fmt: skip


def run_export(args: argparse.Namespace) -> None:
    from cnnlab.deploy.export import export_model

    cfg = command_config(args, ExportConfig)
    result = export_model(cfg)
    print(result)
