"""Details of a run's report (report/run_report.py): what write_report hands on (the run folder
it read, the page file, the device, the data folder and the data given in Python), its refusals
(no run folder, a value of the wrong type, a page it cannot put or write; one line each), a
metrics.jsonl cut short (read in part, and said through `warn`); the page's section titles, the
subtitle (model, data, epochs, final accuracy) and the default device of its plots; the final
accuracy sentence of a run that measures its test split and of one that does not; and the
rerun command, which always names the model, the data set and the epochs and never --overwrite.

The run folders are a config.json and a few epoch rows written by hand, and write_report's
predictions and page are stand-ins (what it hands on is checked, not drawn), so each test takes
milliseconds; the page is rendered once, of conftest's tiny_run (read only) with 8 predictions
made by hand and its plots left out (test_report.py checks a whole page, its images and
tables). These tests exist because docs/TESTING.md's mutation run showed these paths untested
(survivors of mutmut in report/run_report.py).
"""

from __future__ import annotations

import errno
import html
import json
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

import cnnlab
from cnnlab import files
from cnnlab.config import ReportConfig
from cnnlab.errors import ConfigError
from cnnlab.report import run_report
from cnnlab.report.predictions import Predictions
from cnnlab.report.run_folder import RunRecord, read_run
from cnnlab.report.run_report import final_accuracy_text, render_report, rerun_command, write_report
from helpers import skip_png_encoding

CUT_ROW = '\n{"epoch": 3, "tr'  # the last line of metrics.jsonl, cut short by a kill


def run_folder(root: Path, tail: str = "") -> Path:
    """A run folder as read_run reads it: config.json and two epoch rows (then `tail`)."""
    run = root / "run"
    run.mkdir()
    config = {"model": "mnist_cnn", "dataset": "npz:/data/shapes", "epochs": 3, "name": "run"}
    (run / "config.json").write_text(json.dumps({"config": config}))
    rows = [json.dumps({"epoch": n, "train_loss": 0.5, "test_accuracy": 0.5}) for n in (1, 2)]
    (run / "metrics.jsonl").write_text("\n".join(rows) + (tail or "\n"))
    return run


@pytest.fixture
def handed_on(monkeypatch: pytest.MonkeyPatch) -> dict:
    """What write_report hands to load_predictions and render_report, which are stand-ins here:
    the predictions are "PREDICTIONS" and the page is "<page>"."""
    seen: dict = {}

    def predictions(record, **kwargs):
        seen["predictions"] = (record.path, kwargs)
        return "PREDICTIONS"

    def page(record, predictions, **kwargs):
        seen["page"] = (record.path, predictions, kwargs)
        return "<page>"

    monkeypatch.setattr(run_report, "load_predictions", predictions)
    monkeypatch.setattr(run_report, "render_report", page)
    return seen


def test_write_report_hands_on_the_device_data_folder_and_data_and_writes_out(tmp_path, handed_on):
    run, out, data = run_folder(tmp_path), tmp_path / "page.html", object()
    path = write_report(run, out, device="cpu", data_dir=tmp_path / "data", data=data)
    assert path == out and out.read_text() == "<page>"
    assert not (run / "report.html").exists()  # --out given: nothing in the run folder
    # the data folder as text (a Path becomes its text), the data given in Python as it is
    kwargs = {"device": "cpu", "data_dir": str(tmp_path / "data"), "data": data}
    assert handed_on["predictions"] == (run, kwargs)
    # the plots that load the model go on the same device
    assert handed_on["page"] == (run, "PREDICTIONS", {"device": "cpu"})


def test_write_report_defaults_to_the_run_folder_and_the_auto_device(tmp_path, handed_on):
    run = run_folder(tmp_path)
    assert write_report(run) == run / "report.html"
    assert (run / "report.html").read_text() == "<page>"
    kwargs = {"device": "auto", "data_dir": None, "data": None}
    assert handed_on["predictions"] == (run, kwargs)
    assert handed_on["page"] == (run, "PREDICTIONS", {"device": "auto"})


def test_write_report_of_no_run_folder_says_to_give_one():
    with pytest.raises(ConfigError) as err:
        write_report(ReportConfig())
    assert str(err.value) == "give a run folder"


def test_a_value_of_the_wrong_type_names_write_report_and_the_argument(tmp_path):
    with pytest.raises(ConfigError) as err:
        write_report(tmp_path, out=5)
    assert str(err.value) == "write_report: out must be a string, got 5"


def test_a_page_in_a_missing_folder_is_refused_before_anything_is_computed(tmp_path, handed_on):
    run, out = run_folder(tmp_path), tmp_path / "missing" / "page.html"
    with pytest.raises(ConfigError) as err:
        write_report(run, out)
    assert str(err.value) == (
        f"report file {out} is in a folder that does not exist; give --out a file in an "
        "existing folder"
    )
    assert handed_on == {}  # no predictions computed


def test_a_page_that_cannot_be_written_is_one_line_naming_it(tmp_path, handed_on, monkeypatch):
    def full_disk(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "publish_text", full_disk)
    run = run_folder(tmp_path)
    with pytest.raises(ConfigError) as err:
        write_report(run)
    assert str(err.value) == f"cannot write {run / 'report.html'}: No space left on device"


