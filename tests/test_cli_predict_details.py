"""What `cnnlab predict` itself prints and writes (cli/predict.py): each row's padded columns,
the summary line, rows printed as their batch finishes with skipped inputs between them, the one
error line when nothing could be predicted, --csv's exact text, and its refusals.

The model is a checkpoint made here whose weights are all 0 but the last bias, so that every
image gets the same probabilities (bumblebee 0.7, ant 0.2, cat 0.1) and each line is known
exactly; building it takes milliseconds. test_predict.py checks the probabilities themselves.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import re
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.cli.predict import csv_text, predict_command, row_line, summary_line
from cnnlab.config import PredictConfig
from cnnlab.deploy.predictor import Predictor
from cnnlab.errors import DataFormatError

CLASSES = ["cat", "bumblebee", "ant"]  # the longest is 9 letters; the best is not the first
PROBABILITIES = [0.1, 0.7, 0.2]
PAIRS = "bumblebee 0.700  ant       0.200  cat       0.100"  # top 3, padded to 9
NOT_AN_IMAGE = "is not an image file PIL can read (PNG, JPEG, BMP, GIF, TIFF, WebP, ...)"
DOES_NOT_EXIST = "does not exist; give image files, folders or quoted globs"
SUMMARY = r"predicted (\d+) images? in (\d+\.\d\d) s \((\d+|inf) images/s\)(, \d+ skipped)?"


class Files(NamedTuple):
    model: Path
    short: Path  # an image with a short name
    long: Path  # an image with a longer name: the file column's width
    bad: Path  # a .png that is not an image
    missing: Path  # nothing there


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    from cnnlab.models import create_model
    from cnnlab.training.checkpoint import FORMAT, VERSION, save_checkpoint

    folder = tmp_path_factory.mktemp("predict_details")
    model = create_model("net", num_classes=3, in_channels=1, image_size=(8, 8))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.fc2.bias.copy_(torch.tensor([math.log(p) for p in PROBABILITIES]))
    save_checkpoint(
        {
            "format": FORMAT, "version": VERSION, "model_name": "net",
            "model_args": dict(model.model_args), "class_names": CLASSES, "mean": [0.5],
            "std": [0.25], "input_shape": [1, 8, 8], "dataset": "test", "config": {},
            "model_state": model.state_dict(),
        },
        folder / "fixed.pt",
    )  # fmt: skip
    short, long = folder / "a.png", folder / "a-longer-name.png"
    for path in (short, long):
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(path)
    (folder / "bad.png").write_bytes(b"\x89PNG not really")
    return Files(folder / "fixed.pt", short, long, folder / "bad.png", folder / "missing.png")


def predict(files: Files, *args: object) -> int:
    return main(["predict", str(files.model), *map(str, args), "--device", "cpu"])


def test_rows_pad_the_file_and_class_columns_to_line_up(files, capsys):
    assert predict(files, files.short, files.long) == 0
    out, err = capsys.readouterr()
    width = len(str(files.long))
    lines = out.splitlines()
    assert lines[:2] == [f"{files.short!s:<{width}}  {PAIRS}", f"{files.long}  {PAIRS}"]
    assert re.fullmatch(SUMMARY, lines[2]) and lines[2].startswith("predicted 2 images in ")
    assert len(lines) == 3 and err == ""


def test_rows_print_as_their_batch_finishes_with_skipped_inputs_between(files):
    both = io.StringIO()  # stdout and stderr in the order they were written
    with contextlib.redirect_stdout(both), contextlib.redirect_stderr(both):
        args = (files.missing, files.short, files.bad, files.long, "--batch-size", "1")
        assert predict(files, *args) == 0
    lines = both.getvalue().splitlines()
    width = len(str(files.long))
    assert lines[:4] == [
        f"skipped {files.missing}: {DOES_NOT_EXIST}",  # held until the first row
        f"{files.short!s:<{width}}  {PAIRS}",
        f"skipped {files.bad}: {NOT_AN_IMAGE}",  # its own batch: printed at once
        f"{files.long}  {PAIRS}",
    ]
    assert re.fullmatch(SUMMARY, lines[4]) and len(lines) == 5
    assert lines[4].startswith("predicted 2 images in ") and lines[4].endswith(", 2 skipped")


def test_the_summary_gives_the_seconds_the_command_took(files, capsys):
    start = time.perf_counter()
    assert predict(files, files.short) == 0
    took = time.perf_counter() - start
    summary = re.fullmatch(SUMMARY, capsys.readouterr().out.splitlines()[-1])
    assert summary and summary[1] == "1"
    assert 0 <= float(summary[2]) <= took + 0.005  # printed to 2 decimals


@pytest.mark.parametrize(
    "predicted, skipped, seconds, line",
    [
        (1, 0, 0.5, "predicted 1 image in 0.50 s (2 images/s)"),
        (2, 3, 0.25, "predicted 2 images in 0.25 s (8 images/s), 3 skipped"),
        (3, 1, 0.0, "predicted 3 images in 0.00 s (inf images/s), 1 skipped"),
    ],
)
def test_summary_line_counts_images_rate_and_skipped(predicted, skipped, seconds, line):
    assert summary_line(predicted, skipped, seconds) == line


def test_csv_holds_every_row_with_probabilities_to_6_decimals(files, tmp_path, capsys):
    out_csv = tmp_path / "out.csv"
    args = (files.long, files.short, "--top-k", "2", "--csv", out_csv)
    assert predict(files, *args) == 0
    assert out_csv.read_bytes().decode() == (
        "file,class_1,probability_1,class_2,probability_2\n"
        f"{files.long},bumblebee,0.700000,ant,0.200000\n"
        f"{files.short},bumblebee,0.700000,ant,0.200000\n"
    )
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote 2 rows to {out_csv}"


def test_rows_of_decoded_images_have_an_empty_file_column(files):
    predictor = Predictor(files.model, device="cpu")
    rows = predictor.predict_images(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), top_k=2)
    assert rows[0].file is None
    assert row_line(rows[0], 0, 9) == "  bumblebee 0.700  ant       0.200"
    assert csv_text(rows) == (
        "file,class_1,probability_1,class_2,probability_2\n,bumblebee,0.700000,ant,0.200000\n"
    )


def test_csv_of_no_rows_is_the_header_alone():
    assert csv_text([]) == "file\n"


def test_a_csv_in_a_missing_folder_is_refused_before_predicting(files, tmp_path, capsys):
    out_csv = tmp_path / "no-such-folder" / "out.csv"
    assert predict(files, files.short, "--csv", out_csv) == 2
    assert capsys.readouterr() == (
        "",
        f"error: --csv {out_csv} is in a folder that does not exist; give a file name in an "
        "existing folder\n",
    )


def test_a_csv_that_cannot_be_written_is_one_error_line(files, tmp_path, capsys, monkeypatch):
    from cnnlab import files as cnnlab_files

    def full_disk(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cnnlab_files, "publish_text", full_disk)
    out_csv = tmp_path / "out.csv"
    assert predict(files, files.short, "--csv", out_csv) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot write --csv {out_csv}: No space left on device\n"
    assert not out_csv.exists()


def test_one_unusable_input_is_the_error_line_itself(files, capsys):
    assert predict(files, files.bad) == 2
    assert capsys.readouterr() == ("", f"error: {files.bad} {NOT_AN_IMAGE}\n")


def test_several_unusable_inputs_are_each_skipped_then_one_error(files, capsys):
    assert predict(files, files.bad, files.missing) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"skipped {files.missing}: {DOES_NOT_EXIST}",  # found missing before any file is read
        f"skipped {files.bad}: {NOT_AN_IMAGE}",
        "error: nothing could be predicted: all 2 inputs above were skipped; give image files "
        "PIL can read, folders holding them, or quoted globs",
    ]


def test_no_inputs_at_all_is_refused_saying_so(files, capsys):
    with pytest.raises(DataFormatError) as info:
        predict_command(str(files.model), [], PredictConfig(device="cpu"))
    assert str(info.value) == "nothing could be predicted: no inputs; give image files"
    assert capsys.readouterr() == ("", "")
