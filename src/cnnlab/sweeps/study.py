"""The Optuna study behind a sweep: its storage, sampler and pruner, and how trials are counted.

The storage is an RDB one, for its heartbeats: by default SQLite in the sweep folder
(`SWEEP/study.db`), so the same command continues the study; `--storage postgresql://...`
(or any SQLAlchemy URL Optuna's RDBStorage takes) lets workers on several machines share one
study, the way Optuna distributes. A trial whose process dies stops beating: once its heartbeat
is older than GRACE_SECONDS any worker fails it and Optuna's RetryHeartbeatStaleTrialCallback queues
a copy (same parameters) that the next free worker runs.

A trial is *done* when it completed, was pruned, or failed by its own fault (a setting its
model refuses, say: `error` in its user attributes); a trial failed by a kill or Ctrl-C was
retried and does not count. A sweep of N trials ends with N done trials.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState
from sqlalchemy.exc import IntegrityError

from cnnlab.errors import ConfigError
from cnnlab.sweeps.space import Space

HEARTBEAT_SECONDS = 5  # how often a running trial says it is alive
GRACE_SECONDS = 20  # silence after which its trial is failed and retried
MAX_RETRIES = 3  # of one trial killed again and again
DB_FILE = "study.db"
# SQLite: wait for the other workers' writes; PostgreSQL: TCP keepalives, so the server soon
# ends the session (and frees the advisory lock: worker.taking_turns) of a machine that vanished
ENGINE_ARGS = {
    "sqlite": {"timeout": 60},
    "postgresql": {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                   "keepalives_count": 3},
}  # fmt: skip
SPACE_ATTR = "cnnlab_space"  # the study's search space, so another file cannot continue it


def quiet_optuna() -> None:
    """cnnlab prints one line per trial itself: Optuna's own INFO lines, and its warnings that
    heartbeats are experimental and meant for Study.optimize (cnnlab beats for its ask-and-tell
    trials itself: `heartbeat`), would bury them."""
    optuna.logging.set_verbosity(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def storage_url(url: str | None, sweep_dir: Path) -> str:
    """The study's storage: `url`, or SQLite in the sweep folder. A plain postgresql:// URL
    uses psycopg (3), the driver cnnlab's sweep extra installs, where psycopg2 is absent."""
    if url is None:
        return f"sqlite:///{(sweep_dir / DB_FILE).resolve()}"
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"--storage {url!r} is not a database URL; give one like "
            "postgresql://user@host:5432/db (or leave it out: SQLite in the sweep folder)"
        )
    if scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg2") is None:
        return f"postgresql+psycopg://{rest}"
    return url


def open_storage(url: str) -> RDBStorage:
    """The RDB storage at `url`, with heartbeats; a database that cannot be reached is one
    line, not SQLAlchemy's traceback. Workers starting at once on a fresh database race to
    make Optuna's tables: the losers try again."""
    engine = {"connect_args": ENGINE_ARGS.get(url.partition(":")[0].partition("+")[0], {})}
    for attempt in range(3):
        try:
            return _rdb_storage(url, engine)
        except IntegrityError:  # a fresh database: another worker made the tables first
            if attempt == 2:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _rdb_storage(url: str, engine: dict[str, Any]) -> RDBStorage:
    try:
        return RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
        )  # fmt: skip
    except ImportError as err:
        raise ConfigError(f"storage {shown_url(url)} needs a database driver: {err}") from None
    except IntegrityError:
        raise
    except Exception as err:  # SQLAlchemy's errors: the server, the URL, the file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot open the study storage {shown_url(url)}: {first}") from None


