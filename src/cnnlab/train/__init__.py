"""Training: the loop, optimizers, checkpoints and what a run writes."""

from cnnlab.train.checkpoint import load_checkpoint, rebuild_model, save_checkpoint
from cnnlab.train.loop import EvalResult, TrainingDiverged, evaluate, train_one_epoch
from cnnlab.train.runner import TrainResult, fit, resume
from cnnlab.train.runtime import TrainingInterrupted, resolve_device

__all__ = [
    "EvalResult",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "evaluate",
    "fit",
    "load_checkpoint",
    "rebuild_model",
    "resolve_device",
    "resume",
    "save_checkpoint",
    "train_one_epoch",
]
