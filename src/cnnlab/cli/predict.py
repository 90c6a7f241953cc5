"""`cnnlab predict MODEL_FILE INPUT...`: the top classes of image files, printed a line per
image as batches finish, skipped inputs on stderr, and --csv. Predicting is
cnnlab.deploy.predictor's; what the command prints and writes is this file's. deploy.predictor
(and torch) is imported only once the command runs, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.cli.options import add_command, command_config
from cnnlab.config import PredictConfig
from cnnlab.errors import DataFormatError

if TYPE_CHECKING:
    from cnnlab.deploy.predictor import Prediction, Predictor

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
    cfg = command_config(args, PredictConfig)
    return predict_command(args.model_file, args.inputs, cfg)


def predict_command(model_file: str, inputs: Sequence[str], cfg: PredictConfig) -> int:
    """`cnnlab predict`: a line per image as batches finish, failures on stderr, a summary;
    exit 0 when anything was predicted, else a CnnlabError (exit 2)."""
    cfg.validate()
    csv_path = _csv_target(cfg.csv)  # before torch is imported: a typo costs nothing

    from cnnlab.deploy.predictor import Predictor, find_images

    predictor = Predictor(model_file, cfg.device, cfg.batch_size)
    start = time.perf_counter()
    files, failures = find_images(inputs)
    out = _Output(predictor, files, failures)
    for rows, batch_failures in predictor.predict_files(files, cfg.top_k):
        out.add(rows, batch_failures)
    if not out.rows:
        raise out.nothing_predicted()
    seconds = time.perf_counter() - start
    print(summary_line(len(out.rows), len(out.failures), seconds))
    if csv_path is not None:
        write_csv(csv_path, out.rows)
        print(f"wrote {len(out.rows)} rows to {csv_path}")
    return 0


class _Output:
    """The lines of `cnnlab predict`: rows on stdout, skipped inputs on stderr. Failures wait
    until the first row is printed: when nothing can be predicted, a lone failure is the
    command's one error line, not a skipped line and then an error."""

    def __init__(self, predictor: Predictor, files: list[str], failures: list[tuple[str, str]]):
        self.rows: list[Prediction] = []
        self.failures: list[tuple[str, str]] = []
        self.file_width = max(map(len, files), default=0)
        self.class_width = max(map(len, predictor.class_names), default=0)
        self._held = list(failures)

    def add(self, rows: list[Prediction], failures: list[tuple[str, str]]) -> None:
        self._held += failures
        if not rows and not self.rows:
            return
        for given, reason in self._held:
            print(skipped_line(given, reason), file=sys.stderr)
        self.failures += self._held
        self._held = []
        for row in rows:
            print(row_line(row, self.file_width, self.class_width))
        self.rows += rows

    def nothing_predicted(self) -> DataFormatError:
        if len(self._held) == 1:
            return DataFormatError(self._held[0][1])
        for given, reason in self._held:
            print(skipped_line(given, reason), file=sys.stderr)
        if not self._held:  # only an empty list of inputs gets here; argparse forbids it
            return DataFormatError("nothing could be predicted: no inputs; give image files")
        return DataFormatError(
            f"nothing could be predicted: all {len(self._held)} inputs above were skipped; "
            "give image files PIL can read, folders holding them, or quoted globs"
        )


def row_line(row: Prediction, file_width: int, class_width: int) -> str:
    """`shoe.png  Sneaker     0.912  Sandal      0.051`: file, then class and probability pairs,
    padded so that the columns line up."""
    pairs = "  ".join(
        f"{name:<{class_width}} {prob:.3f}"
        for name, prob in zip(row.classes, row.probabilities, strict=True)
    )
    return f"{row.file or '':<{file_width}}  {pairs}"


def skipped_line(given: str, reason: str) -> str:
    """`skipped photos/x.png: is not an image file ...`: the reason without its own copy of
    the file name (read_image's messages start with it)."""
    for prefix in (f"{given} ", f"image {given} ", f"folder {given} "):
        if reason.startswith(prefix):
            return f"skipped {given}: {reason[len(prefix) :]}"
    return f"skipped {given}: {reason}"


def summary_line(predicted: int, skipped: int, seconds: float) -> str:
    rate = predicted / seconds if seconds > 0 else float("inf")
    images = f"{predicted} image{'s' if predicted != 1 else ''}"
    line = f"predicted {images} in {seconds:.2f} s ({rate:.0f} images/s)"
    return line + (f", {skipped} skipped" if skipped else "")


def _csv_target(csv_file: str | None) -> Path | None:
    if csv_file is None:
        return None
    from cnnlab.files import check_output_file

    return check_output_file(csv_file, "--csv", "give a file name in an existing folder")


def csv_text(rows: Sequence[Prediction]) -> str:
    """`file,class_1,probability_1,...,class_k,probability_k`, probabilities to 6 decimals."""
    k = max((len(row.classes) for row in rows), default=0)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["file", *[f"{kind}_{i}" for i in range(1, k + 1) for kind in ("class", "probability")]]
    )
    for row in rows:
        pairs = [
            value
            for name, prob in zip(row.classes, row.probabilities, strict=True)
            for value in (name, f"{prob:.6f}")
        ]
        writer.writerow([row.file or "", *pairs])
    return buffer.getvalue()


def write_csv(path: Path, rows: Sequence[Prediction]) -> None:
    from cnnlab.files import publish_text, write_failure_as_config_error

    text = csv_text(rows)
    with write_failure_as_config_error(path, "--csv"):
        publish_text(path, text)
