"""Optimizer, loss and LR schedule from a TrainConfig (seed 002's table of optimizers)."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The configured torch optimizer; only the arguments each one accepts are passed."""
    params = [p for p in model.parameters() if p.requires_grad]
    common = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.eps is not None:
        common["eps"] = cfg.eps
    # foreach: one kernel per parameter group instead of one per tensor (faster, same numbers)
    if cfg.optimizer == "sgd":
        if "eps" in common:
            raise ConfigError("sgd has no eps; remove --eps or choose another optimizer")
        return torch.optim.SGD(
            params,
            momentum=cfg.momentum,
            dampening=cfg.dampening,
            nesterov=cfg.nesterov,
            foreach=True,
            **common,
        )
    if cfg.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        return cls(params, betas=tuple(cfg.betas), amsgrad=cfg.amsgrad, foreach=True, **common)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, momentum=cfg.momentum, foreach=True, **common)
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(params, foreach=True, **common)
    if cfg.optimizer == "adadelta":
        return torch.optim.Adadelta(params, foreach=True, **common)
    if cfg.optimizer == "lbfgs":
        # step(closure) re-runs forward + backward several times per batch (train_one_epoch
        # passes the closure); with --cpu-slices each re-run is sliced, so the gradient LBFGS
        # sees is still the whole batch's (see cpu_split.py)
        if cfg.weight_decay > 0:
            raise ConfigError(
                "lbfgs has no weight_decay; remove --weight-decay or choose another optimizer"
            )
        if "eps" in common:
            raise ConfigError("lbfgs has no eps; remove --eps or choose another optimizer")
        return torch.optim.LBFGS(
            params,
            lr=cfg.lr,
            max_iter=cfg.lbfgs_max_iter,
            history_size=cfg.lbfgs_history_size,
            line_search_fn="strong_wolfe" if cfg.lbfgs_line_search else None,
        )
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}")


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer.step` must be given a closure that re-evaluates the loss (LBFGS)."""
    return isinstance(optimizer, torch.optim.LBFGS)


def make_loss(cfg: TrainConfig, num_classes: int, device: torch.device) -> nn.Module:
    """Cross-entropy on logits, with optional label smoothing and class weights."""
    weight = None
    if cfg.class_weights is not None:
        if len(cfg.class_weights) != num_classes:
            raise ConfigError(
                f"class_weights has {len(cfg.class_weights)} values but the data set has "
                f"{num_classes} classes; give one weight per class"
            )
        weight = torch.tensor(cfg.class_weights, dtype=torch.float32, device=device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def make_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The LR schedule. one-cycle steps every batch; the others step once per epoch."""
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    # one-cycle also cycles momentum (or adam's beta1); adagrad, adadelta and lbfgs have neither
    cycle_momentum = "momentum" in optimizer.defaults or "betas" in optimizer.defaults
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=cfg.lr,
        epochs=cfg.epochs,
        steps_per_epoch=steps_per_epoch,
        cycle_momentum=cycle_momentum,
    )


def steps_per_batch(cfg: TrainConfig) -> bool:
    """Whether the schedule steps after every batch (one-cycle) rather than every epoch."""
    return cfg.scheduler == "onecycle"
