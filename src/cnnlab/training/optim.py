"""Optimizer, loss and LR schedule from a TrainConfig (seed 002's table of optimizers)."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from cnnlab.config import DEFAULT_LR, TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.models.heads import split_parameters


def make_optimizer(
    cfg: TrainConfig, model: nn.Module, num_classes: int | None = None
) -> torch.optim.Optimizer:
    """The configured torch optimizer; only the arguments each one accepts are passed.
    `num_classes` finds the classifier head when fine-tuning asks for two parameter groups."""
    if cfg.lr is None:  # a config not validated yet (validate() fills it in so too)
        cfg = dataclasses.replace(cfg, lr=DEFAULT_LR[cfg.optimizer])
    if cfg.optimizer == "lbfgs" and cfg.backbone_lr_scale != 1:
        raise ConfigError(
            "lbfgs takes one learning rate for all parameters; remove --backbone-lr-scale "
            "(--freeze-backbone works with lbfgs) or choose another optimizer"
        )
    params = parameter_groups(cfg, model, num_classes)
    optimizer_class, own = _own_arguments(cfg)
    for name in ("weight_decay", "eps"):
        if name not in own and getattr(cfg, name):  # eps None or weight decay 0: nothing asked
            raise ConfigError(
                f"{cfg.optimizer} has no {name}; remove --{name.replace('_', '-')} "
                "or choose another optimizer"
            )
    settings = {k: v for k, v in own.items() if v is not None}  # None: the optimizer's default
    return optimizer_class(params, lr=scaled_lr(cfg), **settings)


def scaled_lr(cfg: TrainConfig) -> float:
    """--lr, or with --lr-batch-size B the rate it names for batches of B, scaled to the batch
    each step adds up (batch size × accumulated batches) by the linear scaling rule (Goyal et
    al. 2017): twice the batch, twice the rate."""
    if cfg.lr_batch_size is None:
        return cfg.lr
    return cfg.lr * cfg.batch_size * cfg.accumulate_batches / cfg.lr_batch_size


def uses_parameter_groups(cfg: TrainConfig) -> bool:
    """Whether the head and the backbone get parameter groups of their own (fine-tuning).
    LBFGS takes one group only; it freezes well without one (a frozen parameter's gradient
    counts as zero in its flat vector, so its direction leaves it where it is)."""
    fine_tuning = cfg.freeze_backbone or cfg.backbone_lr_scale != 1
    return fine_tuning and cfg.optimizer != "lbfgs"


def parameter_groups(
    cfg: TrainConfig, model: nn.Module, num_classes: int | None
) -> list[nn.Parameter] | list[dict]:
    """Every trainable parameter in one group, as runs have always had it (so their saved
    optimizer states still load); or, fine-tuning, the head's group FIRST at --lr (metrics'
    "lr" reads param_groups[0]) and the backbone's at lr × backbone_lr_scale.

    A frozen backbone is in the optimizer from the start: torch optimizers skip a parameter
    whose .grad is None (no update, no weight decay, no state), so unfreezing needs no new
    optimizer and a checkpoint's optimizer state fits whichever phase the run is in."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if cfg.bn_bias_lr_scale != 1:
        return batch_norm_bias_groups(cfg, model, trainable)
    if not uses_parameter_groups(cfg):
        return trainable
    if num_classes is None:
        raise TypeError("make_optimizer needs num_classes to tell the head from the backbone")
    head, backbone = split_parameters(model, num_classes)
    keep = {id(p) for p in trainable}
    backbone_lr = scaled_lr(cfg) * cfg.backbone_lr_scale
    return [
        {"params": [p for p in head if id(p) in keep]},
        {"params": [p for p in backbone if id(p) in keep], "lr": backbone_lr},
    ]


