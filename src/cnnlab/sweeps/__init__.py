"""Sweeps: a search over training settings on Optuna, every trial an ordinary cnnlab run.

    cnnlab sweep lr.toml --trials 12 --workers 2          # runs/lr/
    cnnlab.sweep("lr.toml", trials=12, workers=2)

space.py reads the SPACE file (no torch, no Optuna), study.py holds the study (storage,
sampler, pruner, heartbeats), worker.py runs trials, results.py writes what the sweep leaves.
This module is the command: it checks everything, locks the sweep folder, opens the study,
starts the workers, and writes the results when they end. The same command again continues
the study in the same folder (its SQLite file), whatever stopped it.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.config import SweepConfig
from cnnlab.errors import CnnlabError, ConfigError

if TYPE_CHECKING:
    from cnnlab.sweeps.results import SweepResult
    from cnnlab.sweeps.space import Space

EXTRA = "pip install 'cnnlab[sweep]'"  # make setup installs it


class SweepStopped(CnnlabError):
    """The sweep stopped before its last trial (Ctrl-C, SIGTERM, or its workers were killed);
    the message says how far it got and how to continue."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def sweep(space: str | Path | None = None, **options: Any) -> SweepResult:
    """Run (or continue) the sweep of the SPACE file `space`; `options` are SweepConfig's
    (trials, workers, out_dir, name, storage, report). Returns the table of trials and the
    best one (SweepResult)."""
    cfg = SweepConfig.from_dict({"space": None if space is None else str(space), **options},
                                source="cnnlab.sweep")  # fmt: skip
    return run_sweep(cfg)


