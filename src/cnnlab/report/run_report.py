"""`cnnlab report RUN` → RUN/report.html: one self-contained page about a run.

What ran (model, data, settings, the command that runs it again), the environment, the model
summary with receptive fields, the per-epoch table, every plot of `cnnlab plot`, accuracy per
class and the checkpoints. Predictions come from RUN/predictions.npz (computed once), so writing
the page again is quick. `cnnlab train` writes it when a run ends (`--no-report` to skip).

A run trained with --no-eval-test (a sweep's trial) never measured its test split, and its
report does not either: the predictions, plots and per-class accuracy are the validation
split's, and every text says so.
"""

from __future__ import annotations

import shlex
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab.config import ReportConfig, TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.files import size_text
from cnnlab.report import html
from cnnlab.report.predictions import Predictions, load_predictions
from cnnlab.report.run_folder import RunFolderWarning, RunRecord, read_run

FILENAME = "report.html"
UNMEASURED = " (not measured: --no-eval-test)"  # after the test images of such a run
# every section of the page, by id, in order: the browser test checks each is there
SECTIONS = (
    "what-ran", "environment", "model", "epochs", "plots", "per-class-accuracy", "calibration",
    "checkpoints",
)  # fmt: skip


def write_report(
    run: str | Path | ReportConfig,
    out: str | Path | None = None,
    *,
    device: str = "auto",
    data_dir: str | Path | None = None,
    data: Any = None,
    warn: Callable[[str], object] | None = None,
) -> Path:
    """Write the run's report (default RUN/report.html) and return its path. `data`: the
    ImageData a run on data given in Python was trained on (it cannot be read from disk).

    The run folder is read and checked first, and the page is written atomically, so a bad
    folder changes nothing and a failure never leaves half a page. A metrics.jsonl whose last
    line a kill cut short is read as the rows before it: `warn(text)` is told (default: a
    Python RunFolderWarning), and so is the page.
    """
    from cnnlab.files import check_output_file, publish_text, write_failure_as_config_error

    cfg = (
        run
        if isinstance(run, ReportConfig)
        else ReportConfig.from_call(
            "write_report", run=run, out=out, device=device, data_dir=data_dir
        )
    )
    cfg.validate()
    if not cfg.run:
        raise ConfigError("give a run folder")
    record = read_run(cfg.run, partial=True)
    for text in record.warnings:
        _warn(text, warn)
    path = check_output_file(
        cfg.out or record.path / FILENAME, "report file", "give --out a file in an existing folder"
    )
    predictions = load_predictions(record, device=cfg.device, data_dir=cfg.data_dir, data=data)
    text = render_report(record, predictions, device=cfg.device)
    with write_failure_as_config_error(path):
        publish_text(path, text)
    return path


def _warn(text: str, warn: Callable[[str], object] | None) -> None:
    if warn is not None:
        warn(text)
    else:  # stacklevel: the warning names the caller of write_report
        warnings.warn(text, RunFolderWarning, stacklevel=3)


def render_report(record: RunRecord, predictions: Predictions, *, device: str = "auto") -> str:
    """The whole page, as text."""
    config = record.config
    sections = [
        html.section("What ran", what_ran(record), "what-ran"),
        html.section("Environment", environment(record), "environment"),
        html.section("Model", model_summary(record), "model"),
        html.section("Epochs", epoch_table(record), "epochs"),
        html.section("Plots", plots(record, predictions, device), "plots"),
        html.section("Per-class accuracy", per_class(predictions), "per-class-accuracy"),
        html.section("Calibration", calibration(predictions), "calibration"),
        html.section("Checkpoints", checkpoints(record), "checkpoints"),
    ]
    subtitle = f"{config.get('model')} on {config.get('dataset')}, {len(record.metrics)} epochs"
    subtitle += final_accuracy_text(record)
    return html.page(f"cnnlab run {record.name}", "".join(sections), subtitle)


