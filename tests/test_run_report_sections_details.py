"""Details of the report's sections (report/run_report.py): the per-class accuracy table (the
accuracy, the images and the class each one is most often taken for; "-" where a class has no
image or no mistake; the five most confused pairs), the sentence on which epoch best.pt holds
and why, the environment, the epoch table (its columns for runs with and without a validation
split or measured test split, the row of best.pt, the warnings above it), the calibration
section, the model summary, the checkpoints and the plots.

Each section is made from a RunRecord or Predictions written by hand (a few images, a few
epochs), and its HTML is read back as a reader sees it (paragraphs, table cells, figures); no
figure is drawn (the plots are stand-ins, the calibration figure is made but not encoded), so
each test takes milliseconds. test_report.py checks a whole page of a trained run. These
tests exist because docs/TESTING.md's mutation run showed these paths untested (survivors of
mutmut in report/run_report.py).
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from cnnlab.report.predictions import Predictions
from cnnlab.report.run_folder import RunRecord
from cnnlab.report.run_report import (
    BEST_PT,
    calibration,
    checkpoints,
    chosen_text,
    environment,
    epoch_table,
    model_summary,
    per_class,
    plots,
)
from helpers import hand_predictions, skip_png_encoding


class Parsed(HTMLParser):
    """A section's HTML as a reader sees it: paragraphs (CSS class, text), table rows (the
    text of each cell), the right-aligned (numeric) columns of each row, the CSS class of each
    row, figures (alt, caption) and preformatted text."""

    def __init__(self, text: str):
        super().__init__()
        self.paragraphs: list[tuple[str, str]] = []
        self.rows: list[list[str]] = []
        self.numeric: list[set[int]] = []
        self.row_classes: list[str | None] = []
        self.figures: list[tuple[str, str]] = []
        self.pre: list[str] = []
        self._text: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self.rows.append([])
            self.numeric.append(set())
            self.row_classes.append(attrs.get("class"))
        elif tag in ("td", "th"):
            if "class" in attrs and attrs["class"] == "num":
                self.numeric[-1].add(len(self.rows[-1]))
            self._text = []
        elif tag in ("p", "pre", "figcaption"):
            self._text = []
            self._class = attrs.get("class") or ""
        elif tag == "img":
            self.figures.append((attrs["alt"], ""))

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if self._text is None:
            return
        text, self._text = "".join(self._text), None
        if tag in ("td", "th"):
            self.rows[-1].append(text)
        elif tag == "p":
            self.paragraphs.append((self._class, text))
        elif tag == "pre":
            self.pre.append(text)
        elif tag == "figcaption":
            self.figures[-1] = (self.figures[-1][0], text)


def record(rows: list[dict], path: Path = Path("/runs/r"), **info) -> RunRecord:
    """A run of these epoch rows; `info` goes into config.json beside its config (`eval_test`
    into the config). Its folder is never read unless a test says so."""
    config = {"model": "mnist_cnn", "dataset": "npz:/data/a", "epochs": len(rows)}
    if "eval_test" in info:
        config["eval_test"] = info.pop("eval_test")
    return RunRecord(path, {"config": config, **info}, rows)


def predictions(labels: list[int], predicted: list[int], names: list[str], **kwargs) -> Predictions:
    """Predictions of len(labels) images made by hand, each 90% sure."""
    return hand_predictions(labels, predicted, names, confidence=0.9, p_true=0.5, **kwargs)


# --- per-class accuracy -------------------------------------------------------------------------

NAMES = ["cat", "dog", "fox", "owl", "yak"]
# cat: 1 right, 2 taken for dog, 1 for fox; dog: 1 right, 1 taken for cat, 1 for fox; fox: 1
# taken for cat, 2 for dog; owl: both right; yak: no image. Six confused pairs (one more than
# the five the page names), owl without a mistake, yak without an image.
LABELS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3]
PREDICTED = [0, 1, 1, 2, 1, 0, 2, 0, 1, 1, 3, 3]


def test_per_class_gives_each_class_its_accuracy_images_and_worst_confusion():
    parsed = Parsed(per_class(predictions(LABELS, PREDICTED, NAMES)))
    assert parsed.rows == [
        ["class", "accuracy", "test images", "most often taken for"],
        ["cat", "0.2500", "4", "dog (2)"],
        ["dog", "0.3333", "3", "cat (1)"],  # a tie of 1 and 1: the first class
        ["fox", "0.0000", "3", "dog (2)"],
        ["owl", "1.0000", "2", "-"],  # no mistake: nothing (not itself)
        ["yak", "-", "0", "-"],  # no image: no accuracy (not nan)
    ]
    # the accuracy and the image count are numbers: right-aligned, the header with them
    assert parsed.numeric == [{1, 2}] * 6


def test_per_class_says_the_accuracy_and_names_the_five_most_confused_pairs():
    parsed = Parsed(per_class(predictions(LABELS, PREDICTED, NAMES)))
    assert parsed.paragraphs == [
        ("", "best.pt on the test split: accuracy 0.3333 (4/12)"),
        # the most frequent first, ties in class order; the sixth pair (fox → cat) left out
        ("", "most confused (true → predicted): cat → dog (2×); fox → dog (2×); "
             "cat → fox (1×); dog → cat (1×); dog → fox (1×)"),
    ]  # fmt: skip


def test_per_class_of_the_validation_split_says_the_test_split_is_left_alone():
    # --no-eval-test: the predictions are the validation split's, and every text says so
    found = predictions([0, 1, 1], [0, 1, 1], ["ant", "bee"], checkpoint="last.pt", split="val")
    parsed = Parsed(per_class(found))
    assert parsed.paragraphs == [
        ("", "last.pt on the validation split: accuracy 1.0000 (3/3); the test split is left "
             "alone: the run was trained with --no-eval-test"),
        ("", "most confused (true → predicted): none"),  # no mistake at all
    ]  # fmt: skip
    assert parsed.rows == [
        ["class", "accuracy", "validation images", "most often taken for"],
        ["ant", "1.0000", "1", "-"],
        ["bee", "1.0000", "2", "-"],
    ]


# --- which epoch best.pt holds ------------------------------------------------------------------

VAL_ROWS = [
    {"epoch": 1, "val_accuracy": 0.5, "test_accuracy": 0.4},
    {"epoch": 2, "val_accuracy": 0.75, "test_accuracy": 0.7},
    {"epoch": 3, "val_accuracy": 0.625, "test_accuracy": 0.8},
]
WITHOUT_TEST = [{k: v for k, v in row.items() if k != "test_accuracy"} for row in VAL_ROWS]
STOPPED = "early stop: test_accuracy has not improved for 1 epoch (last improved to 0.8000 at " \
          "epoch 2)"  # fmt: skip


def test_chosen_text_of_a_run_with_no_evaluated_epoch():
    assert chosen_text(record([{"epoch": 1, "train_loss": 0.5}])) == "No epoch was evaluated."


def test_chosen_text_names_the_validation_epoch_and_its_test_accuracy():
    # epoch 2 has the best validation accuracy (not the best test accuracy, epoch 3's)
    assert chosen_text(record(VAL_ROWS, selection="val")) == (
        "best.pt is epoch 2, chosen on the validation split (accuracy 0.7500); its test "
        "accuracy, measured for this report only: 0.7000."
    )


def test_chosen_text_of_a_run_that_never_measured_its_test_split():
    assert chosen_text(record(WITHOUT_TEST, selection="val", eval_test=False)) == (
        "best.pt is epoch 2, chosen on the validation split (accuracy 0.7500); its test "
        "accuracy was not measured (trained with --no-eval-test), and this report does not "
        "measure it: it looks at the validation split."
    )


def test_chosen_text_without_validation_split_and_why_the_run_stopped():
    rows = [{"epoch": 1, "test_accuracy": 0.5}, {"epoch": 2, "test_accuracy": 0.8}]
    assert chosen_text(record(rows, stopped={"reason": STOPPED})) == (
        "best.pt is epoch 2, chosen on the test split (no validation split was held out): "
        f"test accuracy 0.8000. The run stopped early: {STOPPED}."
    )


# --- the environment ----------------------------------------------------------------------------


def test_environment_lists_versions_device_times_and_training_time():
    rows = [
        {"epoch": 1, "epoch_seconds": 1.25, "time": "2025-01-02T10:00:02"},
        {"epoch": 2, "epoch_seconds": 2.5, "time": "2025-01-02T10:00:05"},
    ]
    versions = {"torch": "2.6.0", "torchvision": None}  # None: not installed
    run = record(rows, versions=versions, device="cpu", started="2025-01-02T10:00:00")
    parsed = Parsed(environment(run))
    assert parsed.rows == [
        ["torch", "2.6.0"],
        ["torchvision", "-"],
        ["device", "cpu"],
        ["started", "2025-01-02T10:00:00"],
        ["ended", "2025-01-02T10:00:05"],  # the last epoch's time
        ["training time", "3.8 s"],  # 1.25 + 2.5, to a tenth
    ]


def test_environment_of_a_run_that_recorded_none_of_it_says_dashes():
    parsed = Parsed(environment(record([{"epoch": 1}])))
    assert parsed.rows == [
        ["device", "-"], ["started", "-"], ["ended", "-"], ["training time", "0.0 s"],
    ]  # fmt: skip


# --- the epoch table ----------------------------------------------------------------------------


def test_epoch_table_of_a_validation_run_marks_best_pt_and_right_aligns_the_numbers():
    parsed = Parsed(epoch_table(record(VAL_ROWS, selection="val")))
    assert parsed.paragraphs == [("", chosen_text(record(VAL_ROWS, selection="val")))]
    titles = [
        "epoch", "train loss", "train accuracy", "validation loss", "validation accuracy",
        "test loss", "test accuracy", "examples/s", "seconds", "learning rate", "",
    ]  # fmt: skip
    assert parsed.rows == [
        titles,
        ["1", "-", "-", "-", "0.5000", "-", "0.4000", "-", "-", "-", ""],
        ["2", "-", "-", "-", "0.7500", "-", "0.7000", "-", "-", "-", BEST_PT],
        ["3", "-", "-", "-", "0.6250", "-", "0.8000", "-", "-", "-", ""],
    ]
    assert parsed.row_classes == [None, None, "chosen", None]
    # every metric is right-aligned; the best.pt column is not
    assert parsed.numeric == [set(range(10))] * 4


def test_epoch_table_of_a_run_without_validation_split_has_no_validation_columns():
    rows = [{"epoch": 1, "train_loss": 0.25, "test_accuracy": 0.5}]
    parsed = Parsed(epoch_table(record(rows)))
    assert parsed.rows[0] == [
        "epoch", "train loss", "train accuracy", "test loss", "test accuracy", "examples/s",
        "seconds", "learning rate", "",
    ]  # fmt: skip
    assert parsed.rows[1] == ["1", "0.2500", "-", "-", "0.5000", "-", "-", "-", BEST_PT]


def test_epoch_table_of_a_run_without_test_split_has_no_test_columns():
    parsed = Parsed(epoch_table(record(WITHOUT_TEST, selection="val", eval_test=False)))
    assert parsed.rows[0] == [
        "epoch", "train loss", "train accuracy", "validation loss", "validation accuracy",
        "examples/s", "seconds", "learning rate", "",
    ]  # fmt: skip


def test_epoch_table_shows_test_columns_a_resumed_part_measured():
    # trained with --no-eval-test, resumed with --eval-test: epoch 3 measured the test split
    rows = [*WITHOUT_TEST[:2], VAL_ROWS[2]]
    parsed = Parsed(epoch_table(record(rows, selection="val", eval_test=False)))
    assert parsed.rows[0][5:7] == ["test loss", "test accuracy"]
    assert [row[6] for row in parsed.rows[1:]] == ["-", "-", "0.8000"]


def test_epoch_table_says_each_warning_above_the_table():
    run = record(VAL_ROWS, selection="val")
    run.warnings = ["metrics.jsonl line 4 was cut short", "second <warning>"]
    text = epoch_table(run)
    assert text.startswith(
        '<p class="warn">metrics.jsonl line 4 was cut short</p>\n'
        '<p class="warn">second &lt;warning&gt;</p>\n<p>best.pt is epoch 2'
    )


# --- calibration --------------------------------------------------------------------------------


def test_calibration_says_the_error_and_captions_the_figure_for_its_split(monkeypatch):
    skip_png_encoding(monkeypatch)
    # 4 validation images, 90% sure, 3 right: over-confident
    found = predictions([0, 1, 0, 1], [0, 1, 0, 0], ["ant", "bee"], split="val")
    parsed = Parsed(calibration(found))
    [(css, text)] = parsed.paragraphs
    assert css == ""
    assert text.startswith(
        "Expected calibration error (ECE) on the 4 validation images: 0.1500 (15 equal-width "
        "bins of confidence;"
    )
    assert parsed.figures == [(
        "calibration.png",
        "Left: accuracy per confidence bin against the diagonal of a perfectly calibrated "
        "model, the gaps hatched; below it, how many validation images each bin holds. Right: "
        "the confidence of the right and of the wrong predictions.",
    )]  # fmt: skip


# --- the model summary --------------------------------------------------------------------------


def test_model_summary_is_the_runs_layer_table_printed_nowhere(monkeypatch, capsys):
    from cnnlab.inspect import layer_summary

    asked: list[str] = []
    real = layer_summary.summary

    def summary_of_mnist_cnn(model, **kwargs):  # a run folder's summary, without its checkpoint
        asked.append(model)
        return real("mnist_cnn", **kwargs)

    monkeypatch.setattr(layer_summary, "summary", summary_of_mnist_cnn)
    parsed = Parsed(model_summary(record([{"epoch": 1}], Path("/runs/mine"))))
    assert asked == ["/runs/mine"]
    assert capsys.readouterr().out == ""  # the page has the table; the terminal gets nothing
    expected = real("mnist_cnn", verbose=False)
    assert parsed.paragraphs == [("", "mnist_cnn, input 1×1×28×28")]
    assert parsed.rows == [list(layer_summary.COLUMNS)] + [
        expected.cells(row) for row in expected.shown_rows
    ]
    # layer, type and output shape are text; params, mult-adds and the fields are numbers
    assert parsed.numeric == [{3, 4, 5, 6, 7}] * len(parsed.rows)
    assert parsed.pre == ["\n".join(expected.footer())]
    assert parsed.pre[0].startswith("parameters   8,490 (trainable 8,490, frozen 0)\nmult-adds")


# --- the checkpoints ----------------------------------------------------------------------------


def test_checkpoints_lists_each_file_and_its_size(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"x" * 1500)
    (tmp_path / "last.pt").write_bytes(b"x" * 20)
    (tmp_path / "best.torchscript.pt").write_bytes(b"x")  # an export, not a checkpoint
    parsed = Parsed(checkpoints(record([{"epoch": 1}], tmp_path)))
    assert parsed.rows == [["file", "size"], ["best.pt", "1.5 kB"], ["last.pt", "20 B"]]
    assert parsed.numeric == [{1}] * 3


# --- the plots ----------------------------------------------------------------------------------


def test_plots_embeds_each_figure_with_its_caption_drawn_on_the_device(monkeypatch):
    from cnnlab import figures
    from cnnlab.report import plots as report_plots

    devices: list[str] = []

    def run_figures(run, found, *, device="auto"):
        devices.append(device)
        return [("curves.png", "the curves", "figure 1"), ("grid.png", "the grid", "figure 2")]

    monkeypatch.setattr(report_plots, "run_figures", run_figures)
    monkeypatch.setattr(figures, "render_png", lambda figure: figure.encode())
    text = plots(record([{"epoch": 1}]), predictions([0], [0], ["ant"]), "cpu")
    assert devices == ["cpu"]
    # one figure after the other, nothing between them
    assert text == (
        '<figure><img src="data:image/png;base64,ZmlndXJlIDE=" alt="curves.png">'
        "<figcaption>the curves</figcaption></figure>\n"
        '<figure><img src="data:image/png;base64,ZmlndXJlIDI=" alt="grid.png">'
        "<figcaption>the grid</figcaption></figure>\n"
    )
