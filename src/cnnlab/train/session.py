"""Building a run: everything it trains with, made once from a TrainConfig (`build_session`).

Everything that can fail on bad input (config, device, data, model, run folder, resume rules)
fails here, before a file is written. `trainer.py` then runs the session. A Session saves and
restores itself with `state_dict()` / `load_state_dict()`, the torch convention, and that dict
is the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.train import checkpoint as ckpt
from cnnlab.train.cpu_split import SplitStep, can_split, default_slices
from cnnlab.train.determinism import set_determinism
from cnnlab.train.device import resolve_device
from cnnlab.train.fast_ops import use_fast_cpu_ops
from cnnlab.train.loop import EpochSums
from cnnlab.train.optim import make_loss, make_optimizer, make_scheduler
from cnnlab.train.process import keep_freed_memory
from cnnlab.train.resume_rules import check_resumable
from cnnlab.train.run_dir import prepare_run_dir


@dataclass
class TrainState:
    """Where the run is: everything besides model/optimizer/scheduler that a resume needs."""

    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps taken
    batch_in_epoch: int = 0  # batches finished in the epoch in progress
    best_accuracy: float = -1.0
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "best_accuracy": self.best_accuracy,
            "metrics": list(self.metrics),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.epoch, self.step = saved["epoch"], saved["step"]
        self.batch_in_epoch, self.best_accuracy = saved["batch_in_epoch"], saved["best_accuracy"]
        self.metrics = list(saved["metrics"])


@dataclass(kw_only=True)
class Session:
    """Everything one run trains with, built once by `build_session`."""

    cfg: TrainConfig
    info: ckpt.RunInfo  # what every checkpoint and config.json say the run is
    device: torch.device
    run_dir: Path
    model: nn.Module  # the module whose state_dict is saved
    forward_model: nn.Module  # the same model, compiled when cfg.compile
    train_loader: Any
    test_loader: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    loss_fn: nn.Module
    num_classes: int
    facts: dict[str, Any]  # parameter count, where the data came from: for config.json
    caveats: list[str]  # what --deterministic cannot promise here
    split: SplitStep | None = None  # CPU: slices of each batch on parallel threads
    state: TrainState = field(default_factory=TrainState)
    sums: EpochSums | None = None  # the epoch in progress (saves happen only inside one)
    resumed: bool = False  # restored from a checkpoint by load_state_dict
    resumed_sums: dict[str, Any] | None = None  # a checkpoint's part-done epoch, used once

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: the run as it stands, enough to continue it step for step."""
        return {
            "format": ckpt.FORMAT,
            "version": ckpt.VERSION,
            **self.info.to_dict(),
            "model_state": self.model.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict() if self.scheduler else None,
            **self.state.state_dict(),
            "finished": self.state.epoch >= self.cfg.epochs,
            "epoch_sums": self.sums.state_dict(),
            "rng": ckpt.rng_state(self.device),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Put model, optimizer, schedule, RNGs and counters back as the checkpoint left them."""
        ckpt.load_model_state(self.model, saved)
        self.optimizer.load_state_dict(saved["optimizer_state"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler_state"])
        ckpt.set_rng_state(saved["rng"], self.device)
        self.state.load_state_dict(saved)
        self.resumed = True
        self.resumed_sums = saved["epoch_sums"] if self.state.batch_in_epoch else None

    def start_epoch(self) -> EpochSums:
        """Fresh sums for the next epoch, or the part-done epoch's sums when resuming."""
        self.sums = EpochSums.zeros(self.device, self.state.step)
        if self.resumed_sums is not None:
            self.sums.load_state_dict(self.resumed_sums)
            self.resumed_sums = None
        return self.sums

    def close(self) -> None:
        if self.split is not None:
            self.split.close()


def build_session(cfg: TrainConfig, saved: dict[str, Any] | None = None) -> Session:
    """Everything `cfg` trains with; with `saved` (a last.pt), as that checkpoint left it."""
    from cnnlab.data import load_dataset, make_loader
    from cnnlab.models import count_parameters

    cfg.validate()
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        keep_freed_memory()
    caveats = set_determinism(cfg, device)
    data = load_dataset(
        cfg.dataset, cfg.data_dir, download=cfg.download, image_size=cfg.image_size,
        val_fraction=cfg.val_fraction, seed=cfg.seed, normalize=cfg.normalize,
    )  # fmt: skip
    model, info = _build_model(cfg, data, device)
    if saved is not None:
        run_dir = Path(cfg.out_dir) / cfg.name
        check_resumable(saved, cfg, info.model_args, run_dir)
    else:
        run_dir = prepare_run_dir(cfg)
    # a last batch of one sample would break BatchNorm on 1×1 maps; dropping it costs nothing
    train_loader = make_loader(
        data, "train", batch_size=cfg.batch_size, shuffle=True, device=device, seed=cfg.seed,
        augment=cfg.augment, drop_last=len(data.train) % cfg.batch_size == 1,
    )  # fmt: skip
    optimizer = make_optimizer(cfg, model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    session = Session(
        cfg=cfg, info=info, device=device, run_dir=run_dir, model=model,
        forward_model=torch.compile(model) if cfg.compile else model,
        train_loader=train_loader,
        test_loader=make_loader(data, "test", batch_size=cfg.eval_batch_size, device=device),
        optimizer=optimizer, scheduler=make_scheduler(cfg, optimizer, len(train_loader)),
        loss_fn=make_loss(cfg, data.num_classes, device), num_classes=data.num_classes,
        facts={
            "parameters": count_parameters(model),
            "data": {"location": data.location, "train": len(data.train), "test": len(data.test)},
        },
        caveats=caveats,
    )  # fmt: skip
    session.split = make_split(session)
    if saved is not None:
        session.load_state_dict(saved)
    return session


def _build_model(cfg: TrainConfig, data: Any, device: torch.device):
    """The model for `data`'s shape and classes, on `device`, and the RunInfo that rebuilds it."""
    from cnnlab.models import create_model

    channels, height, width = data.input_shape
    model_args = dict(
        num_classes=data.num_classes, in_channels=channels, image_size=[height, width],
        init=cfg.init, **cfg.model_args,
    )  # fmt: skip
    model = create_model(cfg.model, **model_args).to(device)
    if cfg.fast_cpu_ops and device.type == "cpu" and not cfg.compile:
        use_fast_cpu_ops(model)  # same numbers, less time (see fast_ops.py)
    info = ckpt.RunInfo(
        model_name=cfg.model, model_args=model_args, class_names=list(data.class_names),
        mean=list(data.mean), std=list(data.std), input_shape=list(data.input_shape),
        dataset=data.name, config=cfg.to_dict(),
    )  # fmt: skip
    return model, info


def make_split(session: Session) -> SplitStep | None:
    """Slice CPU batches across cores when it keeps the step's meaning (see cpu_split.py)."""
    cfg = session.cfg
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