def final_accuracy_text(record: RunRecord) -> str:
    """The subtitle's end: ", final test accuracy 0.9812"; a run that does not measure the test
    split (--no-eval-test) gives its validation accuracy and says so. "" when the last epoch
    has no such number."""
    if not record.evaluates_test:
        accuracy = record.metrics[-1].get("val_accuracy")
        if accuracy is None:
            return ""
        return f", final validation accuracy {accuracy:.4f} (test split not measured)"
    accuracy = record.last_epoch_accuracy
    return "" if accuracy is None else f", final test accuracy {accuracy:.4f}"


def rerun_command(config: dict[str, Any]) -> str:
    """The `cnnlab train` command that runs this config again, into a new run folder."""
    from cnnlab.config.flags import command_line

    flags = command_line(
        TrainConfig, config, leave_out=("name", "overwrite"), always=("model", "dataset", "epochs")
    )
    return shlex.join(["cnnlab", "train", *flags])


def what_ran(record: RunRecord) -> str:
    info, config = record.info, record.config
    data = info.get("data") or {}
    facts = [
        ("run folder", str(record.path)),
        ("model", f"{info.get('model_name')} ({_count(info.get('parameters'))} parameters)"),
        ("data", f"{info.get('dataset')} from {data.get('location', '?')}"),
        ("images", f"{data.get('train', '?')} train, {data.get('val') or 0} validation, "
                   f"{data.get('test', '?')} test{'' if record.evaluates_test else UNMEASURED}, "
                   f"{'×'.join(map(str, info.get('input_shape') or []))}, "
                   f"{len(record.class_names)} classes"),
        ("epochs", f"{len(record.metrics)} of {config.get('epochs')}"
                   + (f" ({record.stopped})" if record.stopped else "")),
    ]  # fmt: skip
    defaults = TrainConfig().to_dict()
    changed = [
        (key, _plain(value))
        for key, value in config.items()
        if key not in ("name", "out_dir") and value != defaults.get(key)
    ]
    return (
        html.table(None, facts)
        + html.paragraph("Run it again (into a new run folder):")
        + html.preformatted(rerun_command(config))
        + html.paragraph("Settings other than the defaults:")
        + html.table(("setting", "value"), changed)
    )


def environment(record: RunRecord) -> str:
    info = record.info
    versions = info.get("versions") or {}
    rows = [(name, version or "-") for name, version in versions.items()]
    rows += [
        ("device", info.get("device", "-")),
        ("started", record.started or "-"),
        ("ended", record.ended or "-"),
        ("training time", f"{record.wall_seconds:.1f} s"),
    ]
    return html.table(None, rows)


def model_summary(record: RunRecord) -> str:
    from cnnlab.inspect.layer_summary import COLUMNS, summary

    result = summary(str(record.path), verbose=False)
    rows = [result.cells(row) for row in result.shown_rows]
    return (
        html.paragraph(result.title())
        + html.table(COLUMNS, rows, numeric=range(3, len(COLUMNS)))
        + html.preformatted("\n".join(result.footer()))
    )


def epoch_table(record: RunRecord) -> str:
    """One row per epoch, a column per epoch metric (training.outputs.epoch_columns), after
    which epoch best.pt holds and which split chose it; that epoch's row is marked (CSS class
    `chosen`, and BEST_PT in a last column). A run trained with --no-eval-test has no test
    columns (unless a part of it resumed with --eval-test measured some)."""
    from cnnlab.training.outputs import epoch_columns

    has_test = record.evaluates_test or record.measured_test
    columns = epoch_columns(record.selection == "val", has_test)
    chosen = record.chosen_row
    rows = [
        [*(metric.report_cell(row) for metric in columns), BEST_PT if row is chosen else ""]
        for row in record.metrics
    ]
    titles = [*(metric.title for metric in columns), ""]
    marked = {i: "chosen" for i, row in enumerate(record.metrics) if row is chosen}
    notes = "".join(html.paragraph(text, "warn") for text in record.warnings)
    table = html.table(titles, rows, numeric=range(len(columns)), row_classes=marked)
    return notes + html.paragraph(chosen_text(record)) + table


