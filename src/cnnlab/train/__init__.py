"""Training: the loop, the run around it, checkpoints, and what a run writes.

Calling the package trains: `cnnlab.train(TrainConfig(...))`, `cnnlab.train(model="lenet",
epochs=3)`, or `cnnlab.train(resume="runs/x", epochs=20)` to continue a run from its last.pt,
step for step (see `trainer.train`).

Modules: loop (train_one_epoch, evaluate), session (building a run: Session, TrainState),
trainer (running it: fit, resume), checkpoint (safe saves and loads, RunInfo), outputs (every
file a run writes), resume_rules (what a resumed run may change), optim, cpu_split, fast_ops,
device, process, determinism, run_dir, signals, evaluation (`cnnlab eval`). Names here are
imported on first use, so the CLI can reach `signals` without importing torch.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from cnnlab.lazy import lazy_exports

_WHERE = {
    "load_checkpoint": "checkpoint",
    "rebuild_model": "checkpoint",
    "save_checkpoint": "checkpoint",
    "resolve_device": "device",
    "evaluate_checkpoint": "evaluation",
    "TrainResult": "trainer",
    "fit": "trainer",
    "resume": "trainer",
    "resume_run": "trainer",
    "EvalResult": "loop",
    "TrainingDiverged": "loop",
    "evaluate": "loop",
    "train_one_epoch": "loop",
    "TrainingInterrupted": "signals",
    "train_seeds": "seeds",
}
__all__ = sorted(_WHERE)

__getattr__ = lazy_exports(__name__, _WHERE)


class _CallablePackage(types.ModuleType):
    """The package `cnnlab.train`, which trains when called (one name for both, and
    `import cnnlab.train.checkpoint` still works)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from cnnlab.train.trainer import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
