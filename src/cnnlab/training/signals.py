"""Stopping cleanly: SIGINT / SIGTERM end the run after a checkpoint, with the resume command."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any


class StopSignals:
    """SIGINT / SIGTERM ask the loop to stop after the current step (a second one stops now).

    `repeats_within` seconds: a second signal sooner than that is the same request. Under
    torchrun a Ctrl-C reaches each process twice, from the terminal and from torchrun, which
    passes the signals it gets on to its processes."""

    def __init__(self, repeats_within: float = 0.0) -> None:
        self.signum: int | None = None
        self.repeats_within = repeats_within
        self._first_at = 0.0
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
        if self.signum is None:
            self.signum, self._first_at = signum, time.monotonic()
        elif time.monotonic() - self._first_at >= self.repeats_within:
            raise KeyboardInterrupt


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a run's StopSignals (start-up, or a command that is not a run): it
    unwinds like Ctrl-C, so a run folder started but never checkpointed is removed, and the
    command exits 143 as a terminated one does."""

    exit_code = 128 + signal.SIGTERM


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def terminate_like_interrupt() -> None:
    """From now on SIGTERM raises Terminated in the main thread (StopSignals takes it over
    while a run trains, and gives it back)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


class TrainingInterrupted(Exception):
    """Raised after a signal once the checkpoint is written; carries the shell's exit code."""

    def __init__(self, signum: int, run_dir: Path, epoch: int, step: int):
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        anywhere = " (alone, or under torchrun with any number of processes)"
        super().__init__(
            f"stopped by {name} at epoch {epoch + 1}, step {step}; checkpoint saved. "
            f"Resume with: cnnlab train --resume {run_dir}"
            + (anywhere if "RANK" in os.environ else "")
        )
