"""The HTML report: every section and image, self-contained, written when training ends."""

from __future__ import annotations

import base64
import io
import re
import shlex
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.cli import build_parser, main
from cnnlab.cli.options import given_values
from cnnlab.config.flags import command_line
from cnnlab.report.predictions import load_predictions
from cnnlab.report.run_report import SECTIONS, rerun_command
from helpers import skip_png_encoding


class Page(HTMLParser):
    """What a test needs of a page: section ids, image sources, table cells, all tags."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.tags: set[str] = set()
        self.cells: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(attrs["id"])
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def reported(tiny_report) -> tuple[Path, Page, str]:
    """The page `cnnlab report` wrote of a copy of tiny_run (conftest's tiny_report, which the
    browser tests read too), parsed, and that run."""
    text = tiny_report.page.read_text()
    return tiny_report.run, Page(text), text


def test_report_has_every_section_in_order(reported, tiny_report):
    _, page, _ = reported
    assert page.sections == list(SECTIONS)
    assert tiny_report.page.stat().st_mode & 0o044  # readable by others, like the PNGs


def test_every_image_is_an_embedded_png_that_decodes(reported):
    _, page, _ = reported
    assert len(page.images) >= 7  # curves, grid, confusion, per class, top losses, filters, maps
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        image = Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :])))
        image.load()
        assert image.width > 100 and image.height > 100


def test_report_is_self_contained(reported):
    _, page, text = reported
    assert "http://" not in text and "https://" not in text
    assert not page.tags & {"script", "link", "iframe", "object", "embed"}
    assert "<style>" in text  # styles inline


def test_report_tables_hold_the_runs_numbers(reported):
    run, page, text = reported
    metrics = cnnlab.report.read_run(run).metrics
    assert f"{metrics[-1]['test_accuracy']:.4f}" in page.cells
    assert f"{metrics[0]['train_loss']:.4f}" in page.cells
    predictions = load_predictions(run)
    for name, accuracy in zip(
        predictions.class_names, predictions.per_class_accuracy(), strict=True
    ):
        i = page.cells.index(name)
        assert page.cells[i + 1] == f"{accuracy:.4f}"
    parameters = cnnlab.report.read_run(run).info["parameters"]
    assert f"{parameters:,} parameters" in text
    for name in ("best.pt", "last.pt"):
        assert name in page.cells
    assert "receptive field" in page.cells  # the model summary's table


def test_the_epoch_table_marks_the_epoch_best_pt_holds(reported):
    run, _, text = reported
    record = cnnlab.report.read_run(run)
    epochs = re.search(r'<section id="epochs">.*?</section>', text, re.S).group(0)
    marked = re.findall(r'<tr class="chosen">(.*?)</tr>', epochs)
    assert len(marked) == 1 and epochs.count("best.pt</td>") == 1
    cells = re.findall(r"<td[^>]*>(.*?)</td>", marked[0])
    assert cells[0] == str(record.chosen_row["epoch"]) and cells[-1] == "←\u00a0best.pt"


def test_rerun_command_gives_back_the_same_config(reported):
    run, _, text = reported
    config = cnnlab.report.read_run(run).config
    command = rerun_command(config)
    assert command.replace("&", "&amp;").replace('"', "&quot;").replace("'", "&#x27;") in text
    argv = shlex.split(command)
    assert argv[:2] == ["cnnlab", "train"]
    args = build_parser().parse_args(argv[1:])
    again = cnnlab.TrainConfig.from_dict(given_values(args, cnnlab.TrainConfig))
    expected = {**config, "name": None, "overwrite": False}
    assert again.to_dict() == expected


def test_command_line_round_trips_every_kind_of_setting():
    config = cnnlab.TrainConfig(
        model="resnet_deep", model_args={"n_blocks": 3, "act": "relu", "text": "1.5", "on": True},
        lr=1e-3, betas=(0.8, 0.99), tensorboard=False, class_weights=[1.0, 2.5], image_size=64,
        seed=3, scheduler="cosine", data_dir="/some where/data",
    )  # fmt: skip
    argv = command_line(cnnlab.TrainConfig, config.to_dict())
    args = build_parser().parse_args(["train", *argv])
    assert cnnlab.TrainConfig.from_dict(given_values(args, cnnlab.TrainConfig)) == config
    assert "--epochs" not in argv  # defaults are left out


def test_report_command_writes_the_page_and_reuses_the_predictions(
    tiny_report, tmp_path, monkeypatch
):
    # the first command, `cnnlab report RUN --out PAGE` of a copy of tiny_run: conftest's
    # tiny_report (its page is the one the tests above read)
    assert tiny_report.code == 0, tiny_report.err
    assert f"wrote {tiny_report.page}" in tiny_report.out
    skip_png_encoding(monkeypatch)  # read as text: the tests above decode tiny_report's
    run = tmp_path / "tiny"
    shutil.copytree(tiny_report.run, run)  # copy2: the cache keeps its modification time
    cached = (run / "predictions.npz").stat().st_mtime_ns
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file()
    assert (run / "predictions.npz").stat().st_mtime_ns == cached


def test_training_writes_the_report_when_the_run_ends(
    npz_data, tmp_path, capsys, monkeypatch, reports_on
):
    skip_png_encoding(monkeypatch)  # read as text: the tests above decode tiny_report's
    result = cnnlab.train(
        model="mnist_cnn", dataset=npz_data, epochs=1, batch_size=64, out_dir=str(tmp_path),
        name="r", progress="lines", tensorboard=False,
    )  # fmt: skip
    out = capsys.readouterr().out
    assert f"report: {result.run_dir / 'report.html'}" in out
    assert out.rstrip().endswith(f"run directory: {result.run_dir}")  # still the last line
    assert Page((result.run_dir / "report.html").read_text()).sections == list(SECTIONS)
    cached = np.load(result.run_dir / "predictions.npz")
    assert len(cached["labels"]) == 128


def test_no_report_writes_none(npz_data, tmp_path, reports_on):
    result = cnnlab.train(
        model="mnist_cnn", dataset=npz_data, epochs=1, batch_size=64, out_dir=str(tmp_path),
        name="r", progress="none", tensorboard=False, report=False,
    )  # fmt: skip
    assert not (result.run_dir / "report.html").exists()
    assert not (result.run_dir / "predictions.npz").exists()


def test_a_report_that_cannot_be_made_does_not_fail_the_run(
    npz_data, tmp_path, capsys, monkeypatch, reports_on
):
    def fail(*args, **kwargs):
        raise cnnlab.DataNotFoundError("data set npz:/gone not found")

    monkeypatch.setattr("cnnlab.report.run_report.write_report", fail)
    result = cnnlab.train(
        model="mnist_cnn", dataset=npz_data, epochs=1, batch_size=64, progress="lines",
        out_dir=str(tmp_path), name="r", tensorboard=False,
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "report not written: data set npz:/gone not found" in out
    assert f"try `cnnlab report {result.run_dir}`" in out
    assert (result.run_dir / "best.pt").is_file()
