"""Everything a run writes or prints goes through RunOutputs: the run folder, config.json,
checkpoints, metrics.jsonl, TensorBoard events and the progress output.

One object decides whether this process writes (under torchrun only rank 0 does); every other
process gets the same calls and writes nothing.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import torch

from cnnlab.config import TrainConfig
from cnnlab.files import atomic_write_text, remove_stale_temp_files
from cnnlab.training.checkpoint import save_checkpoint
from cnnlab.training.device import describe_device
from cnnlab.training.run_dir import create_run_dir

# every epoch metric goes to TensorBoard at the global step, so all charts share one x axis;
# metrics.jsonl key -> TensorBoard tag ("train_loss" is the loss of each log interval)
EPOCH_SCALARS = {
    "epoch": "epoch",
    "train_loss": "train_loss_epoch",
    "train_accuracy": "train_accuracy",
    "test_loss": "test_loss",
    "test_accuracy": "test_accuracy",
    "lr": "lr",
    "examples_per_second": "examples_per_second",
}


class RunOutputs:
    """The files and output of one run. `writes=False` (not rank 0) turns every call into
    nothing; the run folder must be created with `open` before anything is written."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, *, writes: bool = True):
        self.run_dir, self.cfg, self.writes = run_dir, cfg, writes
        self.progress = Progress(cfg.progress if writes else "none", cfg.epochs)
        self.metrics = MetricsLog(run_dir)
        self.tensorboard: TensorBoardLog | None = None

    def open(self, *, resumed_at_step: int | None) -> None:
        """Create the run folder (or tidy a resumed one) and start the TensorBoard log."""
        if not self.writes:
            return
        if resumed_at_step is None:
            create_run_dir(self.run_dir, self.cfg.overwrite)
        else:
            remove_stale_temp_files(self.run_dir)  # left by a writer killed mid-save
        # purge_step drops events a crashed run wrote after its last checkpoint
        self.tensorboard = TensorBoardLog(self.run_dir, self.cfg.tensorboard, resumed_at_step)

    def config_json(self, info: dict[str, Any], device: torch.device) -> None:
        """config.json: what the run is, the versions and the device, for whoever reads it."""
        if self.writes:
            versions = {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "torchvision": _version("torchvision"),  # no import: it takes 2+ s
                "cnnlab": _version("cnnlab"),
            }
            started = _read_started(self.run_dir / "config.json")  # kept when resumed
            facts = {
                **info, "versions": versions, "device": describe_device(device),
                "started": started or now(),
            }  # fmt: skip
            atomic_write_text(self.run_dir / "config.json", json.dumps(facts, indent=2) + "\n")

    def checkpoint(self, state: dict[str, Any], filename: str) -> None:
        if self.writes:
            save_checkpoint(state, self.run_dir / filename)

    def metrics_rows(self, rows: list[dict[str, Any]]) -> None:
        if self.writes:
            self.metrics.write(rows)

    def scalars(self, values: dict[str, Any], step: int) -> None:
        """TensorBoard scalars at global `step` (None values are skipped)."""
        if self.tensorboard is not None:
            for tag, value in values.items():
                if value is not None:
                    self.tensorboard.scalar(tag, value, step)

    def end_epoch(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """An epoch's row: to metrics.jsonl, TensorBoard and the progress output."""
        self.metrics_rows(rows)
        self.scalars({tag: row.get(key) for key, tag in EPOCH_SCALARS.items()}, row["step"])
        if self.tensorboard is not None:
            self.tensorboard.flush()
        self.progress.end_epoch(row)

    def message(self, text: str) -> None:
        self.progress.message(text)

    def close(self) -> None:
        self.progress.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def now() -> str:
    """The local time as ISO 8601 with its UTC offset, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _read_started(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("started")
    except (OSError, ValueError, AttributeError):
        return None


def _version(package: str) -> str | None:
    try:
        return package_version(package)
    except PackageNotFoundError:
        return None


class MetricsLog:
    """metrics.jsonl: one JSON object per epoch, rewritten atomically (it is a few KB at most)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "metrics.jsonl"

    def write(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in rows))


class TensorBoardLog:
    """TensorBoard event files: train_loss per log interval and every epoch metric, at the
    global step (seed 004 logs train_loss, test_loss and test_accuracy)."""

    def __init__(self, run_dir: Path, enabled: bool, purge_step: int | None = None):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when used

            # purge_step drops events a crashed run wrote after its last checkpoint
            self.writer = SummaryWriter(str(run_dir), purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


HEADER = (
    f"{'epoch':>5} {'train_loss':>10} {'train_acc':>9} {'test_loss':>9} {'test_acc':>8} "
    f"{'ex/s':>8} {'time':>6} {'lr':>8}"
)


def format_row(row: dict[str, Any]) -> str:
    def num(key: str, fmt: str, width: int) -> str:
        value = row.get(key)
        return f"{value:{width}{fmt}}" if value is not None else " " * (width - 1) + "-"

    return (
        f"{row['epoch']:>5} {num('train_loss', '.4f', 10)} {num('train_accuracy', '.4f', 9)} "
        f"{num('test_loss', '.4f', 9)} {num('test_accuracy', '.4f', 8)} "
        f"{num('examples_per_second', ',.0f', 8)} {num('epoch_seconds', '.1f', 5)}s "
        f"{num('lr', '.2e', 8)}"
    )


class Progress:
    """A rich progress bar with ETA on a terminal; exactly one line per epoch otherwise."""

    def __init__(self, mode: str, total_epochs: int):
        if mode == "auto":
            mode = "bar" if sys.stdout.isatty() else "lines"
        self.mode = mode
        self.total_epochs = total_epochs
        self._bar = None
        self._task = None
        self._printed_header = False

    def start_epoch(self, epoch: int, batches: int, start_batch: int = 0) -> None:
        self._header()
        if self.mode != "bar":
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        self._bar = RichProgress(
            TextColumn(f"epoch {epoch + 1}/{self.total_epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=batches, completed=start_batch)

    def advance(self, batches: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, batches)

    def end_epoch(self, row: dict[str, Any]) -> None:
        self._stop_bar()
        if self.mode != "none":
            print(format_row(row), flush=True)

    def message(self, text: str) -> None:
        if self.mode != "none":
            print(text, flush=True)

    def close(self) -> None:
        self._stop_bar()

    def _header(self) -> None:
        if self.mode != "none" and not self._printed_header:
            print(HEADER, flush=True)
            self._printed_header = True

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
