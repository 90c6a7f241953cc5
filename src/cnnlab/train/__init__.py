"""Training: the loop, the run around it, checkpoints, and what a run writes.

Modules: loop (train_one_epoch, evaluate), session (building a run: Session, TrainState),
trainer (running it: fit, resume), checkpoint (safe saves and loads, RunInfo), outputs (every
file a run writes), resume_rules (what a resumed run may change), optim, cpu_split, fast_ops,
device, process, determinism, run_dir, signals, evaluation (`cnnlab eval`). Names here are
imported on first use, so the CLI can reach `signals` without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "load_checkpoint": "checkpoint",
    "rebuild_model": "checkpoint",
    "save_checkpoint": "checkpoint",
    "resolve_device": "device",
    "evaluate_checkpoint": "evaluation",
    "TrainResult": "trainer",
    "fit": "trainer",
    "resume": "trainer",
    "EvalResult": "loop",
    "TrainingDiverged": "loop",
    "evaluate": "loop",
    "train_one_epoch": "loop",
    "TrainingInterrupted": "signals",
}
__all__ = sorted([*_WHERE, "resume_run"])


def __getattr__(name: str) -> Any:
    if name == "resume_run":  # the name `cnnlab.train` (the function) uses, as `resume` is taken
        name = "resume"
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
