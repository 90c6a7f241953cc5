"""A training run: set it up, run its epochs, checkpoint, log, and resume it exactly.

`fit(cfg)` validates everything that can be wrong before touching the run folder, then runs
the epoch loop (`run_epochs`): train (loop.py), evaluate, checkpoint, log, in that order, where
it can be read. `resume(run_dir)` puts model, optimizer, schedule, RNGs, data order and running
sums back as last.pt left them, so a resumed run is the run it would have been.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.train import checkpoint as ckpt
from cnnlab.train.cpu_split import SplitStep, can_split, default_slices
from cnnlab.train.fast_ops import use_fast_cpu_ops
from cnnlab.train.loop import EpochSums, evaluate, raise_if_diverged, train_one_epoch
from cnnlab.train.optim import make_loss, make_optimizer, make_scheduler, steps_per_batch
from cnnlab.train.runtime import (
    StopSignals,
    TrainingInterrupted,
    create_run_dir,
    keep_freed_memory,
    prepare_run_dir,
    resolve_device,
    resume_config,
    set_determinism,
    write_config_json,
)
from cnnlab.train.tracking import MetricsLog, Progress, TensorBoardLog


@dataclass
class TrainState:
    """Where the run is: everything besides model/optimizer/scheduler that a resume needs."""

    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps taken
    batch_in_epoch: int = 0  # batches finished in the epoch in progress
    best_accuracy: float = -1.0
    metrics: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    run_dir: Path
    model: nn.Module
    metrics: list[dict[str, Any]]


@dataclass
class Session:
    """Everything one run trains with, built once by `fit`."""

    cfg: TrainConfig
    device: torch.device
    model: nn.Module  # the module whose state_dict is saved
    forward_model: nn.Module  # the same model, compiled when cfg.compile
    train_loader: Any
    test_loader: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    loss_fn: nn.Module
    num_classes: int
    run_dir: Path
    meta: dict[str, Any]  # what every checkpoint carries to rebuild the model without a recipe
    split: SplitStep | None = None  # CPU: slices of each batch on parallel threads
    state: TrainState = field(default_factory=TrainState)

    def save(self, sums: EpochSums, filename: str = "last.pt") -> None:
        """Write a checkpoint of the run as it stands (refusing to save a diverged model)."""
        raise_if_diverged(sums, self.state.epoch, self.run_dir)
        state = self.state
        ckpt.save_checkpoint(
            {
                **self.meta,
                "model_state": self.model.state_dict(),
                "optimizer_state": self.optimizer.state_dict(),
                "scheduler_state": self.scheduler.state_dict() if self.scheduler else None,
                "epoch": state.epoch,
                "step": state.step,
                "batch_in_epoch": state.batch_in_epoch,
                "best_accuracy": state.best_accuracy,
                "metrics": state.metrics,
                "finished": state.epoch >= self.cfg.epochs,
                "epoch_sums": {
                    "loss_sum": sums.loss_sum,
                    "correct": sums.correct,
                    "seen": sums.seen,
                    "seconds": sums.seconds,
                },
                "rng": ckpt.rng_state(self.device),
            },
            self.run_dir / filename,
        )


def fit(cfg: TrainConfig) -> TrainResult:
    """Train as `cfg` says and leave a run directory behind."""
    with _torch_settings_restored():
        return _train(cfg, None)


def resume(run_dir: str | Path, **overrides: Any) -> TrainResult:
    """Continue the run in `run_dir` from its last.pt, step for step as if never stopped.

    `overrides` may change where and how long it runs (device, threads, epochs, ...), not what
    it learns: a conflicting setting is a ConfigError.
    """
    run_dir = Path(run_dir)
    saved = ckpt.load_checkpoint(run_dir / "last.pt")
    cfg = resume_config(saved["config"], overrides, run_dir)
    with _torch_settings_restored():
        return _train(cfg, (run_dir, saved))


@contextlib.contextmanager
def _torch_settings_restored() -> Iterator[None]:
    """A run may change torch's global thread count and determinism; give them back after."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(cfg: TrainConfig, resumed: tuple[Path, dict[str, Any]] | None) -> TrainResult:
    from cnnlab.data import load_dataset, make_loader
    from cnnlab.models import count_parameters, create_model

    cfg.validate()
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        keep_freed_memory()
    caveats = set_determinism(cfg, device)
    # everything that can fail on bad input happens before the run folder is touched
    data = load_dataset(
        cfg.dataset,
        cfg.data_dir,
        download=cfg.download,
        image_size=cfg.image_size,
        seed=cfg.seed,
        normalize=cfg.normalize,
    )
    channels, height, width = data.input_shape
    model_args = dict(
        num_classes=data.num_classes,
        in_channels=channels,
        image_size=[height, width],
        init=cfg.init,
        **cfg.model_args,
    )
    model = create_model(cfg.model, **model_args).to(device)
    if cfg.fast_cpu_ops and device.type == "cpu" and not cfg.compile:
        use_fast_cpu_ops(model)  # same numbers, less time (see fast_ops.py)
    if resumed is not None:
        run_dir, saved = resumed
        _check_resumable(saved, cfg, model_args, run_dir)
    else:
        run_dir, saved = prepare_run_dir(cfg), None

    # a last batch of one sample would break BatchNorm on 1×1 maps; dropping it costs nothing
    train_loader = make_loader(
        data,
        "train",
        batch_size=cfg.batch_size,
        shuffle=True,
        device=device,
        seed=cfg.seed,
        augment=cfg.augment,
        drop_last=len(data.train) % cfg.batch_size == 1,
    )
    optimizer = make_optimizer(cfg, model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    session = Session(
        cfg,
        device,
        model,
        torch.compile(model) if cfg.compile else model,
        train_loader,
        make_loader(data, "test", batch_size=cfg.eval_batch_size, device=device),
        optimizer,
        make_scheduler(cfg, optimizer, len(train_loader)),
        make_loss(cfg, data.num_classes, device),
        data.num_classes,
        run_dir,
        meta={
            "format": ckpt.FORMAT,
            "version": ckpt.VERSION,
            "model_name": cfg.model,
            "model_args": model_args,
            "class_names": list(data.class_names),
            "mean": list(data.mean),
            "std": list(data.std),
            "input_shape": list(data.input_shape),
            "dataset": data.name,
            "config": cfg.to_dict(),
        },
    )
    session.split = _make_split(cfg, session)
    if saved is not None:
        _restore(session, saved)
        ckpt.remove_stale_temp_files(run_dir)  # left by a writer that was killed mid-save
    else:
        create_run_dir(run_dir, cfg.overwrite)
    write_config_json(
        run_dir,
        cfg,
        device,
        {
            "model_name": cfg.model,
            "model_args": model_args,
            "parameters": count_parameters(model),
            "dataset": {
                "name": data.name,
                "location": data.location,
                "train": len(data.train),
                "test": len(data.test),
            },
        },
    )
    progress = Progress(cfg.progress, cfg.epochs)
    progress.message(f"run directory: {run_dir}")
    for caveat in caveats:
        progress.message(f"deterministic: {caveat}")
    tensorboard = TensorBoardLog(
        run_dir, cfg.tensorboard, purge_step=session.state.step if saved is not None else None
    )
    if cfg.threads or session.split is not None:
        torch.set_num_threads(cfg.threads or 1)  # slices run one intra-op thread each
    try:
        with StopSignals() as stop:
            run_epochs(session, saved, stop, MetricsLog(run_dir), tensorboard, progress)
    finally:
        if session.split is not None:
            session.split.close()
        progress.close()
        tensorboard.close()
    progress.message(f"run directory: {run_dir}")
    return TrainResult(run_dir, model, session.state.metrics)


class StepHook:
    """Runs after every optimizer step: counters, progress, train_loss every log interval,
    mid-epoch checkpoints, and a clean stop (checkpoint first) after SIGINT / SIGTERM."""

    def __init__(
        self,
        session: Session,
        sums: EpochSums,
        epoch: int,
        stop: StopSignals,
        tensorboard: TensorBoardLog,
        progress: Progress,
    ):
        self.session, self.sums, self.epoch, self.stop = session, sums, epoch, stop
        self.tensorboard, self.progress = tensorboard, progress
        self.logged_loss, self.logged_seen = float(sums.loss_sum), sums.seen

    def __call__(self) -> None:
        session, state, sums, cfg = self.session, self.session.state, self.sums, self.session.cfg
        state.step += 1
        state.batch_in_epoch += 1
        self.progress.advance()
        if state.step % cfg.log_every == 0:
            loss_sum = float(sums.loss_sum)  # the one host sync per log interval
            raise_if_diverged(sums, state.epoch, session.run_dir)
            interval_loss = (loss_sum - self.logged_loss) / max(sums.seen - self.logged_seen, 1)
            self.tensorboard.scalar("train_loss", interval_loss, state.step)
            self.logged_loss, self.logged_seen = loss_sum, sums.seen
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
            session.save(sums)
        if self.stop.signum is not None:
            session.save(sums)
            raise TrainingInterrupted(self.stop.signum, session.run_dir, self.epoch, state.step)


def run_epochs(
    session: Session,
    saved: dict[str, Any] | None,
    stop: StopSignals,
    metrics_log: MetricsLog,
    tensorboard: TensorBoardLog,
    progress: Progress,
) -> None:
    """The epoch loop: train, evaluate, checkpoint, log; from wherever `session.state` is."""
    cfg, state = session.cfg, session.state
    per_batch = steps_per_batch(cfg)
    autocast = torch.autocast(session.device.type, torch.bfloat16) if cfg.amp else None
    metrics_log.write(state.metrics)  # on resume: drop rows written after the checkpoint
    for epoch in range(state.epoch, cfg.epochs):
        sums = EpochSums.zeros(session.device, state.step)
        if saved is not None and state.batch_in_epoch:  # resuming mid-epoch
            sums.restore(saved["epoch_sums"])
        session.train_loader.set_epoch(epoch, start_batch=state.batch_in_epoch)
        progress.start_epoch(epoch, len(session.train_loader), state.batch_in_epoch)
        train_one_epoch(
            session.forward_model,
            session.train_loader,
            session.optimizer,
            session.loss_fn,
            sums,
            scheduler=session.scheduler if per_batch else None,
            autocast=autocast,
            split=session.split,
            on_step=StepHook(session, sums, epoch, stop, tensorboard, progress),
        )
        raise_if_diverged(sums, state.epoch, session.run_dir)
        row = _epoch_row(epoch, state.step, sums, session.optimizer.param_groups[0]["lr"])
        if session.scheduler is not None and not per_batch:
            session.scheduler.step()
        eval_start = time.perf_counter()
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            result = evaluate(
                session.forward_model,
                session.test_loader,
                session.loss_fn,
                session.num_classes,
                split=session.split,
            )
            row.update(test_loss=result.loss, test_accuracy=result.accuracy)
            tensorboard.scalar("test_loss", result.loss, epoch + 1)
            tensorboard.scalar("test_accuracy", result.accuracy, epoch + 1)
        row["epoch_seconds"] = sums.seconds + time.perf_counter() - eval_start
        state.epoch, state.batch_in_epoch = epoch + 1, 0
        state.metrics.append(row)
        improved = row.get("test_accuracy", -1.0) > state.best_accuracy
        if improved:
            state.best_accuracy = row["test_accuracy"]
        session.save(sums)
        if improved:
            session.save(sums, "best.pt")
        metrics_log.write(state.metrics)
        tensorboard.flush()
        progress.end_epoch(row)
        if stop.signum is not None:
            raise TrainingInterrupted(stop.signum, session.run_dir, epoch + 1, state.step)


def _make_split(cfg: TrainConfig, session: Session) -> SplitStep | None:
    """Slice CPU batches across cores when it keeps the step's meaning (see cpu_split.py)."""
    slices = cfg.cpu_slices or default_slices(cfg.deterministic)
    if cfg.deterministic and slices > 2:
        raise ConfigError(
            "--deterministic allows --cpu-slices 1 or 2 (summing more gradients "
            "in thread order is not bit-exact)"
        )
    if session.device.type != "cpu" or slices < 2 or cfg.compile or cfg.amp:
        return None
    if not can_split(session.model):
        return None
    return SplitStep(session.forward_model, session.loss_fn, slices)


def _restore(session: Session, saved: dict[str, Any]) -> None:
    """Put model, optimizer, schedule, RNGs and counters back as the checkpoint left them."""
    ckpt.load_model_state(session.model, saved)
    session.optimizer.load_state_dict(saved["optimizer_state"])
    if session.scheduler is not None:
        session.scheduler.load_state_dict(saved["scheduler_state"])
    ckpt.set_rng_state(saved["rng"], session.device)
    session.state = TrainState(
        saved["epoch"],
        saved["step"],
        saved["batch_in_epoch"],
        saved["best_accuracy"],
        list(saved["metrics"]),
    )


def _epoch_row(epoch: int, step: int, sums: EpochSums, lr: float) -> dict[str, Any]:
    seen = max(sums.seen, 1)
    return {
        "epoch": epoch + 1,
        "step": step,
        "train_loss": float(sums.loss_sum) / seen,
        "train_accuracy": int(sums.correct) / seen,
        # wall clock, waiting for batches included (d2l's figure leaves that out)
        "examples_per_second": sums.seen / sums.seconds if sums.seconds else None,
        "lr": lr,
    }


def _check_resumable(
    saved: dict[str, Any], cfg: TrainConfig, model_args: dict, run_dir: Path
) -> None:
    if saved.get("finished") and saved["epoch"] >= cfg.epochs:
        raise ConfigError(
            f"run {run_dir} already finished its {saved['epoch']} epochs; pass --epochs N "
            f"(more than {saved['epoch']}) to train further"
        )
    if saved["model_args"] != model_args or saved["model_name"] != cfg.model:
        raise ConfigError(
            f"run {run_dir} was trained with other data or model settings; "
            "resume it with the same data set"
        )
