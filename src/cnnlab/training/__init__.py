"""Training: the loop, the run around it, checkpoints, and what a run writes.

`fit(cfg)` trains a new run and `resume_run(run_dir)` continues one, step for step; neither
knows reports exist. Users call `cnnlab.train(...)` (cnnlab/api.py), which trains through them
and then asks for the run's report.

Modules: loop (train_one_epoch, evaluate), session (building a run: Session, TrainState),
trainer (running it: fit, resume_run), checkpoint (safe saves and loads, RunInfo), outputs (every
file a run writes), resume_rules (what a resumed run may change), optim, mixing (--mixup,
--cutmix), cpu_split, fast_ops, device, determinism, run_dir, signals, evaluation (`cnnlab
eval`). Names here are imported on first use, so the CLI can reach `signals` without
importing torch.
"""

from __future__ import annotations

from cnnlab.lazy import lazy_exports

_WHERE = {
    "load_checkpoint": "checkpoint",
    "rebuild_model": "checkpoint",
    "save_checkpoint": "checkpoint",
    "resolve_device": "device",
    "evaluate_checkpoint": "evaluation",
    "TrainResult": "trainer",
    "fit": "trainer",
    "resume_run": "trainer",
    "EvalResult": "loop",
    "TrainingDiverged": "loop",
    "evaluate": "loop",
    "train_one_epoch": "loop",
    "TrainingInterrupted": "signals",
}
__all__ = sorted(_WHERE)

__getattr__ = lazy_exports(__name__, _WHERE)