def test_a_metrics_row_cut_short_is_read_in_part_and_told_to_warn(tmp_path, handed_on):
    run, told = run_folder(tmp_path, CUT_ROW), []
    # the page is still written, and `warn` (not Python's warnings) hears why, once
    assert write_report(run, warn=told.append) == run / "report.html"
    assert told == [
        f"{run / 'metrics.jsonl'} line 3 is not a complete JSON row (cut short by a kill while "
        "it was written); read the 2 epochs before it"
    ]


# --- the page -----------------------------------------------------------------------------------


TITLES = [
    ("what-ran", "What ran"), ("environment", "Environment"), ("model", "Model"),
    ("epochs", "Epochs"), ("plots", "Plots"), ("per-class-accuracy", "Per-class accuracy"),
    ("calibration", "Calibration"), ("checkpoints", "Checkpoints"),
]  # fmt: skip


class Rendered(NamedTuple):
    record: RunRecord
    page: str
    plot_devices: list[str]  # the device each call of the Plots section was given


@pytest.fixture(scope="module")
def rendered(tiny_run: Path) -> Rendered:
    """render_report of tiny_run (read only) with its default device, on 8 predictions made by
    hand (6 right); the Plots section is a stand-in that notes its device (test_report.py
    checks the real one) and the calibration figure is not encoded."""
    labels = np.arange(8, dtype=np.int64) % 4
    predicted = np.where(np.arange(8) < 6, labels, (labels + 1) % 4)
    predictions = Predictions(
        checkpoint="best.pt", digest="0" * 64, class_names=[f"class{k}" for k in range(4)],
        labels=labels, predicted=predicted, confidence=np.full(8, 0.9, np.float32),
        p_true=np.full(8, 0.5, np.float32), image_index=np.zeros(0, np.int64),
        images=np.zeros((0, 1, 28, 28), np.uint8),
    )  # fmt: skip
    devices: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        skip_png_encoding(patch)
        patch.setattr(run_report, "plots", lambda r, p, device: devices.append(device) or "")
        record = read_run(tiny_run)
        return Rendered(record, render_report(record, predictions), devices)


def test_the_page_has_each_section_titled_one_after_another(rendered):
    found = re.findall(r'<section id="([a-z-]+)">\n<h2>([^<]*)</h2>\n', rendered.page)
    assert found == TITLES
    # the sections follow each other with nothing between them, and each holds its part
    body = rendered.page[rendered.page.index("<section") : rendered.page.index("</body>")]
    sections = re.findall(r"<section id=.*?\n</section>\n", body, re.DOTALL)
    assert "".join(sections) == body
    environment, calibration = sections[1], sections[6]
    assert "<th>device</th>" in environment
    assert 'alt="calibration.png"' in calibration and "<p>" in calibration


def test_the_subtitle_names_model_data_epochs_and_final_accuracy(rendered):
    config, accuracy = rendered.record.config, rendered.record.metrics[-1]["test_accuracy"]
    subtitle = f"mnist_cnn on {config['dataset']}, 3 epochs, final test accuracy {accuracy:.4f}"
    assert f'<h1>cnnlab run tiny</h1>\n<p class="sub">{html.escape(subtitle)}</p>\n' in (
        rendered.page
    )


def test_render_report_draws_the_plots_on_the_auto_device_unless_told(rendered):
    # auto: cuda, then mps, then cpu (any other default is refused or pins one device)
    assert rendered.plot_devices == ["auto"]


# --- the final accuracy -------------------------------------------------------------------------


def record(rows: list[dict], **config) -> RunRecord:
    """A run of these epoch rows; its folder `/runs/r` is never read."""
    values = {"model": "mnist_cnn", "dataset": "npz:/data/a", "epochs": len(rows), **config}
    return RunRecord(Path("/runs/r"), {"config": values}, rows)


def test_final_accuracy_is_the_last_epochs_test_accuracy():
    rows = [{"epoch": 1, "test_accuracy": 0.5}, {"epoch": 2, "test_accuracy": 0.875}]
    assert final_accuracy_text(record(rows)) == ", final test accuracy 0.8750"


def test_no_final_accuracy_when_the_last_epoch_was_not_evaluated():
    rows = [{"epoch": 1, "test_accuracy": 0.5}, {"epoch": 2, "train_loss": 0.1}]
    assert final_accuracy_text(record(rows)) == ""


def test_a_run_without_test_split_gives_its_last_validation_accuracy():
    # --no-eval-test: the last epoch's (not the first's nor the second last's) validation
    # accuracy, saying the test split was not measured
    rows = [{"epoch": n, "val_accuracy": a} for n, a in ((1, 0.5), (2, 0.625), (3, 0.75))]
    text = final_accuracy_text(record(rows, eval_test=False))
    assert text == ", final validation accuracy 0.7500 (test split not measured)"


def test_no_final_accuracy_when_a_run_without_test_split_did_not_validate_last():
    rows = [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "train_loss": 0.1}]
    assert final_accuracy_text(record(rows, eval_test=False)) == ""


# --- the rerun command --------------------------------------------------------------------------


def test_the_rerun_command_always_names_model_data_and_epochs_and_never_overwrite():
    # all defaults: still said, so the command reads on its own (and a later default does not
    # change what it runs); --overwrite would replace the run it came from
    config = cnnlab.TrainConfig(name="mine", overwrite=True).to_dict()
    assert rerun_command(config) == "cnnlab train --model lenet --dataset fashion-mnist --epochs 10"
