"""`cnnlab predict MODEL_FILE INPUT...`: the top classes of image files."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import add_command, given_values
from cnnlab.config import PredictConfig

MODEL_FILE_HELP = (
    "a run folder (its best.pt), a .pt checkpoint, or a file from `cnnlab export` "
    "(.onnx, .safetensors with its .json, .torchscript.pt)"
)
INPUTS_HELP = "image files, folders (every image in them, recursively) and quoted globs"


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, PredictConfig, run_predict,
        help="predict the classes of image files with a trained or exported model",
        description=(
            "Predict the classes of image files. Each image is converted as the model was "
            "trained (grayscale or RGB, resized to its input size, normalised with its mean "
            "and std, all read from the model file) and run in batches. Prints each file "
            "with its top-k classes and their probabilities; --csv writes every row. An "
            "image that cannot be used is named with the reason and the others still run; "
            "the exit code is 2 only when nothing could be predicted."
        ),
        usage="cnnlab predict MODEL_FILE INPUT [INPUT ...] [--top-k K] [--csv FILE] "
        "[--batch-size N] [--device D]",
        leading=(
            ("model_file", dict(metavar="MODEL_FILE", help=MODEL_FILE_HELP)),
            ("inputs", dict(nargs="+", metavar="INPUT", help=INPUTS_HELP)),
        ),
    )  # fmt: skip


def run_predict(args: argparse.Namespace) -> int:
    from cnnlab.deploy.predictor import predict_command

    cfg = PredictConfig.from_dict(given_values(args, PredictConfig), source="cnnlab predict")
    return predict_command(args.model_file, args.inputs, cfg)