def batch_norm_bias_groups(
    cfg: TrainConfig, model: nn.Module, trainable: list[nn.Parameter]
) -> list[dict]:
    """--bn-bias-lr-scale s: the batch norms' biases in a group of their own at lr × s, its
    weight decay divided by s so that they decay per step as the rest do (airbench94: s 64);
    every other parameter FIRST, at --lr (metrics' "lr" reads param_groups[0])."""
    biases = {
        id(m.bias) for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None
    }  # fmt: skip
    scale = cfg.bn_bias_lr_scale
    return [
        {"params": [p for p in trainable if id(p) not in biases]},
        {
            "params": [p for p in trainable if id(p) in biases],
            "lr": scaled_lr(cfg) * scale,
            "weight_decay": cfg.weight_decay / scale,
        },
    ]


def _own_arguments(cfg: TrainConfig) -> tuple[type, dict]:
    """The optimizer class and the settings from `cfg` it takes (weight_decay and eps where it
    has them). foreach: one kernel per parameter group instead of one per tensor."""
    decay_eps = {"weight_decay": cfg.weight_decay, "eps": cfg.eps}
    optim = torch.optim
    return {
        "sgd": (optim.SGD, dict(
            momentum=cfg.momentum, dampening=cfg.dampening, nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay, foreach=True,
        )),
        "adam": (optim.Adam, dict(
            betas=tuple(cfg.betas), amsgrad=cfg.amsgrad, foreach=True, **decay_eps
        )),
        "adamw": (optim.AdamW, dict(
            betas=tuple(cfg.betas), amsgrad=cfg.amsgrad, foreach=True, **decay_eps
        )),
        "rmsprop": (optim.RMSprop, dict(momentum=cfg.momentum, foreach=True, **decay_eps)),
        "adagrad": (optim.Adagrad, dict(foreach=True, **decay_eps)),
        "adadelta": (optim.Adadelta, dict(foreach=True, **decay_eps)),
        # step(closure) re-runs forward + backward several times per batch (see closure_step
        # in loop.py); no weight decay, no eps
        "lbfgs": (optim.LBFGS, dict(
            max_iter=cfg.lbfgs_max_iter, history_size=cfg.lbfgs_history_size,
            line_search_fn="strong_wolfe" if cfg.lbfgs_line_search else None,
        )),
    }[cfg.optimizer]  # fmt: skip


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
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, batches_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The LR schedule. one-cycle and linear step at every optimizer step (one per
    --accumulate-batches batches); the others once per epoch."""
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.accumulate_batches)
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.scheduler == "linear":
        return linear_schedule(cfg, optimizer, steps_per_epoch * cfg.epochs)
    # one-cycle also cycles momentum (or adam's beta1) between 0.95 and 0.85, torch's default;
    # adagrad, adadelta and lbfgs have neither, and a momentum of 0 (plain SGD or RMSprop) was
    # asked for: torch would set it to 0.95
    has_momentum = optimizer.defaults.get("momentum", 0) > 0 or "betas" in optimizer.defaults
    cycle_momentum = cfg.cycle_momentum and has_momentum
    # each group peaks at its own lr (fine-tuning: the backbone at lr × backbone_lr_scale); the
    # optimizer is new, so its groups' lr are still the configured ones
    max_lr = [group["lr"] for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=max_lr,
        epochs=cfg.epochs,
        steps_per_epoch=steps_per_epoch,
        cycle_momentum=cycle_momentum,
    )


def linear_schedule(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """airbench's schedule: the rate goes in straight lines from lr × lr_start_factor up to lr
    at warmup_fraction of the steps, then down to lr × lr_end_factor at the last step."""
    peak = cfg.warmup_fraction * total_steps
    start, end = cfg.lr_start_factor, cfg.lr_end_factor

    def factor(step: int) -> float:
        if step < peak:
            return start + (1 - start) * step / peak
        return 1 + (end - 1) * (step - peak) / (total_steps - peak)  # above 0: warm-up < 1

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def steps_per_batch(cfg: TrainConfig) -> bool:
    """Whether the schedule steps after every optimizer step (one-cycle, linear) rather than
    every epoch."""
    return cfg.scheduler in ("onecycle", "linear")