BEST_PT = "←\u00a0best.pt"  # the last cell of best.pt's epoch in the epoch table: on one line


def chosen_text(record: RunRecord) -> str:
    """Which epoch best.pt holds and which split chose it; why the run stopped early."""
    row = record.chosen_row
    if row is None:
        return "No epoch was evaluated."
    if record.selection == "val":
        text = (
            f"best.pt is epoch {row['epoch']}, chosen on the validation split (accuracy "
            f"{row['val_accuracy']:.4f}); "
        )
        if row.get("test_accuracy") is not None:
            text += f"its test accuracy, measured for this report only: {row['test_accuracy']:.4f}."
        else:  # --no-eval-test: the test split is measured later, once, if at all
            text += (
                "its test accuracy was not measured (trained with --no-eval-test), and this "
                "report does not measure it: it looks at the validation split."
            )
    else:
        text = (
            f"best.pt is epoch {row['epoch']}, chosen on the test split (no validation split "
            f"was held out): test accuracy {row['test_accuracy']:.4f}."
        )
    return text + (f" The run stopped early: {record.stopped}." if record.stopped else "")


def plots(record: RunRecord, predictions: Predictions, device: str) -> str:
    from cnnlab.figures import render_png
    from cnnlab.report.plots import run_figures

    return "".join(
        html.image(render_png(figure), alt=name, caption=caption)
        for name, caption, figure in run_figures(record, predictions, device=device)
    )


def per_class(predictions: Predictions) -> str:
    names = predictions.class_names
    matrix = predictions.confusion()
    rows = []
    for k, accuracy in enumerate(predictions.per_class_accuracy()):
        mistakes = matrix[k].copy()
        mistakes[k] = 0
        worst = int(mistakes.argmax())
        confused = f"{names[worst]} ({mistakes[worst]})" if mistakes[worst] else "-"
        shown = "-" if accuracy != accuracy else f"{accuracy:.4f}"  # NaN: no image of it
        rows.append((names[k], shown, int(matrix[k].sum()), confused))
    pairs = [f"{names[t]} → {names[p]} ({count}×)" for t, p, count in predictions.most_confused(5)]
    split = predictions.split_name
    text = (
        f"{predictions.checkpoint} on the {split} split: accuracy {predictions.accuracy:.4f} "
        f"({predictions.correct}/{len(predictions.labels)})"
    )
    if predictions.split == "val":
        text += "; the test split is left alone: the run was trained with --no-eval-test"
    most = "most confused (true → predicted): " + ("; ".join(pairs) if pairs else "none")
    header = ("class", "accuracy", f"{split} images", "most often taken for")
    return html.paragraph(text) + html.table(header, rows, numeric=(1, 2)) + html.paragraph(most)


def calibration(predictions: Predictions) -> str:
    """Whether the probabilities mean anything: a learner reading "97%" should also see how
    sure the model was when right and when wrong (the ECE, the reliability diagram)."""
    from cnnlab.figures import render_png
    from cnnlab.report.calibration import calibration_figure, calibration_of, calibration_text

    result = calibration_of(predictions)
    split = predictions.split_name
    caption = (
        "Left: accuracy per confidence bin against the diagonal of a perfectly calibrated "
        f"model, the gaps hatched; below it, how many {split} images each bin holds. Right: "
        "the confidence of the right and of the wrong predictions."
    )
    figure = render_png(calibration_figure(predictions, result))
    text = calibration_text(result, split)
    return html.paragraph(text) + html.image(figure, alt="calibration.png", caption=caption)


def checkpoints(record: RunRecord) -> str:
    rows = [(name, size_text(size)) for name, size in record.checkpoints()]
    return html.table(("file", "size"), rows, numeric=(1,))


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)
