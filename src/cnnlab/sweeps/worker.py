"""A sweep worker: it takes trials from the study until the sweep has its number of done trials,
and runs each as an ordinary cnnlab run in SWEEP/trials/<number>/.

The workers take turns to count the trials and ask for the next (a file lock in the sweep
folder; on PostgreSQL an advisory lock, which workers on every machine share), so they never
start more trials than the sweep asks for. Each trial
reports its validation metric after every epoch; when the pruner says stop, the run stops as
early stopping stops one (its config.json and last metrics row say "pruned ..."), its report
is written, and the trial is told PRUNED. Ctrl-C (or SIGTERM) stops the trial as it stops any
run, checkpoint saved; the trial is failed and queued again for the next start.

`python -m cnnlab.sweeps.worker ...` is how `cnnlab sweep --workers N` starts each worker.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import Trial, TrialState

from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError
from cnnlab.files import publish_text
from cnnlab.sweeps.space import Space, read_space
from cnnlab.sweeps.study import (
    Tally,
    fail_and_retry,
    heartbeat,
    open_storage,
    open_study,
    quiet_optuna,
    suggest,
)

if TYPE_CHECKING:
    from cnnlab.training.trainer import TrainResult

POLL_SECONDS = 2.0  # how often a worker with nothing to start looks again
FAILURES_BEFORE_STOP = 3  # trials failed by their own fault, with none finished
ASK_LOCK = ".ask.lock"
WORKERS_LOCK = ".workers.lock"
STORAGE_ENV = "CNNLAB_SWEEP_STORAGE"  # a worker's storage URL
TRIALS = "trials"  # SWEEP/trials/<number>/
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass
class Plan:
    """What each worker of one `cnnlab sweep` command is told: the SPACE file (checked by the
    command), the sweep folder, the storage URL, the study's name, --trials, each trial's
    torch threads, and whether trials write their report."""

    space_path: Path
    sweep_dir: Path
    storage: str
    name: str
    trials: int | None
    threads: int
    report: bool

    def argv(self, worker: int) -> list[str]:
        """The command line that starts worker number `worker` in its own process (the storage
        URL, which may hold a password, goes in its environment: STORAGE_ENV)."""
        argv = [
            sys.executable,
            "-m",
            "cnnlab.sweeps.worker",
            str(self.space_path),
            str(self.sweep_dir),
            self.name,
            "--worker",
            str(worker),
            "--threads",
            str(self.threads),
            "--report" if self.report else "--no-report",
        ]
        return argv + (["--trials", str(self.trials)] if self.trials is not None else [])

    @classmethod
    def from_argv(cls, argv: list[str]) -> tuple[Plan, int]:
        parser = argparse.ArgumentParser(prog="python -m cnnlab.sweeps.worker")
        for name in ("space_path", "sweep_dir", "name"):
            parser.add_argument(name)
        parser.add_argument("--worker", type=int, default=0)
        parser.add_argument("--threads", type=int, default=1)
        parser.add_argument("--trials", type=int, default=None)
        parser.add_argument("--report", action=argparse.BooleanOptionalAction, default=True)
        args = parser.parse_args(argv)
        plan = cls(
            Path(args.space_path),
            Path(args.sweep_dir),
            os.environ[STORAGE_ENV],
            args.name,
            args.trials,
            args.threads,
            args.report,
        )
        return plan, args.worker


def work(plan: Plan, worker: int = 0) -> None:
    """Run trials until the sweep has its number of done ones (or nothing is left to start)."""
    quiet_optuna()
    space = read_space(plan.space_path, plan.trials)
    storage = open_storage(plan.storage)
    study = open_study(space, plan.name, storage)
    # seeded by worker and by how far the study is: a second start samples anew
    study.sampler = _reseeded(study, space, worker)
    with holding_workers_lock(plan.sweep_dir):
        take_trials(study, storage, space, plan)


def take_trials(study: optuna.Study, storage: Any, space: Space, plan: Plan) -> None:
    """Count, ask, run; until the study has its number of done trials."""
    while True:
        with taking_turns(storage.engine, plan):
            optuna.storages.fail_stale_trials(study)  # a worker that died: its trial retried
            tally = Tally.of(study)
            if len(tally.done) >= space.trials:
                return
            trial = study.ask() if tally.waiting or _room(tally, space) else None
            if trial is not None:  # beating before the lock is let go: a kill from here on
                storage.record_heartbeat(trial._trial_id)  # leaves a trial that goes stale
        if trial is None:  # the last trials run elsewhere: wait for them (or their retries)
            time.sleep(POLL_SECONDS)
            continue
        error = run_trial(study, trial, space, plan)
        if error is not None:
            stop_if_nothing_works(study, error)


def stop_if_nothing_works(study: optuna.Study, error: str) -> None:
    """Several trials failed by their own fault and none finished: the fault is most likely
    the fixed settings' (a model argument no choice fits, say), so stop rather than fail the
    whole study trial by trial."""
    trials = study.get_trials(deepcopy=False)
    finished = any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    failed = sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in trials)
    if not finished and failed >= FAILURES_BEFORE_STOP:
        raise CnnlabError(
            f"the first {failed} trials failed and none finished; the last one: {error}"
        )


@contextmanager
def holding_workers_lock(sweep_dir: Path) -> Iterator[None]:
    """A shared lock on SWEEP/.workers.lock while this worker works (the kernel frees it if
    the process dies): a new `cnnlab sweep` command waits on it before it takes RUNNING
    trials for orphans, so it never fails a trial a worker still runs."""
    fd = os.open(sweep_dir / WORKERS_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _room(tally: Tally, space: Space) -> bool:
    return len(tally.done) + tally.running < space.trials


def _reseeded(study: optuna.Study, space: Space, worker: int) -> optuna.samplers.BaseSampler:
    from cnnlab.sweeps.study import make_sampler

    return make_sampler(space, 1000 * worker + len(study.get_trials(deepcopy=False)))


@contextmanager
def taking_turns(engine: Any, plan: Plan) -> Iterator[None]:
    """The study's workers, one at a time, to count and ask: on PostgreSQL every worker of the
    study on any machine (an advisory lock of the study's name, freed with its connection
    when a worker dies), else the workers of this sweep folder (a file lock, which the kernel
    frees for a dead process)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy import text

        key = int.from_bytes(hashlib.sha256(plan.name.encode()).digest()[:8], "big", signed=True)
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        return
    fd = os.open(plan.sweep_dir / ASK_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def run_trial(study: optuna.Study, trial: Trial, space: Space, plan: Plan) -> str | None:
    """One trial, start to tell, then its report: its values, its run, its state. The error of
    a trial that failed by its own fault, else None."""
    from cnnlab.training.loop import TrainingDiverged
    from cnnlab.training.signals import TrainingInterrupted

    start = time.perf_counter()
    try:
        with heartbeat(trial):
            searched = suggest(trial, space)
            shown = ", ".join(f"{k}={_value_text(v)}" for k, v in searched.items())
            print(f"trial {trial.number}: {shown}", flush=True)
            result, pruned = train_trial(trial, space, plan, searched)
            value = objective_value(result.metrics, space.objective)
    except (TrainingInterrupted, KeyboardInterrupt):
        mark_folder(plan, trial, "stopped before its end (Ctrl-C, SIGTERM); the sweep runs its "
                    "values again from the start, as a new trial")  # fmt: skip
        fail_and_retry(study, trial._trial_id)
        raise
    except TrainingDiverged as err:  # a rate too high is an answer, not a fault: the worst
        mark_folder(plan, trial, f"pruned: {err}")
        tell(study, trial, {"stopped": str(err)}, state=TrialState.PRUNED)
        print(f"trial {trial.number}: pruned: {err}", flush=True)
        return None
    except Exception as err:  # a setting its model, data or machine refuses: its own fault
        error = str(err) if isinstance(err, CnnlabError) else f"{type(err).__name__}: {err}"
        tell(study, trial, {"error": error}, state=TrialState.FAIL)
        print(f"trial {trial.number}: failed: {error}", flush=True)
        return error
    facts = {"epochs": len(result.metrics), "seconds": time.perf_counter() - start}
    if pruned is not None:
        tell(study, trial, {**facts, "stopped": pruned}, state=TrialState.PRUNED)
        print(f"trial {trial.number}: {pruned}", flush=True)
    else:
        tell(study, trial, facts, values=value)
        epochs = f"{len(result.metrics)} epoch{'s' * (len(result.metrics) != 1)}"
        print(f"trial {trial.number}: {space.objective} {value:.4f} ({epochs}, "
              f"{facts['seconds']:.1f} s)", flush=True)  # fmt: skip
    if plan.report:  # after the tell: a Ctrl-C while it is written loses no trained trial
        from cnnlab import api

        api.report_run(result.run_dir, result.config)
    return None


def tell(study: optuna.Study, trial: Trial, attrs: dict[str, Any], **outcome: Any) -> None:
    """The trial's facts and end; nothing when it was ended already elsewhere (a worker that
    took it for dead: its heartbeat was late)."""
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        study.tell(trial, **outcome)


def mark_folder(plan: Plan, trial: Trial, reason: str) -> None:
    """Say in the trial's config.json why its run did not end as a trial (a run stopped by
    Ctrl-C, one that diverged): `cnnlab compare` and the report then read it as stopped."""
    path = plan.sweep_dir / TRIALS / str(trial.number) / "config.json"
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # stopped before its run wrote one: nothing to mark
        return
    facts["stopped"] = {"epoch": None, "reason": reason}
    publish_text(path, json.dumps(facts, indent=2) + "\n")


def train_trial(
    trial: Trial, space: Space, plan: Plan, searched: dict[str, Any]
) -> tuple[TrainResult, str | None]:
    """Train the trial's run and return it and, if the pruner stopped it, why."""
    from cnnlab.training.session import Given
    from cnnlab.training.trainer import fit

    values = space.trial_values(searched)
    values.update(out_dir=str(plan.sweep_dir / TRIALS), name=str(trial.number),
                  progress="none", report=plan.report)  # fmt: skip
    if "threads" not in space.fixed:  # each worker its share of the cores
        values["threads"] = plan.threads
        if plan.threads == 1 and "cpu_slices" not in space.fixed:
            values["cpu_slices"] = 1
    cfg = TrainConfig.from_dict(values, source=f"trial {trial.number}")
    watcher = PruningWatcher(trial, space.objective)
    return fit(cfg, Given(watcher=watcher)), watcher.pruned


class PruningWatcher:
    """Reports each epoch's validation metric to the trial and stops the run when the
    pruner says so (the epoch watcher of training/session.py)."""

    def __init__(self, trial: Trial, objective: str):
        self.trial, self.objective = trial, objective
        self.pruned: str | None = None

    def __call__(self, row: dict[str, Any]) -> str | None:
        value = row.get(self.objective)
        if value is None or not math.isfinite(value):  # not evaluated this epoch
            return None
        self.trial.report(value, step=row["epoch"])
        if not self.trial.should_prune():
            return None
        pruner = type(self.trial.study.pruner).__name__.removesuffix("Pruner").lower()
        self.pruned = (
            f"pruned by Optuna's {pruner} pruner at epoch {row['epoch']}: {self.objective} "
            f"{value:.4f} is behind the other trials'"
        )
        return self.pruned


def objective_value(metrics: list[dict[str, Any]], objective: str) -> float:
    """The trial's result: the validation metric of its best.pt, the first epoch of the
    highest validation accuracy (the run's own rule: training/stopping.py), so the value
    ranked and the model kept are the same epoch's."""
    rows = [row for row in metrics if row.get("val_accuracy") is not None]
    if not rows:
        raise CnnlabError("the run measured no validation accuracy")
    best = max(rows, key=lambda row: row["val_accuracy"])  # max keeps the first of a tie
    return best[objective]


def _value_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _end_with_the_command() -> None:
    """SIGTERM this worker when the `cnnlab sweep` that started it dies, even by SIGKILL
    (Linux's PR_SET_PDEATHSIG): a worker left running would go on with trials that the next
    command takes for orphans. SIGTERM stops its trial as Ctrl-C does (queued again)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not Linux: no such promise
        return
    parent = os.getppid()
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the command died before the call
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    from cnnlab.config.flags import cli_message
    from cnnlab.training.signals import TrainingInterrupted, terminate_like_interrupt

    terminate_like_interrupt()
    _end_with_the_command()
    plan, worker = Plan.from_argv(sys.argv[1:] if argv is None else argv)
    try:
        work(plan, worker)
    except CnnlabError as err:
        sys.stderr.write(f"error: worker {worker}: {cli_message(err)}\n")
        return 2
    except TrainingInterrupted as err:
        return err.exit_code
    except KeyboardInterrupt as err:
        return getattr(err, "exit_code", 130)
    return 0


if __name__ == "__main__":
    sys.exit(main())
