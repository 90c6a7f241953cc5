"""`cnnlab sweep`: SPACE files checked before any trial, trials as run folders judged on the
validation split only, the study continued by the same command, pruning, and a sweep that
survives Ctrl-C and SIGKILL with no trial lost or run twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.config import load_recipe

optuna = pytest.importorskip(
    "optuna", reason="Optuna is the sweep extra: pip install -e '.[sweep]'"
)

from cnnlab.sweeps import sweep  # noqa: E402
from cnnlab.sweeps.space import read_space  # noqa: E402
from cnnlab.sweeps.study import Tally, open_storage, storage_url  # noqa: E402
from helpers import write_learnable_npz  # noqa: E402

FIXED = """model = "{model}"
dataset = "{data}"
epochs = {epochs}
batch_size = 32
tensorboard = false
"""


def write_space(
    folder: Path, data: str, search: str, study: str = "", epochs: int = 2, model="mnist_cnn"
) -> Path:
    path = folder / "space.toml"
    text = FIXED.format(model=model, data=data, epochs=epochs) + f"[search]\n{search}\n"
    path.write_text(text + (f"[study]\n{study}\n" if study else ""), encoding="utf-8")
    return path


def study_of(sweep_dir: Path) -> optuna.Study:
    storage = open_storage(storage_url(None, sweep_dir))
    return optuna.load_study(study_name=sweep_dir.name, storage=storage)


def test_a_sweep_judges_trials_on_validation_and_continues(tmp_path, capsys):
    # a third of npz_data's images: what is checked is how trials are judged, not how well
    data = "npz:" + str(write_learnable_npz(tmp_path / "data", train=128, test=32))
    space = write_space(tmp_path, data, 'lr = { low = 1e-4, high = 0.05, log = true }\n'
                        'optimizer = ["sgd", "adam"]', "trials = 3\nseed = 1")  # fmt: skip
    result = sweep(space, out_dir=str(tmp_path / "runs"), report=False)
    sweep_dir = tmp_path / "runs" / "space"
    assert len(result.trials) == 3
    numbers = sorted(t.number for t in result.trials)
    assert numbers == [0, 1, 2]
    for number in numbers:  # every trial an ordinary run folder, never shown the test split
        rows = [json.loads(x) for x in (sweep_dir / "trials" / str(number) / "metrics.jsonl")
                .read_text().splitlines()]  # fmt: skip
        assert rows and all("val_accuracy" in r and "test_accuracy" not in r for r in rows)
        config = json.loads((sweep_dir / "trials" / str(number) / "config.json").read_text())
        assert config["config"]["eval_test"] is False and config["config"]["val_fraction"] == 0.1
    # the best: the highest validation accuracy any trial's metrics.jsonl holds (ties: the
    # first trial), read from the run folders, not from the study
    best_of = {
        number: max(json.loads(x)["val_accuracy"] for x in (sweep_dir / "trials" / str(number)
                    / "metrics.jsonl").read_text().splitlines())
        for number in numbers
    }  # fmt: skip
    top = max(best_of.values())
    assert result.best.number == min(n for n, v in best_of.items() if v == top)
    best = result.best
    assert best.value == top
    recipe = load_recipe(sweep_dir / "best.toml")
    assert (
        recipe["lr"] == pytest.approx(best.params["lr"])
        and recipe["optimizer"] == (best.params["optimizer"])
    )
    assert "eval_test" not in recipe  # the recipe trains as any run: the test split measured
    (measure,) = json.loads((sweep_dir / "best.json").read_text())["measured"]
    assert measure["trial"] == best.number and 0 <= measure["test_accuracy"] <= 1
    assert result.test_accuracy == measure["test_accuracy"]
    page = (sweep_dir / "sweep.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 and "measured once" in page
    out = capsys.readouterr().out
    assert "test accuracy, measured once after the sweep for this trial only" in out

    # the same call with --trials 4 continues the study: one more trial, none run again
    more = sweep(space, out_dir=str(tmp_path / "runs"), report=False, trials=4)
    out = capsys.readouterr().out
    assert "4 trials, 3 done already" in out
    assert sorted(t.number for t in more.trials) == [0, 1, 2, 3]
    # the test split is measured once per end of the study, for its best trial only
    measured = [m["trial"] for m in json.loads((sweep_dir / "best.json").read_text())["measured"]]
    assert measured == ([best.number] if more.best.number == best.number
                        else [best.number, more.best.number])  # fmt: skip
    assert ("also measured for trial" in out) == (len(measured) == 2)
    assert sorted(p.name for p in (sweep_dir / "trials").iterdir()) == ["0", "1", "2", "3"]


def test_a_recipe_without_validation_split_gets_one(tmp_path, capsys):
    """The shipped recipes hold out nothing (val_fraction 0): a sweep must not choose on the
    test split, so its trials hold out the default share, and say so."""
    path = tmp_path / "lenet.toml"
    path.write_text('recipe = "lenet-fashion-mnist"\nepochs = 1\n[search]\nlr = [0.1, 0.9]\n')
    space = read_space(path)
    assert space.fixed["val_fraction"] == 0.1 and space.fixed["eval_test"] is False
    assert space.fixed["lr"] == 0.9 and space.fixed["model"] == "lenet"  # the recipe's
    assert "would choose on the test split" in space.notes[0]
    assert space.trial_values({"lr": 0.1})["lr"] == 0.1


def test_choices_of_tables_and_grid(tmp_path, reports_on):
    """model_args choices are tables (stored as their JSON text); a grid tries every point
    once and holds no more trials than it has points; each trial writes its report."""
    # a third of npz_data's images: fewer validation images, fewer pictures in each report
    data = "npz:" + str(write_learnable_npz(tmp_path / "data", train=128, test=32))
    space_path = write_space(
        tmp_path, data, "model_args = [{ n_chans1 = 4 }, { n_chans1 = 8 }]",
        'sampler = "grid"\ntrials = 5\npruner = "none"', epochs=1, model="net_width",
    )  # fmt: skip
    space = read_space(space_path)
    assert space.trials == 2 and "the grid has 2 points" in space.notes[0]
    result = sweep(space_path, out_dir=str(tmp_path / "runs"))  # each trial's report too
    for trial in result.trials:
        report = (tmp_path / "runs/space/trials" / str(trial.number) / "report.html").read_text()
        assert "on the validation split" in report  # never the test split
    chosen = sorted(
        json.loads((tmp_path / "runs/space/trials" / str(t.number) / "config.json").read_text())[
            "config"
        ]["model_args"]["n_chans1"]
        for t in result.trials
    )
    assert chosen == [4, 8]
    assert "n_chans1=4" in result.table() and "n_chans1=8" in result.table()


def test_pruned_trial_stops_and_its_folder_says_so(npz_data, tmp_path):
    """A grid in seeded order: two good rates first (the median pruner's start-up trials), then
    one that cannot learn, pruned after its first epoch; its run folder says why."""
    space_path = write_space(
        tmp_path, npz_data, "lr = [3e-3, 2e-3, 1e-7]\noptimizer = [\"adam\"]",
        'sampler = "grid"\nseed = 3\npruner = "median"', epochs=2,  # 1 pruned, 1 not run
    )  # fmt: skip
    result = sweep(space_path, out_dir=str(tmp_path / "runs"), report=False)
    by_lr = {t.params["lr"]: t for t in result.trials}
    order = sorted(result.trials, key=lambda t: t.number)
    assert [t.params["lr"] for t in order][-1] == 1e-7, "the seeded grid order changed"
    slow = by_lr[1e-7]
    assert slow.state == optuna.trial.TrialState.PRUNED
    config = json.loads((tmp_path / "runs/space/trials" / str(slow.number) / "config.json")
                        .read_text())  # fmt: skip
    assert (
        config["stopped"]["epoch"] == 1
        and "pruned by Optuna's median pruner" in (config["stopped"]["reason"])
    )
    assert all(by_lr[lr].state == optuna.trial.TrialState.COMPLETE for lr in (3e-3, 2e-3))
    assert result.best.params["lr"] in (3e-3, 2e-3)


BAD_SPACES = [
    ("no search", "", "", "no [search] table"),
    ("unknown field", "lr_rate = [0.1]", "", "[search] lr_rate: unknown field"),
    ("empty range", "lr = { low = 0.1, high = 0.1 }", "", "an empty range"),
    ("low above high", "lr = { low = 3.0, high = 0.001 }", "", "low 3.0 is above high 0.001"),
    ("refused value", "lr = { low = 0.0, high = 1.0 }", "", "lr = 0.0: lr must be a positive"),
    ("refused choice", 'optimizer = ["sgd", "adamm"]', "", "unknown optimizer 'adamm'"),
    ("log from zero", "lr = { low = 0.0, high = 1.0, log = true }", "", "log range needs low"),
    ("whole numbers", "batch_size = { low = 8.5, high = 64 }", "", "is a whole number"),
    ("empty choices", "optimizer = []", "", "an empty list of choices"),
    ("test split", "lr = [0.1]", 'objective = "test_accuracy"', "never the test's"),
    ("wrong direction", "lr = [0.1]", 'direction = "minimize"', "would choose the worst"),
    ("unknown study key", "lr = [0.1]", "trails = 3", "unknown [study] key 'trails'"),
    ("grid of a range", "lr = { low = 0.1, high = 1.0 }", 'sampler = "grid"', "grid sampler"),
    ("not searchable", "val_fraction = [0.1, 0.2]", "", "the same validation split"),
]


@pytest.mark.parametrize(("search", "study", "message"), [row[1:] for row in BAD_SPACES],
                         ids=[row[0] for row in BAD_SPACES])  # fmt: skip
def test_bad_space_is_one_line_before_any_trial(tmp_path, capsys, search, study, message):
    path = tmp_path / "space.toml"
    text = 'model = "mnist_cnn"\n' + (f"[search]\n{search}\n" if search else "")
    path.write_text(text + (f"[study]\n{study}\n" if study else ""))
    code = main(["sweep", str(path), "--out-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "runs").exists()


def test_a_space_with_val_fraction_zero_is_refused(tmp_path, capsys):
    path = tmp_path / "space.toml"
    path.write_text("val_fraction = 0.0\n[search]\nlr = [0.1, 0.2]\n")
    assert main(["sweep", str(path), "--out-dir", str(tmp_path / "runs")]) == 2
    assert "must not choose on the test split" in capsys.readouterr().err


def test_another_space_cannot_continue_a_study(npz_data, tmp_path):
    first = write_space(tmp_path, npz_data, "lr = [0.001]", "trials = 1", epochs=1)
    sweep(first, out_dir=str(tmp_path / "runs"), report=False)
    write_space(tmp_path, npz_data, "lr = [0.002]", "trials = 1", epochs=1)
    with pytest.raises(Exception, match="made from another search space"):
        sweep(first, out_dir=str(tmp_path / "runs"), report=False)


def _sweep_process(space: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "cnnlab", "sweep", str(space), "--out-dir", str(out),
            "--no-report", *extra]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)  # fmt: skip


def _wait_for_lines(process: subprocess.Popen, needle: str, count: int) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while sum(needle in line for line in lines) < count:
        line = process.stdout.readline()
        assert line and time.monotonic() < deadline, "".join(lines)
        lines.append(line)
    return lines


def _ctrl_c_once(path: Path) -> threading.Thread:
    """A thread that sends this process SIGINT, as Ctrl-C does, once `path` exists."""

    def wait_then_interrupt() -> None:
        deadline = time.monotonic() + 120
        while not path.is_file():
            if time.monotonic() > deadline:
                return  # never sent: the sweep runs to its end, and the test fails on its code
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=wait_then_interrupt, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_ctrl_c_and_sigkill_lose_no_trial(tmp_path, capsys):
    """Ctrl-C of a one-worker sweep, then SIGKILL of a two-worker sweep (the command and its
    workers), then the same command: 4 done trials, each number and grid point once, every
    stopped trial run again with its own values, nothing finished lost."""
    data = "npz:" + str(write_learnable_npz(tmp_path / "data", train=256, test=32))
    grid = [0.001, 0.002, 0.005, 0.01]  # with a grid: no point run twice or left out
    # 4 epochs: Ctrl-C comes after trial 1's first, with 3 left to land in (and 2 more trials)
    space = write_space(tmp_path, data, f"lr = {grid}",
                        'sampler = "grid"\npruner = "none"', epochs=4)  # fmt: skip
    out = tmp_path / "runs"
    # one worker runs its trials in the command's own process: here, this one, and a real
    # SIGINT to it once trial 1 trains (its first epoch saved)
    ctrl_c = _ctrl_c_once(out / "space/trials/1/last.pt")
    code = main(["sweep", str(space), "--out-dir", str(out), "--no-report"])
    ctrl_c.join()
    text = "".join(capsys.readouterr())
    assert code == 130, text
    assert "trial 0: lr=" in text and "trial 1: lr=" in text
    assert "sweep stopped: 1 of 4 trials done" in text and "again to continue" in text
    assert "Traceback" not in text
    assert (out / "space/trials/1/last.pt").is_file()  # stopped as any run: checkpoint saved

    second = _sweep_process(space, out, "--workers", "2")
    # killed mid-trial: each worker has taken its trial and chosen its values (the line it
    # prints then), and is on its way to train it; before its `import torch`, which would add
    # 2 s a worker and kill no differently
    _wait_for_lines(second, ": lr=", 2)
    os.killpg(second.pid, signal.SIGKILL)
    second.wait(timeout=30)

    # the same command, one worker (its sampler is none of the above), in this process: it
    # only has to finish the study, and a third `import torch` would cost 2 s
    assert main(["sweep", str(space), "--out-dir", str(out), "--no-report"]) == 0
    study = study_of(out / "space")
    tally = Tally.of(study)
    assert len(tally.done) == 4 and tally.running == tally.waiting == 0
    done_numbers = [t.number for t in tally.done]
    assert len(set(done_numbers)) == 4
    assert sorted(t.params["lr"] for t in tally.done) == grid
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    # the trial stopped by Ctrl-C and those the SIGKILL cut short: failed, then retried
    assert 1 in [t.number for t in failed] and max(t.number for t in failed) > 1
    retry_of = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history
    for trial in failed:  # each run again once, with the same values
        retries = [t for t in study.get_trials() if retry_of(t)[-1:] == [trial.number]]
        assert len(retries) == 1 and retries[0].params == trial.params
    for number in done_numbers:
        assert (out / "space/trials" / str(number) / "best.pt").is_file()


def test_without_optuna_the_command_names_the_extra(npz_data, tmp_path, capsys, monkeypatch):
    space = write_space(tmp_path, npz_data, "lr = [0.001]")
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` fails, as uninstalled
    assert main(["sweep", str(space), "--out-dir", str(tmp_path / "runs")]) == 2
    assert "pip install 'cnnlab[sweep]'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_trial_that_fails_is_told_so_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """Any error of a trial (out of memory, say) fails that trial alone, with its reason;
    with val_loss as the objective the value is best.pt's epoch's and the least wins."""
    from cnnlab.sweeps import worker

    real = worker.train_trial

    def out_of_memory_in_trial_1(trial, *args):
        if trial.number == 1:
            raise RuntimeError("CUDA out of memory")
        return real(trial, *args)

    monkeypatch.setattr(worker, "train_trial", out_of_memory_in_trial_1)
    # a third of npz_data's images: what is checked is which epoch's value a trial gets
    data = "npz:" + str(write_learnable_npz(tmp_path / "data", train=128, test=32))
    space = write_space(tmp_path, data, "lr = [0.003, 0.0003, 0.001]",
                        'objective = "val_loss"\nsampler = "grid"\npruner = "none"')  # fmt: skip
    result = sweep(space, out_dir=str(tmp_path / "runs"), report=False)
    states = {t.number: t.state for t in result.trials}
    assert states[1] == optuna.trial.TrialState.FAIL and len(result.trials) == 3
    failed = next(t for t in result.trials if t.number == 1)
    assert failed.user_attrs["error"] == "RuntimeError: CUDA out of memory"
    assert "failed" in result.table()
    for trial in result.trials:
        if trial.state != optuna.trial.TrialState.COMPLETE:
            continue
        rows = [json.loads(x) for x in (tmp_path / "runs/space/trials" / str(trial.number) /
                "metrics.jsonl").read_text().splitlines()]  # fmt: skip
        chosen = max(rows, key=lambda r: r["val_accuracy"])  # best.pt's epoch
        assert trial.value == chosen["val_loss"]
    complete = [t for t in result.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert result.best.value == min(t.value for t in complete)
