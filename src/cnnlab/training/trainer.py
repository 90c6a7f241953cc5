"""Running a run: the epoch loop around train_one_epoch, and resuming it exactly.

`fit(cfg)` builds a Session (session.py: everything that can be wrong fails there, before the
run folder is touched) and runs its epochs: train (loop.py), evaluate, checkpoint, log, in that
order. `resume_run(run_dir)` rebuilds the session from last.pt (model, optimizer, schedule, RNGs,
data order and running sums), so a resumed run is the run it would have been. Every file and
line of output of the training goes through RunOutputs (outputs.py); the report and the last
line come after, from whoever finished the run (cnnlab/api.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.config import TrainConfig, resumable_fields, saved_train_values
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.models.own import canonical_model_name
from cnnlab.process import (
    seconds_since_process_start,
    startup_finished,
    startup_seconds_once,
    torch_threads_restored,
)
from cnnlab.training.checkpoint import load_checkpoint, load_model_state
from cnnlab.training.cpu_split import SplitStep
from cnnlab.training.determinism import deterministic_kernels
from cnnlab.training.distributed import StopVote, World, process_group
from cnnlab.training.loop import EpochTotals, evaluate, raise_if_diverged, train_one_epoch
from cnnlab.training.lr_find import find_for_run, write_lr_find
from cnnlab.training.optim import steps_per_batch
from cnnlab.training.outputs import RunOutputs, now
from cnnlab.training.resume_rules import resume_config
from cnnlab.training.run_dir import never_trained, prepare_run_dir
from cnnlab.training.session import Given, Session, build_session
from cnnlab.training.signals import StopSignals, TrainingInterrupted
from cnnlab.training.stopping import selection_key, stop_reason


@dataclass(repr=False)
class TrainResult:
    """A finished run: its folder, its trained model, one metrics row per epoch, the config it
    ran with, and whether this process wrote the folder (under torchrun, rank 0 alone)."""

    run_dir: Path
    model: nn.Module
    metrics: list[dict[str, Any]]
    config: TrainConfig
    main_process: bool = True

    def __repr__(self) -> str:  # a line, not the model's layers (a notebook shows the run)
        return f"<TrainResult {self.run_dir}: {len(self.metrics)} epochs of {self.config.model}>"

    def _repr_html_(self) -> str:  # a notebook shows the run: where, its curves, its epochs
        from cnnlab.training.notebook import run_html
        from cnnlab.training.outputs import epoch_columns

        cfg = self.config
        columns = epoch_columns(cfg.val_fraction > 0, cfg.eval_test)
        facts = [
            ("run folder", str(self.run_dir)),
            ("model", f"{cfg.model} on {cfg.dataset}"),
            ("epochs", f"{len(self.metrics)} of {cfg.epochs}"),
        ]
        return run_html(self.metrics, columns, facts)


def fit(cfg: TrainConfig, given: Given | None = None) -> TrainResult:
    """Train as `cfg` says and leave a run directory behind (no report: `cnnlab.train` asks
    for it when the run is done). `given`: a model object or data handed over in Python.

    The same command again (same --name, same settings) takes up the run it names where it
    stopped (Ctrl-C, a kill), or trains it further (more --epochs): a resume, whose rules say
    when it cannot. `cfg.lr_find` (--lr find): a new run first finds its rate with the range
    test (lr_find.py); a continued one keeps the rate it found."""
    same = same_run(cfg)
    if same is not None:
        resumable = {key: getattr(cfg, key) for key in resumable_fields()}
        return _resume(*same, given, resumable)
    if cfg.name is not None:
        prepare_run_dir(cfg)  # a folder in the way: refused before the data is read
    session = build_session(cfg, given=given)
    if not cfg.lr_find:
        return run(session)
    try:  # --lr find: the range test, then its rate in the config
        found = find_for_run(session)
    except BaseException:  # no rate (ConfigError), Ctrl-C, ...: run() will not close the
        # parts, so close them here (a Python caller would keep the --cpu-slices threads, and
        # a model object given would stay frozen); there is no run folder to remove, as
        # nothing is written before run() opens its outputs
        session.parts.close()
        raise
    try:
        return run(session)
    finally:  # the plot and the curve beside the run's checkpoints (no run, no folder: none)
        if session.world.writes and (session.run_dir / "last.pt").is_file():
            write_lr_find(session.run_dir, found)


def same_run(cfg: TrainConfig) -> tuple[Path, dict[str, Any]] | None:
    """The folder `cfg` names and its last.pt, when that holds a run of the same settings
    (what a resume may change aside); else None (a new run, or the folder is in the way).
    Not under torchrun: each process would decide from its own disk."""
    if cfg.name is None or cfg.overwrite or World.from_env().launched:
        return None
    run_dir = Path(cfg.out_dir) / cfg.name
    try:
        saved = load_checkpoint(run_dir / "last.pt")
    except CnnlabError:  # none, or damaged: not a run to continue
        return None
    wanted = dataclasses.replace(cfg, model=canonical_model_name(cfg.model)).validate()
    ignored = resumable_fields() | {"name", "out_dir", "overwrite"}
    if cfg.lr_find:  # the saved lr is the one the finder suggested, and it stays
        ignored.add("lr")
    theirs = saved_train_values(saved["config"])
    # a setting newer than the run was at its default in it
    defaults = TrainConfig().to_dict()
    same = all(theirs.get(key, defaults[key]) == value for key, value in wanted.to_dict().items()
               if key not in ignored)  # fmt: skip
    return (run_dir, saved) if same else None


def resume_run(run_dir: str | Path, *, given: Given | None = None, **overrides: Any) -> TrainResult:
    """Continue the run in `run_dir` from its last.pt, step for step as if never stopped.

    `overrides` may change where and how long it runs (device, threads, epochs, ...), not what
    it learns: a conflicting setting is a ConfigError. A run on data given in Python needs
    that data again (`given`), as does one whose model was an object.
    """
    run_dir = Path(run_dir)
    if run_dir.is_dir() and not (run_dir / "last.pt").exists() and never_trained(run_dir):
        raise ConfigError(
            f"run {run_dir} stopped during start-up, before its first checkpoint: there is "
            "nothing to resume; run the same `cnnlab train` command again (the same --name "
            "starts it anew)"
        )
    return _resume(run_dir, load_checkpoint(run_dir / "last.pt"), given, overrides)


def _resume(
    run_dir: Path, saved: dict[str, Any], given: Given | None, overrides: dict[str, Any]
) -> TrainResult:
    cfg = resume_config(saved_train_values(saved["config"]), overrides, run_dir)
    return run(build_session(cfg, saved, given=given))


def run(session: Session) -> TrainResult:
    """Open the run's outputs, train the remaining epochs, close everything. Under torchrun
    the process group starts here, after every check, and rank 0 alone writes. Stopped by
    Ctrl-C before its first checkpoint, a new run leaves no folder behind."""
    cfg = session.cfg
    # the stop handlers, once training starts, stay until everything is closed: under torchrun
    # a process closing after an error gets SIGTERM from torchrun (one of its processes has
    # failed), and it must still get to say why
    with (
        torch_threads_restored(),
        deterministic_kernels(cfg.deterministic),
        contextlib.ExitStack() as handlers,
        process_group(session.world, session.device, cfg.dist_timeout) as world,
    ):
        session.join_world(world)
        outputs = RunOutputs(session.run_dir, cfg, writes=world.writes)
        interrupted = False
        try:
            outputs.open(resumed_at_step=session.state.step if session.resumed else None)
            outputs.config_json({**session.info.to_dict(), **session.facts}, session.device)
            outputs.message(f"run directory: {session.run_dir}")
            if session.resumed:
                state = session.state
                outputs.message(f"resuming at epoch {state.epoch + 1}, step {state.step}")
            if world.launched:
                batch = f"a global batch of {cfg.batch_size} shared between them"
                outputs.message(f"torchrun: {world.size} processes, {batch}")
            for caveat in session.caveats:
                outputs.message(f"deterministic: {caveat}")
            if cfg.threads or isinstance(session.parts.split, SplitStep):
                torch.set_num_threads(cfg.threads or 1)  # slices run one intra-op thread each
            startup_finished()  # every module is imported (torch.optim's dynamo): process.py
            stop = handlers.enter_context(StopSignals(repeats_within=1.0 if world.launched else 0))
            run_epochs(session, stop, outputs)
        except KeyboardInterrupt:  # before the stop handlers (start-up), or a second Ctrl-C
            interrupted = True
            raise
        finally:
            session.parts.close()
            outputs.close()
            if interrupted and not session.resumed:  # no checkpoint yet: nothing to resume
                outputs.discard_start()
            session.world = replace(world, link=None)  # the group ends with this block
    return TrainResult(
        session.run_dir, session.parts.model, session.state.metrics, cfg, main_process=world.writes
    )


def save(session: Session, outputs: RunOutputs, filename: str = "last.pt") -> None:
    """Write a checkpoint of the run as it stands (refusing to save a diverged model).
    Every process calls it (the sums are summed over them); rank 0 writes."""
    totals = session.state.sums.totals(session.world)
    raise_if_diverged(totals.first_bad_step, session.state.epoch, session.run_dir)
    outputs.checkpoint(session.state_dict(), filename)


class StepHook:
    """Runs after every optimizer step: counters, progress, train_loss every log interval,
    mid-epoch checkpoints, and a clean stop (checkpoint first) after SIGINT / SIGTERM.
    Under torchrun every process runs it at every step and takes the same decisions."""

    def __init__(
        self, session: Session, epoch: int, stop: StopSignals, outputs: RunOutputs, *,
        first_of_process: bool,
    ):  # fmt: skip
        self.session, self.epoch, self.stop, self.outputs = session, epoch, stop, outputs
        totals = session.state.sums.totals(session.world)
        self.logged_loss, self.logged_seen = totals.loss_sum, totals.seen
        self.vote = StopVote(session.world)  # a signal to any process stops them all
        self.first_of_process = first_of_process  # time the start-up at this epoch's first step
        self.startup_seconds: float | None = None

    def __call__(self, batches: int = 1) -> None:
        """After an optimizer step that took `batches` batches (--accumulate-batches)."""
        session, state, sums = self.session, self.session.state, self.session.state.sums
        cfg = session.cfg
        if self.first_of_process and self.startup_seconds is None:
            self.startup_seconds = startup_seconds_once()
        state.step += 1
        state.batch_in_epoch += batches
        if session.parts.lookahead is not None:  # before a checkpoint can save the weights
            session.parts.lookahead.after_step(state.step)
        self.outputs.progress.advance(sums, batches)
        if state.step % cfg.log_every == 0:
            totals = sums.totals(session.world)  # the one host sync per log interval
            raise_if_diverged(totals.first_bad_step, state.epoch, session.run_dir)
            interval_loss = (totals.loss_sum - self.logged_loss) / max(
                totals.seen - self.logged_seen, 1
            )
            self.outputs.scalars({"train_loss": interval_loss}, state.step)
            self.logged_loss, self.logged_seen = totals.loss_sum, totals.seen
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
            save(session, self.outputs)
        signum = self.vote(self.stop.signum)
        if signum is not None:
            save(session, self.outputs)
            raise TrainingInterrupted(signum, session.run_dir, self.epoch, state.step)

    def signal_at_epoch_end(self) -> int | None:
        """The signal that stops the run after its epoch (the same in every process)."""
        pending = self.vote.result() or 0
        return self.session.world.largest(max(pending, self.stop.signum or 0)) or None


def run_epochs(session: Session, stop: StopSignals, outputs: RunOutputs) -> None:
    """The epoch loop: train, evaluate, checkpoint, log; from wherever `session.state` is."""
    cfg, state = session.cfg, session.state
    per_batch = steps_per_batch(cfg)
    autocast = torch.autocast(session.device.type, torch.bfloat16) if cfg.amp else None
    outputs.metrics_rows(state.metrics)  # on resume: drop rows written after the checkpoint
    first_epoch = state.epoch
    for epoch in range(state.epoch, cfg.epochs):
        phase = session.freeze_for_epoch(epoch, first=epoch == first_epoch)
        if phase is not None:
            outputs.message(phase)
        sums = session.state.start_epoch()
        session.parts.train_loader.set_epoch(epoch, start_batch=state.batch_in_epoch)
        if session.parts.mix is not None:  # its draws follow the batch, as the loader's do
            session.parts.mix.set_epoch(epoch, start_batch=state.batch_in_epoch)
        outputs.progress.start_epoch(epoch, len(session.parts.train_loader), state.batch_in_epoch)
        hook = StepHook(session, epoch, stop, outputs, first_of_process=epoch == first_epoch)
        train_one_epoch(
            session.parts.forward_model,
            session.parts.train_loader,
            session.parts.optimizer,
            session.parts.loss_fn,
            sums,
            scheduler=session.parts.scheduler if per_batch else None,
            autocast=autocast,
            split=session.parts.split,
            on_step=hook,
            accumulate=cfg.accumulate_batches,
            max_grad_norm=cfg.max_grad_norm,
            mix=session.parts.mix,
        )
        row = end_epoch(session, epoch, outputs, hook.startup_seconds)
        outputs.end_epoch(row, state.metrics)
        if state.stopped is not None:
            stop_early(session, outputs)
            return
        signum = hook.signal_at_epoch_end()
        if signum is not None and state.epoch < cfg.epochs:  # after the last: it has finished
            raise TrainingInterrupted(signum, session.run_dir, epoch + 1, state.step)


def stop_early(session: Session, outputs: RunOutputs) -> None:
    """Say why the run stopped and record it in config.json; the model handed back is then
    best.pt's, the run's result (rank 0 wrote it; the other processes' models are not used)."""
    state = session.state
    session.facts["stopped"] = {"epoch": state.epoch, "reason": state.stopped}
    outputs.config_json({**session.info.to_dict(), **session.facts}, session.device)
    outputs.message(f"{state.stopped}; best.pt is the result")
    best = session.run_dir / "best.pt"
    if session.world.writes and best.is_file():
        load_model_state(session.parts.model, load_checkpoint(best))


def end_epoch(
    session: Session, epoch: int, outputs: RunOutputs, startup_seconds: float | None
) -> dict[str, Any]:
    """After an epoch's last step: its row, the schedule's step, evaluation, checkpoints."""
    cfg, state, sums = session.cfg, session.state, session.state.sums
    totals = sums.totals(session.world)
    raise_if_diverged(totals.first_bad_step, state.epoch, session.run_dir)
    row = epoch_row(
        epoch, state.step, totals, sums.seconds, session.parts.optimizer.param_groups[0]["lr"]
    )
    if startup_seconds is not None:
        row["startup_seconds"] = startup_seconds  # process start to its first step
    if session.parts.scheduler is not None and not steps_per_batch(cfg):
        session.parts.scheduler.step()
    eval_start = time.perf_counter()
    if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
        for split in ("val", "test"):
            loader = getattr(session.parts, f"{split}_loader")
            if loader is not None:
                result = evaluate(
                    session.parts.forward_model, loader, session.parts.loss_fn,
                    session.parts.num_classes, split=session.parts.split, world=session.world,
                    tta=cfg.tta, translate=cfg.tta_translate,
                )  # fmt: skip
                row.update({f"{split}_loss": result.loss, f"{split}_accuracy": result.accuracy})
    row["epoch_seconds"] = sums.seconds + time.perf_counter() - eval_start
    # process start to this evaluation's end, start-up included: time to accuracy
    row["process_seconds"] = seconds_since_process_start()
    row["time"] = now()  # when the epoch ended: the report's end time
    state.epoch, state.batch_in_epoch = epoch + 1, 0
    key = selection_key(session.parts.val_loader is not None)
    chosen = row.get(key)
    improved = chosen is not None and chosen > state.best_accuracy
    if improved:
        state.best_accuracy = chosen
    if chosen is not None:
        state.watch.update(chosen, epoch + 1, cfg.early_stop_min_delta)
    state.stopped = stop_reason(cfg, key, chosen, epoch + 1, state.watch)
    if state.stopped is None and session.watcher is not None and epoch + 1 < cfg.epochs:
        state.stopped = session.watcher(row)  # (the last epoch ends the run anyway)
    if state.stopped is not None:
        row["stopped"] = state.stopped
    state.metrics.append(row)
    save(session, outputs)
    if improved:
        save(session, outputs, "best.pt")
    return row


def epoch_row(epoch: int, step: int, totals: EpochTotals, seconds: float, lr: float) -> dict:
    """An epoch's metrics row from the sums over every process and this one's training time."""
    seen = max(totals.seen, 1)
    return {
        "epoch": epoch + 1,
        "step": step,
        "train_loss": totals.loss_sum / seen,
        "train_accuracy": totals.correct / seen,
        # wall clock, waiting for batches included (d2l's figure leaves that out)
        "examples_per_second": totals.seen / seconds if seconds else None,
        "lr": lr,
    }
