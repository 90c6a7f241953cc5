"""The "What ran" part of a run's report (report/run_report.py's what_ran): the table of facts
(the run folder, the model and its parameter count, where the data came from, the image counts
of each split with the image shape and the number of classes, the epochs run of those asked and
why the run stopped early), the words before the rerun command and before the settings, and the
settings table, which lists only the values other than TrainConfig's defaults (never the run's
name or output folder), a list as "a, b", a dict as "k=v, k=v" (an empty one as "-"), and a
setting today's TrainConfig does not know (a config.json of another version) as it was saved.

Each RunRecord is written by hand (a config.json's contents and its epoch rows, no files), so the
whole module takes milliseconds; test_report.py checks a whole page. These tests exist because
docs/TESTING.md's mutation run showed these texts untested (survivors of mutmut in
report/run_report.py).
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from cnnlab.report.run_folder import RunRecord
from cnnlab.report.run_report import UNMEASURED, rerun_command, what_ran

FASHION = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat"] + [f"class {n}" for n in range(5)]
DATA = {"location": "/data/fashion-mnist", "train": 48000, "val": 6000, "test": 10000}
STOPPED = "early stop: val_accuracy has not improved for 2 epochs (last improved at epoch 1)"


class Blocks(HTMLParser):
    """The page part as a reader sees it, in order: ("table", rows of (tag, text) cells),
    ("p", text) and ("pre", text)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[tuple[str, object]] = []
        self.text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.blocks.append(("table", []))
        elif tag == "tr":
            self.blocks[-1][1].append([])
        elif tag in ("th", "td", "p", "pre"):
            self.text = []

    def handle_data(self, data):
        if self.text is not None:
            self.text.append(data)

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self.blocks[-1][1][-1].append((tag, "".join(self.text)))
        elif tag in ("p", "pre"):
            self.blocks.append((tag, "".join(self.text)))
        if tag in ("th", "td", "p", "pre"):
            self.text = None


def blocks(record: RunRecord) -> list[tuple[str, object]]:
    parser = Blocks()
    parser.feed(what_ran(record))
    return parser.blocks


def facts(record: RunRecord) -> dict[str, str]:
    """The first table: each row's name (a <th>) and its value (a <td>)."""
    rows = blocks(record)[0][1]
    assert all([tag for tag, _ in row] == ["th", "td"] for row in rows)
    return {row[0][1]: row[1][1] for row in rows}


def record(config: dict | None = None, epochs: int = 3, **info) -> RunRecord:
    """A run as read_run gives it: config.json's `info` (its config given) and `epochs` rows."""
    base = {"model": "lenet", "dataset": "fashion-mnist", "epochs": 10, "test_fraction": 0.2}
    rows = [{"epoch": n, "test_accuracy": 0.8} for n in range(1, epochs + 1)]
    return RunRecord(Path("/runs/lenet-1"), {"config": {**base, **(config or {})}, **info}, rows)


def full_record(**config) -> RunRecord:
    """A run whose config.json records everything the report shows."""
    info = {
        "model_name": "lenet", "parameters": 61706, "dataset": "fashion-mnist", "data": DATA,
        "input_shape": [1, 28, 28], "class_names": FASHION,
    }  # fmt: skip
    return record(config, **info)


def test_the_facts_name_the_folder_model_data_images_and_epochs_in_this_order():
    assert list(facts(full_record()).items()) == [
        ("run folder", "/runs/lenet-1"),
        ("model", "lenet (61,706 parameters)"),  # the count with thousands separators
        ("data", "fashion-mnist from /data/fashion-mnist"),
        ("images", "48000 train, 6000 validation, 10000 test, 1×28×28, 10 classes"),
        ("epochs", "3 of 10"),  # nothing after it: the run did not stop early
    ]


def test_a_run_that_stopped_early_says_why_after_its_epochs():
    run = record(epochs=3, stopped={"epoch": 3, "reason": STOPPED})
    assert facts(run)["epochs"] == f"3 of 10 ({STOPPED})"


def test_a_run_trained_with_no_eval_test_says_its_test_images_were_not_measured():
    images = facts(full_record(eval_test=False))["images"]
    assert images == f"48000 train, 6000 validation, 10000 test{UNMEASURED}, 1×28×28, 10 classes"
    assert UNMEASURED == " (not measured: --no-eval-test)"


def test_what_a_config_json_did_not_record_is_a_question_mark_and_no_validation_is_0():
    # an old or damaged config.json: no parameter count, data, input shape nor class names
    assert list(facts(record(epochs=1)).items()) == [
        ("run folder", "/runs/lenet-1"),
        ("model", "None (? parameters)"),
        ("data", "None from ?"),
        ("images", "? train, 0 validation, ? test, , 0 classes"),
        ("epochs", "1 of 10"),
    ]


def test_the_rerun_command_and_the_settings_follow_the_facts_each_with_its_words():
    run = full_record(lr=0.01)
    kinds = [(kind, value if kind != "table" else len(value)) for kind, value in blocks(run)]
    assert kinds == [
        ("table", 5),
        ("p", "Run it again (into a new run folder):"),
        ("pre", rerun_command(run.config)),
        ("p", "Settings other than the defaults:"),
        ("table", 2),  # the header and lr's row
    ]


def test_settings_list_only_values_other_than_the_defaults_in_plain_words():
    changed = {
        "model": "mnist_cnn", "epochs": 3, "lr": 0.01, "betas": [0.5, 0.99],
        "model_args": {"width": 2, "depth": 3}, "augment": True, "eval_test": False,
    }  # fmt: skip
    # the run's name and output folder are where it is, not how it ran; seed, batch size,
    # dataset and test share are the defaults' (betas as the default list too would be left out)
    same = {"seed": 0, "batch_size": 256, "dataset": "fashion-mnist", "test_fraction": 0.2}
    run = record({"name": "mine", "out_dir": "/tmp/elsewhere", **same, **changed})
    assert blocks(run)[-1] == (
        "table",
        [
            [("th", "setting"), ("th", "value")],
            [("td", "model"), ("td", "mnist_cnn")],
            [("td", "epochs"), ("td", "3")],
            [("td", "lr"), ("td", "0.01")],
            [("td", "betas"), ("td", "0.5, 0.99")],  # a list: its items, comma-separated
            [("td", "model_args"), ("td", "width=2, depth=3")],  # a dict: key=value pairs
            [("td", "augment"), ("td", "True")],
            [("td", "eval_test"), ("td", "False")],
        ],
    )


def test_a_run_of_the_defaults_has_an_empty_settings_table():
    # model, data set and epochs all the defaults', the name and the output folder left out
    defaults = {"model": "lenet", "epochs": 10, "betas": [0.9, 0.999]}
    run = record({"name": "r", "out_dir": "/o", **defaults})
    assert blocks(run)[-1] == ("table", [[("th", "setting"), ("th", "value")]])


def test_a_setting_todays_cnnlab_does_not_know_is_listed_as_saved_an_empty_dict_as_a_dash():
    # a config.json written by another cnnlab version may hold a field TrainConfig no longer
    # has: it has no default, so it is listed, and an empty dict is "-" rather than a blank cell
    run = record({"mixup_args": {}, "mixup": 0.2})
    assert blocks(run)[-1][1][1:] == [
        [("td", "mixup_args"), ("td", "-")],
        [("td", "mixup"), ("td", "0.2")],
    ]
