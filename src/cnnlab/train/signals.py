"""Stopping cleanly: SIGINT / SIGTERM end the run after a checkpoint, with the resume command."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any


class StopSignals:
    """SIGINT / SIGTERM ask the loop to stop after the current step (a second one stops now)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


class TrainingInterrupted(Exception):
    """Raised after a signal once the checkpoint is written; carries the shell's exit code."""

    def __init__(self, signum: int, run_dir: Path, epoch: int, step: int):
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} at epoch {epoch + 1}, step {step}; checkpoint saved. "
            f"Resume with: cnnlab train --resume {run_dir}"
        )
