"""Evaluating a saved model on a data set (`cnnlab eval`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.config import EvalConfig, TrainConfig
from cnnlab.errors import CheckpointError
from cnnlab.train.checkpoint import load_checkpoint, rebuild_model
from cnnlab.train.device import resolve_device
from cnnlab.train.loop import EvalResult, evaluate
from cnnlab.train.optim import make_loss
from cnnlab.train.process import startup_finished


def evaluate_checkpoint(
    checkpoint: str | Path | EvalConfig, **options: Any
) -> tuple[EvalResult, list[str]]:
    """Loss, accuracy and per-class accuracy of a checkpoint on a test split.

    `evaluate_checkpoint("runs/x/best.pt", dataset=..., device=..., batch_size=...)` or
    `evaluate_checkpoint(EvalConfig(...))`; the options and their defaults are EvalConfig's.
    The checkpoint loads onto whatever device is here (a GPU checkpoint works on a CPU-only
    machine); the data set defaults to the one it was trained on.
    """
    from cnnlab.data import load_dataset, make_loader

    if isinstance(checkpoint, EvalConfig):
        cfg = checkpoint
    else:
        cfg = EvalConfig.from_dict({"checkpoint": str(checkpoint), **options}, "evaluate")
    cfg.validate()
    checkpoint = cfg.checkpoint
    target = resolve_device(cfg.device)
    state = load_checkpoint(checkpoint, map_location=target)
    model = rebuild_model(state, target)
    # normalize=False: scaled below by the checkpoint's mean/std (what the model was trained
    # on), not by the data's, so there is no need to compute those
    data = load_dataset(cfg.dataset or state["dataset"], cfg.data_dir, normalize=False)
    data.mean, data.std = tuple(state["mean"]), tuple(state["std"])
    saved_shape = tuple(state["input_shape"])
    if data.num_classes != len(state["class_names"]) or tuple(data.input_shape) != saved_shape:
        raise CheckpointError(
            f"{checkpoint} is a {state['model_name']} for {len(state['class_names'])} classes "
            f"at {'×'.join(map(str, saved_shape))}; {data.name} has {data.num_classes} classes "
            f"at {'×'.join(map(str, data.input_shape))}"
        )
    loader = make_loader(data, "test", batch_size=cfg.batch_size, device=target)
    startup_finished()
    trained_with = TrainConfig.from_dict(state["config"])
    loss_fn = make_loss(trained_with, data.num_classes, target)
    return evaluate(model, loader, loss_fn, data.num_classes), list(data.class_names)