def run_sweep(cfg: SweepConfig, space: Space | None = None, say: Any = print) -> SweepResult:
    """Every check first (the SPACE file, Optuna, the folder, the storage), then the trials,
    then the results. `space`: cfg.space already read (the command line checks its data)."""
    from cnnlab.sweeps.space import read_space

    cfg.validate()
    if cfg.space is None:
        raise ConfigError("give the search space: cnnlab sweep SPACE.toml")
    space = space or read_space(cfg.space, cfg.trials)
    require_optuna()
    from cnnlab.sweeps.results import sweep_results
    from cnnlab.sweeps.study import fail_orphans, open_storage, open_study, quiet_optuna
    from cnnlab.sweeps.study import storage_url as resolve_url
    from cnnlab.sweeps.worker import Plan
    from cnnlab.training.run_dir import lock_run_dir, unlock

    quiet_optuna()
    name = cfg.name or Path(cfg.space).stem
    sweep_dir = Path(cfg.out_dir) / name
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the sweep folder {sweep_dir}: {err.strerror}") from None
    try:
        lock = lock_run_dir(sweep_dir)
    except ConfigError:
        raise ConfigError(f"sweep {sweep_dir} is in use by another cnnlab sweep command; wait "
                          "for it to end, or give another --name") from None  # fmt: skip
    try:
        url = resolve_url(cfg.storage, sweep_dir)
        study = open_study(space, name, open_storage(url))
        for note in space.notes:
            say(f"note: {note}")
        if cfg.storage is None:  # this folder's own study: once no worker is left on it
            wait_for_old_workers(sweep_dir, say)
            orphans = fail_orphans(study)
            if orphans:
                say(f"trials {', '.join(map(str, orphans))} were left running by a stopped "
                    "sweep: failed, and queued to run again")  # fmt: skip
        threads = max(1, len(os.sched_getaffinity(0)) // cfg.workers)
        plan = Plan(Path(cfg.space).resolve(), sweep_dir.resolve(), url, name, cfg.trials,
                    threads, cfg.report)  # fmt: skip
        say(intro(cfg, space, study, sweep_dir, threads))
        stopped = run_workers(plan, cfg.workers)
        device = space.fixed.get("device", "auto")
        result = sweep_results(study, space, sweep_dir, device=device, final=stopped is None)
        say(str(result))
        if len(result.trials) < space.trials:
            raise stopped_error(cfg, result, stopped)
        if stopped is not None:  # a worker ended early, and the others did its share
            say(f"note: a worker ended early (exit code {stopped}); the others finished")
        say(f"sweep page: {sweep_dir / 'sweep.html'}")
        return result
    finally:
        unlock(lock, sweep_dir)


def wait_for_old_workers(sweep_dir: Path, say: Any) -> None:
    """Wait until no worker of an earlier command works in this folder (each holds a shared
    lock while it lives; killed with their command they end within moments), so that the
    RUNNING trials taken for orphans next are really nobody's."""
    import fcntl

    from cnnlab.sweeps.worker import WORKERS_LOCK

    fd = os.open(sweep_dir / WORKERS_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            say("waiting for the workers of a stopped sweep in this folder to end")
            fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


def require_optuna() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError(f"cnnlab sweep needs Optuna, an optional extra: {EXTRA}") from None


def intro(cfg: SweepConfig, space: Any, study: Any, sweep_dir: Path, threads: int) -> str:
    from cnnlab.sweeps.study import Tally

    done = len(Tally.of(study).done)
    already = f", {done} done already" if done else ""
    where = "SQLite in the sweep folder" if cfg.storage is None else "--storage"
    return (
        f"sweep {sweep_dir}: {space.trials} trials{already}, {cfg.workers} worker"
        f"{'s' * (cfg.workers != 1)} ({threads} thread{'s' * (threads != 1)} each), "
        f"{space.sampler} sampler, {space.pruner} pruner, {space.objective} of the validation "
        f"split; study {study.study_name!r} in {where}"
    )


def run_workers(plan: Any, workers: int) -> int | None:
    """Run the workers to their end: in this process for one, else one process each. The exit
    code of a stop (Ctrl-C: 130, SIGTERM: 143, workers killed: 137), or None."""
    from cnnlab.sweeps.worker import STORAGE_ENV, work
    from cnnlab.training.signals import TrainingInterrupted

    if workers == 1:
        try:
            work(plan, 0)
        except TrainingInterrupted as err:
            return err.exit_code
        except KeyboardInterrupt as err:
            return getattr(err, "exit_code", 130)
        return None
    env = {**os.environ, STORAGE_ENV: plan.storage}  # not on the command line: ps shows that
    processes = [subprocess.Popen(plan.argv(k), env=env) for k in range(workers)]
    try:
        codes = [process.wait() for process in processes]
    except KeyboardInterrupt as err:  # Ctrl-C reached the workers too; SIGTERM did not
        _stop_all(processes)
        return getattr(err, "exit_code", 130)
    if any(code == 2 for code in codes):  # a worker's own error, printed by it
        raise ConfigError("a sweep worker stopped on the error above")
    killed = [code for code in codes if code != 0]
    if killed:
        return 128 + signal.SIGKILL if any(code < 0 for code in killed) else max(killed)
    return None


def _stop_all(processes: list[subprocess.Popen]) -> None:
    """Let each worker stop its trial (checkpoint saved, trial queued again): a worker still
    running after a moment gets SIGINT from here."""
    deadline = time.monotonic() + 2.0
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
    for process in processes:
        process.wait()


def stopped_error(cfg: SweepConfig, result: Any, code: int | None) -> SweepStopped:
    """How far the sweep got and the command that continues it (its own flags again)."""
    from cnnlab.config.flags import command_line
    from cnnlab.sweeps.study import shown_url

    values = cfg.to_dict()
    if cfg.storage is not None:
        values["storage"] = shown_url(cfg.storage)
    command = shlex.join(["cnnlab", "sweep", *command_line(SweepConfig, values)])
    return SweepStopped(
        f"sweep stopped: {len(result.trials)} of {result.space.trials} trials done; run "
        f"`{command}` again to continue the study",
        code or 1,
    )
