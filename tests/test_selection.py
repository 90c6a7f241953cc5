"""Choosing honestly and stopping in time: the validation split, best.pt chosen on it, early
stopping, a target accuracy, and a run stopped during start-up that leaves nothing in the way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.config import TrainConfig, saved_train_values
from cnnlab.data.holdout import Items, held_out, with_validation
from cnnlab.data.types import ImageData, Split
from cnnlab.training import checkpoint as ckpt
from cnnlab.training import outputs as outputs_module
from cnnlab.training.stopping import Watch, stop_reason
from helpers import skip_png_encoding

PATIENCE = 2


def options(npz_data: str, out: Path, **overrides) -> dict:
    """mnist_cnn learning slowly (adam at 3e-4): validation accuracy climbs for a few epochs,
    reaches 1.0 and stays, so early stopping has something to wait for. Deterministic, so
    two runs of it are the same run."""
    values = dict(
        model="mnist_cnn", dataset=npz_data, epochs=12, batch_size=32, lr=3e-4,
        early_stop_patience=PATIENCE, deterministic=True, out_dir=str(out), name="run",
        progress="none", tensorboard=False, report=False,
    )  # fmt: skip
    return {**values, **overrides}


@pytest.fixture(scope="module")
def stopped(npz_data, tmp_path_factory) -> cnnlab.TrainResult:
    return cnnlab.train(**options(npz_data, tmp_path_factory.mktemp("stopped")))


def best_row(rows: list[dict], key: str) -> dict:
    """The first epoch of the highest `key`: the one best.pt holds."""
    return max(rows, key=lambda row: (row[key], -row["epoch"]))


def test_a_seeded_share_of_every_class_is_held_out_and_the_rest_trains():
    labels = torch.arange(100) % 4  # 25 of each class
    mask = held_out(labels, 0.2, seed=3)
    assert torch.bincount(labels[mask]).tolist() == [5, 5, 5, 5]
    assert torch.equal(mask, held_out(labels, 0.2, seed=3))
    assert not torch.equal(mask, held_out(labels, 0.2, seed=4))
    # each class keeps a training image; `at_least` holds one out of a class too small for its
    # share, and only of a class that has two
    assert held_out(labels[:8], 0.99, seed=0).sum() == 4
    few = torch.tensor([0, 0, 0, 1, 1, 2])
    assert held_out(few, 0.1, 0, at_least=1).tolist().count(True) == 2  # class 2 has one image
    assert not held_out(few, 0.1, 0).any()


def test_the_validation_split_comes_from_training_images_in_memory_or_read_by_index():
    images = torch.arange(40, dtype=torch.uint8).reshape(40, 1, 1, 1)
    labels = torch.arange(40) % 2
    data = ImageData(
        name="x", class_names=["a", "b"], mean=(0.0,), std=(1.0,), input_shape=(1, 1, 1),
        train=Split(images, labels), test=Split(images[:4], labels[:4]), location="here",
    )  # fmt: skip
    split = with_validation(data, 0.25, seed=1)
    train, val = split.train.images.flatten().tolist(), split.val.images.flatten().tolist()
    assert len(val) == 10 and sorted(train + val) == list(range(40))
    assert split.val.labels.tolist().count(0) == 5 and split.test is data.test
    assert data.val is None and len(data.train) == 40  # the given data is left as it was

    class Listed(torch.utils.data.Dataset):  # a Dataset read item by item, with targets
        targets = labels.tolist()

        def __len__(self):
            return 40

        def __getitem__(self, index):
            return images[index], int(labels[index])

    read = with_validation(dataclass_copy(data, train=Listed()), 0.25, seed=1)
    assert isinstance(read.val, Items) and read.val.targets == split.val.labels.tolist()
    assert [int(read.val[i][0]) for i in range(10)] == val  # the same images, in order
    assert with_validation(data, 0.0, seed=1).val is None


def dataclass_copy(data: ImageData, **changes) -> ImageData:
    import dataclasses

    return dataclasses.replace(data, **changes)


def test_early_stopping_stops_says_why_and_best_pt_is_the_best_validation_epoch(stopped, capsys):
    rows = stopped.metrics
    assert len(rows) < 12, "it should have stopped early"
    best = best_row(rows, "val_accuracy")
    # it stops PATIENCE epochs after the last improvement, which is the best epoch here
    assert rows[-1]["epoch"] == best["epoch"] + PATIENCE
    reason = rows[-1]["stopped"]
    assert reason == (
        f"early stop: val_accuracy has not improved for {PATIENCE} epochs (last improved to "
        f"{best['val_accuracy']:.4f} at epoch {best['epoch']})"
    )
    assert all("stopped" not in row for row in rows[:-1])
    info = json.loads((stopped.run_dir / "config.json").read_text())
    assert info["stopped"] == {"epoch": rows[-1]["epoch"], "reason": reason}
    assert info["selection"] == "val" and info["data"]["val"] == 40
    saved = ckpt.load_checkpoint(stopped.run_dir / "best.pt")
    assert saved["epoch"] == best["epoch"] and saved["best_accuracy"] == best["val_accuracy"]
    # the model handed back is best.pt's, not the last epoch's
    for name, tensor in stopped.model.state_dict().items():
        assert torch.equal(tensor, saved["model_state"][name]), name
    last = ckpt.load_checkpoint(stopped.run_dir / "last.pt")
    assert last["finished"] and last["stopped"] == reason
    # every row has both splits' numbers; the test split was measured, never chosen on
    assert all({"val_accuracy", "test_accuracy", "val_loss", "test_loss"} <= set(r) for r in rows)


def test_the_reason_is_printed_with_the_result(npz_data, tmp_path, capsys):
    cnnlab.train(**options(npz_data, tmp_path, progress="lines", early_stop_patience=1))
    out = capsys.readouterr().out.splitlines()
    stop_line = next(line for line in out if line.startswith("early stop:"))
    assert stop_line.endswith("; best.pt is the result")
    header = next(line for line in out if line.startswith("epoch")).split()
    assert header[:7] == [
        "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
    ]  # fmt: skip


def test_a_resumed_run_keeps_counting_where_it_was(stopped, npz_data, tmp_path):
    # ended one epoch before the stop, a patience epoch already counted: a resume that counted
    # anew would stop an epoch later
    cut = stopped.metrics[-1]["epoch"] - 1
    assert cut > best_row(stopped.metrics, "val_accuracy")["epoch"]
    first = cnnlab.train(**options(npz_data, tmp_path, epochs=cut))
    assert len(first.metrics) == cut and "stopped" not in first.metrics[-1]
    resumed = cnnlab.train(resume=first.run_dir, epochs=12)
    keys = ("epoch", "train_loss", "val_accuracy", "test_accuracy", "stopped")
    assert [{k: r.get(k) for k in keys} for r in resumed.metrics] == [
        {k: r.get(k) for k in keys} for r in stopped.metrics
    ]


def test_a_stopped_run_resumes_only_with_settings_that_let_it_go_on(stopped, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stopped.run_dir, run)
    before = (run / "metrics.jsonl").read_bytes()
    with pytest.raises(cnnlab.ConfigError, match=r"already stopped \(early stop: .*"
                       r"resume it with a larger --early-stop-patience"):  # fmt: skip
        cnnlab.train(resume=run)
    assert (run / "metrics.jsonl").read_bytes() == before
    done = len(stopped.metrics)
    more = cnnlab.train(resume=run, early_stop_patience=0, epochs=done + 1)
    assert [row["epoch"] for row in more.metrics] == list(range(1, done + 2))
    assert "stopped" not in more.metrics[-1]
    assert "stopped" not in json.loads((run / "config.json").read_text())


def test_target_accuracy_stops_at_the_first_epoch_that_reaches_it(stopped, npz_data, tmp_path):
    rows = stopped.metrics
    target = next(row["val_accuracy"] for row in rows if 0.5 < row["val_accuracy"] < 1)
    reached = next(row for row in rows if row["val_accuracy"] >= target)
    result = cnnlab.train(**options(npz_data, tmp_path, target_accuracy=target,
                                    early_stop_patience=0))  # fmt: skip
    assert result.metrics[-1]["epoch"] == reached["epoch"]
    assert result.metrics[-1]["stopped"] == (
        f"target reached: val_accuracy {reached['val_accuracy']:.4f} >= {target:g} at epoch "
        f"{reached['epoch']}"
    )


def test_without_a_validation_split_the_test_split_chooses_and_says_so(npz_data, tmp_path, capsys):
    result = cnnlab.train(**options(npz_data, tmp_path, val_fraction=0.0, epochs=3,
                                    early_stop_patience=0))  # fmt: skip
    info = json.loads((result.run_dir / "config.json").read_text())
    assert info["selection"] == "test" and info["data"]["val"] == 0
    assert info["data"]["train"] == 384
    assert all("val_accuracy" not in row for row in result.metrics)
    best = best_row(result.metrics, "test_accuracy")
    assert ckpt.load_checkpoint(result.run_dir / "best.pt")["epoch"] == best["epoch"]
    assert main(["eval", str(result.run_dir), "--split", "val"]) == 2
    assert capsys.readouterr().err == (
        f"error: {result.run_dir} has no validation split to evaluate: it trained with "
        "--val-fraction 0; use the test or train split\n"
    )


def test_the_rules_stop_on_the_numbers_alone():
    cfg = TrainConfig(epochs=10, early_stop_patience=3, early_stop_min_delta=0.01)
    watch = Watch()
    history = [0.5, 0.6, 0.605, 0.609, 0.61, 0.7]  # 0.605..0.61: within min_delta of 0.6
    reasons = []
    for epoch, accuracy in enumerate(history, 1):
        watch.update(accuracy, epoch, cfg.early_stop_min_delta)
        reasons.append(stop_reason(cfg, "val_accuracy", accuracy, epoch, watch))
    assert reasons[:4] == [None] * 4
    assert reasons[4] == (
        "early stop: val_accuracy has not improved by more than 0.01 for 3 epochs (last "
        "improved to 0.6000 at epoch 2)"
    )
    assert stop_reason(cfg, "val_accuracy", None, 5, watch) is None  # not evaluated
    assert stop_reason(cfg, "val_accuracy", 0.61, 10, watch) is None  # the last epoch anyway
    every_other = TrainConfig(epochs=10, early_stop_patience=1, eval_every=2)
    assert stop_reason(every_other, "val_accuracy", 0.5, 4, Watch(0.6, 2, 1)) == (
        "early stop: val_accuracy has not improved for 1 evaluation (last improved to 0.6000 "
        "at epoch 2)"
    )
    target = TrainConfig(epochs=10, target_accuracy=0.6)
    assert stop_reason(target, "test_accuracy", 0.59, 2, Watch()) is None
    assert stop_reason(target, "test_accuracy", 0.6, 2, Watch()).startswith("target reached")


def test_min_delta_reaches_the_run(npz_data, tmp_path):
    # no epoch gains 0.99 on the first, so it stops one evaluation after it, whatever it learns
    result = cnnlab.train(**options(npz_data, tmp_path, early_stop_patience=1,
                                    early_stop_min_delta=0.99))  # fmt: skip
    assert [row["epoch"] for row in result.metrics] == [1, 2]
    assert result.metrics[-1]["stopped"].startswith(
        "early stop: val_accuracy has not improved by more than 0.99 for 1 epoch (last improved to "
    )


def test_runs_saved_before_validation_splits_keep_their_folder_test_split():
    old = {"dataset": "folder:/x", "val_fraction": 0.3, "seed": 1}
    assert saved_train_values(old) == {**old, "val_fraction": 0.0, "test_fraction": 0.3}
    new = {"val_fraction": 0.1, "test_fraction": 0.2}
    assert saved_train_values(new) is new


def test_a_start_stopped_before_its_first_checkpoint_leaves_nothing_in_the_way(
    npz_data, tmp_path, monkeypatch
):
    def interrupted(self, *args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # Ctrl-C as config.json is written
        patch.setattr(outputs_module.RunOutputs, "config_json", interrupted)
        with pytest.raises(KeyboardInterrupt):
            cnnlab.train(**options(npz_data, tmp_path, epochs=1))
    assert not (tmp_path / "run").exists()
    # what a SIGKILL during start-up leaves: the same --name starts the run again
    (tmp_path / "run").mkdir()
    started = {"config": {"model": "mnist_cnn"}, "versions": {}}
    (tmp_path / "run" / "config.json").write_text(json.dumps(started))
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    (tmp_path / "run" / "events.out.tfevents.1.host.2.0").write_bytes(b"\0")
    (tmp_path / "run" / ".last.pt.1a2b3c4d.tmp").write_bytes(b"PK")
    (tmp_path / "run" / ".lock").write_bytes(b"")  # its process is gone: nobody holds it
    result = cnnlab.train(**options(npz_data, tmp_path, epochs=1))
    assert sorted(p.name for p in result.run_dir.iterdir()) == [
        "best.pt", "config.json", "last.pt", "metrics.jsonl",
    ]  # fmt: skip
    # a folder that holds anything else, or a config.json cnnlab did not write, is never
    # replaced without --overwrite
    for name, files in (("mine", {"config.json": json.dumps(started), "notes.txt": "mine"}),
                        ("settings", {"config.json": '{"my": "settings"}'})):  # fmt: skip
        (tmp_path / name).mkdir()
        for file, text in files.items():
            (tmp_path / name / file).write_text(text)
        with pytest.raises(cnnlab.ConfigError, match="already exists"):
            cnnlab.train(**options(npz_data, tmp_path, epochs=1, name=name))
        assert {p.name: p.read_text() for p in (tmp_path / name).iterdir()} == files


def test_a_run_in_progress_keeps_its_folder_from_a_second_process(npz_data, tmp_path):
    from cnnlab.training.run_dir import lock_run_dir, unlock

    (tmp_path / "run").mkdir()
    held = lock_run_dir(tmp_path / "run")  # as a run in its first epoch holds it
    try:
        (tmp_path / "run" / "config.json").write_text('{"config": {}, "versions": {}}')
        with pytest.raises(cnnlab.ConfigError, match="is in use by another cnnlab process"):
            cnnlab.train(**options(npz_data, tmp_path, epochs=1))
        assert (tmp_path / "run" / "config.json").is_file()
    finally:
        unlock(held)


def test_the_bar_shows_the_running_loss_and_accuracy_and_the_runs_time_left():
    from cnnlab.training.loop import EpochSums

    clock = iter(float(t) for t in range(100))
    progress = outputs_module.Progress("bar", total_epochs=3)
    progress.clock = lambda: next(clock)
    progress.start_epoch(0, batches=10)
    sums = EpochSums.zeros(torch.device("cpu"), 0)
    for _ in range(5):  # 1 s a step by the clock above
        sums.loss_sum += 0.5 * 4
        sums.correct += 3
        sums.seen += 4
        progress.advance(sums)
    text = progress._bar.tasks[0].fields["running"]
    progress.close()
    # 4 steps took 4 s since the first; 25 of the run's 30 steps are left: 25 s
    assert text == " · loss 0.500 acc 0.750 · run 00:25 left"
    assert outputs_module.clock(3725) == "1:02:05"


def test_the_report_shows_both_splits_the_choice_and_why_the_run_stopped(
    stopped, tmp_path, monkeypatch
):
    from cnnlab.report.run_report import write_report

    skip_png_encoding(monkeypatch)  # the page is read as text
    run = tmp_path / "run"
    shutil.copytree(stopped.run_dir, run)
    page = write_report(run).read_text()
    best = best_row(stopped.metrics, "val_accuracy")
    assert "<th class=num>validation accuracy</th>" in page
    assert "<th class=num>test accuracy</th>" in page
    assert (
        f"best.pt is epoch {best['epoch']}, chosen on the validation split (accuracy "
        f"{best['val_accuracy']:.4f}); its test accuracy, measured for this report only: "
        f"{best['test_accuracy']:.4f}. The run stopped early: early stop:"
    ) in page
    assert "344 train, 40 validation, 128 test" in page


def test_compare_shows_best_pt_on_each_split_and_which_split_chose_it(stopped, npz_data, tmp_path):
    from cnnlab.report.compare import compare

    plain = cnnlab.train(**options(npz_data, tmp_path, name="plain", val_fraction=0.0, epochs=2,
                                   early_stop_patience=0))  # fmt: skip
    table = compare([stopped.run_dir, plain.run_dir])
    header = table.header
    assert header[2:6] == ["final test acc", "best.pt test acc", "best.pt val acc", "chosen on"]
    cells = {row[0]: row for row in table.cells()}
    best = best_row(stopped.metrics, "val_accuracy")
    assert cells["run"][3:6] == [f"{best['test_accuracy']:.4f}", f"{best['val_accuracy']:.4f}",
                                 "val"]  # fmt: skip
    plain_best = best_row(plain.metrics, "test_accuracy")["test_accuracy"]
    assert cells["plain"][3:6] == [f"{plain_best:.4f}", "-", "test"]
    # a run that stopped early has finished: no "stopped after N of M epochs" warning for it
    assert not any("stopped after" in warning for warning in table.warnings)


def test_the_readmes_seeds_example_works_as_written(npz_data, tmp_path, monkeypatch, capsys):
    import glob
    import shlex

    skip_png_encoding(monkeypatch)  # compare's curves are made; its lines are read
    readme = (Path(__file__).parent.parent / "README.md").read_text().splitlines()
    train = next(line for line in readme if line.startswith("cnnlab train") and "--seeds" in line)
    then = readme[readme.index(train) + 1]
    assert then.startswith("cnnlab compare")
    monkeypatch.chdir(tmp_path)
    tiny = ["--dataset", npz_data, "--epochs", "1", "--progress", "none", "--no-tensorboard"]
    assert main(shlex.split(train, comments=True)[1:] + tiny) == 0
    capsys.readouterr()
    words = shlex.split(then, comments=True)[1:]
    argv = [path for word in words for path in (sorted(glob.glob(word)) or [word])]
    assert main(argv) == 0  # as a shell expands runs/lenet-seed*
    table = capsys.readouterr().out.splitlines()
    assert table[2].split()[:2] == ["lenet", "3"]  # one row of the three seeds
    assert (tmp_path / "compare.html").is_file() and (tmp_path / "compare-plots").is_dir()


def test_the_same_command_takes_up_a_run_it_stopped_and_only_that(
    npz_data, tmp_path, monkeypatch, capsys
):
    from cnnlab.training import trainer

    real, calls = trainer.train_one_epoch, []

    def ctrl_c_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a second Ctrl-C: no step-end checkpoint
        return real(*args, **kwargs)

    values = options(npz_data, tmp_path, epochs=3, early_stop_patience=0)
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "train_one_epoch", ctrl_c_in_epoch_two)
        with pytest.raises(KeyboardInterrupt):
            cnnlab.train(**values)
    assert ckpt.load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1  # kept: resumable
    with pytest.raises(cnnlab.ConfigError, match="already exists"):  # other settings: refused
        cnnlab.train(**{**values, "lr": 1e-3})
    again = cnnlab.train(**{**values, "progress": "lines"})
    assert "resuming at epoch 2, step 11" in capsys.readouterr().out
    straight = cnnlab.train(**{**values, "name": "straight"})
    keys = ("epoch", "train_loss", "val_accuracy", "test_accuracy")
    assert [[r[k] for k in keys] for r in again.metrics] == [
        [r[k] for k in keys] for r in straight.metrics
    ]
    with pytest.raises(cnnlab.ConfigError, match="already finished its 3 epochs; pass --epochs"):
        cnnlab.train(**values)
    further = cnnlab.train(**{**values, "epochs": 4})  # the same command, longer: trains on
    assert [row["epoch"] for row in further.metrics] == [1, 2, 3, 4]
