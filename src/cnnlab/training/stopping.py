"""When a run stops before its last epoch: early stopping and a target accuracy.

Both watch the selection accuracy: the validation split's when the run holds one out, else
the test split's (as the tutorials choose). Early stopping counts the evaluations since the
last one that improved on the best so far by more than `early_stop_min_delta` (Keras' and
Lightning's rule; with --eval-every 1, as by default, epochs); the target stops at the end
of the first epoch that reaches it, as DAWNBench and airbench time a run to an accuracy.
Pure functions of numbers a checkpoint keeps, so a resumed run decides as the uninterrupted
one would have.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.config import TrainConfig


def selection_key(has_val: bool) -> str:
    """The metrics.jsonl key that chooses best.pt and stops the run."""
    return "val_accuracy" if has_val else "test_accuracy"


@dataclass
class Watch:
    """What early stopping keeps: the accuracy that last counted as an improvement, the epoch
    (1-based) that reached it (0: none yet), and the evaluations since."""

    accuracy: float = -1.0
    epoch: int = 0
    waited: int = 0

    def update(self, accuracy: float, epoch: int, min_delta: float) -> None:
        if accuracy > self.accuracy + min_delta:
            self.accuracy, self.epoch, self.waited = accuracy, epoch, 0
        else:
            self.waited += 1


def stop_reason(
    cfg: TrainConfig, key: str, accuracy: float | None, epoch: int, watch: Watch
) -> str | None:
    """Why the run stops after `epoch` (1-based), whose selection accuracy (`key`) is
    `accuracy` (None: not evaluated this epoch), or None to go on (or at its last epoch)."""
    if accuracy is None or epoch >= cfg.epochs:  # the last epoch ends the run anyway
        return None
    if cfg.target_accuracy is not None and accuracy >= cfg.target_accuracy:
        return f"target reached: {key} {accuracy:.4f} >= {cfg.target_accuracy:g} at epoch {epoch}"
    waited = watch.waited
    if cfg.early_stop_patience and watch.epoch and waited >= cfg.early_stop_patience:
        gain = f"by more than {cfg.early_stop_min_delta:g} " if cfg.early_stop_min_delta else ""
        unit = "epoch" if cfg.eval_every == 1 else "evaluation"
        return (
            f"early stop: {key} has not improved {gain}for {waited} {unit}"
            f"{'s' * (waited != 1)} (last improved to {watch.accuracy:.4f} at epoch {watch.epoch})"
        )
    return None
