"""Everything a run writes or prints while it trains goes through RunOutputs: the run folder,
config.json, checkpoints, metrics.jsonl, TensorBoard events and the progress output. (The
report and the closing line come after the run, from cnnlab/api.py.)

One object decides whether this process writes (under torchrun only rank 0 does); every other
process gets the same calls and writes nothing.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from cnnlab.config import TrainConfig
from cnnlab.files import atomic_write_text, installed_version, remove_stale_temp_files
from cnnlab.training.checkpoint import save_checkpoint
from cnnlab.training.device import describe_device
from cnnlab.training.run_dir import create_run_dir


@dataclass(frozen=True)
class EpochMetric:
    """One number of an epoch's row, and how each place that shows it shows it."""

    key: str  # its key in metrics.jsonl
    short: str  # the progress line's heading
    title: str  # its name in words, as a table of epochs heads it (report.html's)
    width: int  # the progress line's column, `unit` included
    spec: str  # its format spec ("" for the epoch)
    tag: str | None  # its TensorBoard tag; None: not sent to TensorBoard
    unit: str = ""  # written after the number on the progress line
    report_spec: str | None = None  # the report's format spec, where it differs from `spec`

    def line_cell(self, row: dict[str, Any]) -> str:
        """Its column of the progress line: right-aligned, "-" when the row has no value."""
        value, width = row.get(self.key), self.width - len(self.unit)
        text = f"{value:{width}{self.spec}}" if value is not None else " " * (width - 1) + "-"
        return text + self.unit

    def report_cell(self, row: dict[str, Any]) -> str:
        value = row.get(self.key)
        spec = self.spec if self.report_spec is None else self.report_spec
        return format(value, spec) if value is not None else "-"


# the epoch metrics, in the order of the progress line's and the report's columns
EPOCH_METRICS = (
    EpochMetric("epoch", "epoch", "epoch", 5, "", "epoch"),
    EpochMetric("train_loss", "train_loss", "train loss", 10, ".4f", "train_loss_epoch"),
    EpochMetric("train_accuracy", "train_acc", "train accuracy", 9, ".4f", "train_accuracy"),
    EpochMetric("test_loss", "test_loss", "test loss", 9, ".4f", "test_loss"),
    EpochMetric("test_accuracy", "test_acc", "test accuracy", 8, ".4f", "test_accuracy"),
    EpochMetric("examples_per_second", "ex/s", "examples/s", 8, ",.0f", "examples_per_second"),
    EpochMetric("epoch_seconds", "time", "seconds", 6, ".1f", None, unit="s"),
    EpochMetric("lr", "lr", "learning rate", 8, ".2e", "lr", report_spec=".3g"),
)
# every epoch metric goes to TensorBoard at the global step, so all charts share one x axis;
# metrics.jsonl key -> TensorBoard tag ("train_loss" is the loss of each log interval)
EPOCH_SCALARS = {metric.key: metric.tag for metric in EPOCH_METRICS if metric.tag is not None}


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
                "torchvision": installed_version("torchvision"),  # no import: it takes 2+ s
                "cnnlab": installed_version("cnnlab"),
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


HEADER = " ".join(f"{metric.short:>{metric.width}}" for metric in EPOCH_METRICS)


def format_row(row: dict[str, Any]) -> str:
    """The progress line of an epoch: its row under HEADER."""
    return " ".join(metric.line_cell(row) for metric in EPOCH_METRICS)


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