def shown_url(url: str) -> str:
    """The URL with its password hidden, as SQLAlchemy shows one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_study(space: Space, name: str, storage: RDBStorage, worker_seed: int = 0) -> optuna.Study:
    """The study `name` in `storage`, created at first, continued after; a study of another
    search space under the same name is refused (its trials would not compare)."""
    study = optuna.create_study(
        study_name=name, storage=storage, load_if_exists=True, direction=space.direction,
        sampler=make_sampler(space, worker_seed), pruner=make_pruner(space),
    )  # fmt: skip
    known = study.user_attrs.get(SPACE_ATTR)
    if known is None:
        study.set_user_attr(SPACE_ATTR, space.identity())
    elif known != space.identity():
        raise ConfigError(
            f"the study {name!r} was made from another search space (fixed settings, [search] "
            "or [study] differ); give another --name for a new sweep"
        )
    return study


def make_sampler(space: Space, worker_seed: int) -> optuna.samplers.BaseSampler:
    """TPE (Optuna's default), random or grid. TPE and random are seeded per worker (workers
    seeded alike would sample the same values at the same moment); the grid by the study's
    seed alone, as its seed orders the grid and every worker must read grid point k alike."""
    seed = space.seed + worker_seed
    if space.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if space.sampler == "grid":  # the seed shuffles the grid: it must be the same for all
        return AskTellGrid(space.grid(), seed=space.seed)
    # constant_liar: a running trial counts as a poor result, so parallel workers spread out
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


class AskTellGrid(optuna.samplers.GridSampler):
    """Optuna's grid sampler, told of each trial's end by ask-and-tell: its `after_trial` stops
    the study once the grid is done, which only Study.optimize allows (a RuntimeError here,
    before the trial's state is saved). The sweep counts its trials itself (the grid's size
    at most: space.py), so there is nothing to stop."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        pass


def make_pruner(space: Space) -> optuna.pruners.BasePruner:
    """Median (stop a trial below the median of the others at the same epoch) or Hyperband,
    fed each epoch's validation metric; "none": every trial runs all its epochs."""
    if space.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if space.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)  # the most: what trials ran
    return optuna.pruners.NopPruner()


def suggest(trial: Trial, space: Space) -> dict[str, Any]:
    """The trial's searched values, as Optuna stores them (a table choice as its JSON text)."""
    values = {}
    for p in space.params:
        if p.choices:
            values[p.name] = trial.suggest_categorical(p.name, p.choice_labels())
        elif p.integer:
            values[p.name] = trial.suggest_int(p.name, p.low, p.high, step=p.step or 1, log=p.log)
        else:
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    return values


@dataclass
class Tally:
    """The study's trials by what they mean for the count: done, running, waiting."""

    done: list[FrozenTrial]
    running: int
    waiting: int

    @classmethod
    def of(cls, study: optuna.Study) -> Tally:
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if is_done(t)]
        running = sum(t.state == TrialState.RUNNING for t in trials)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        return cls(done, running, waiting)


def is_done(trial: FrozenTrial) -> bool:
    """Completed, pruned, or failed by its own fault (not by a kill: that one is retried)."""
    finished = trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
    return finished or (trial.state == TrialState.FAIL and "error" in trial.user_attrs)


def fail_and_retry(study: optuna.Study, trial_id: int) -> None:
    """Fail a trial that stopped without an end of its own (Ctrl-C, or a process found dead)
    and queue its copy, as Optuna does for a stale heartbeat."""
    storage = study._storage  # the storage API is public; the study's handle to it is not
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        frozen = storage.get_trial(trial_id)
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, frozen)


def fail_orphans(study: optuna.Study) -> list[int]:
    """Fail and retry every RUNNING trial at once: for a sweep folder no process works on (its
    lock was free), whose trials are therefore dead. The numbers of those trials."""
    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in orphans:
        fail_and_retry(study, trial._trial_id)
    return [trial.number for trial in orphans]


@contextlib.contextmanager
def heartbeat(trial: Trial) -> Iterator[None]:
    """Beat for `trial` every HEARTBEAT_SECONDS while it runs (Optuna's own optimize loop
    does the same; ask-and-tell leaves it to the caller)."""
    storage = trial.storage
    storage.record_heartbeat(trial._trial_id)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(Exception):  # a lost beat: the next one tells
                storage.record_heartbeat(trial._trial_id)

    thread = threading.Thread(target=beat, name="cnnlab-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
