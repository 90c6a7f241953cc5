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
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from cnnlab.config import TrainConfig
from cnnlab.files import atomic_write_text, installed_version, remove_stale_temp_files
from cnnlab.training.checkpoint import save_checkpoint
from cnnlab.training.device import describe_device
from cnnlab.training.notebook import NotebookView, in_notebook
from cnnlab.training.run_dir import clear_start, create_run_dir, lock_run_dir, never_trained, unlock


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
    EpochMetric("val_loss", "val_loss", "validation loss", 8, ".4f", "val_loss"),
    EpochMetric("val_accuracy", "val_acc", "validation accuracy", 7, ".4f", "val_accuracy"),
    EpochMetric("test_loss", "test_loss", "test loss", 9, ".4f", "test_loss"),
    EpochMetric("test_accuracy", "test_acc", "test accuracy", 8, ".4f", "test_accuracy"),
    EpochMetric("examples_per_second", "ex/s", "examples/s", 8, ",.0f", "examples_per_second"),
    EpochMetric("epoch_seconds", "time", "seconds", 6, ".1f", None, unit="s"),
    EpochMetric("lr", "lr", "learning rate", 8, ".2e", "lr", report_spec=".3g"),
)
# every epoch metric goes to TensorBoard at the global step, so all charts share one x axis;
# metrics.jsonl key -> TensorBoard tag ("train_loss" is the loss of each log interval)
EPOCH_SCALARS = {metric.key: metric.tag for metric in EPOCH_METRICS if metric.tag is not None}


def epoch_columns(has_val: bool, has_test: bool = True) -> tuple[EpochMetric, ...]:
    """The epoch metrics a run's table shows: the validation columns only where it has them,
    and the test columns only where it measures the test split (not with --no-eval-test)."""
    return tuple(
        m
        for m in EPOCH_METRICS
        if (has_val or not m.key.startswith("val_")) and (has_test or not m.key.startswith("test_"))
    )


class RunOutputs:
    """The files and output of one run. `writes=False` (not rank 0) turns every call into
    nothing; the run folder must be created with `open` before anything is written."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, *, writes: bool = True):
        self.run_dir, self.cfg, self.writes = run_dir, cfg, writes
        self.progress = Progress(
            cfg.progress if writes else "none",
            cfg.epochs,
            has_val=cfg.val_fraction > 0,
            has_test=cfg.eval_test,
        )
        self.metrics = MetricsLog(run_dir)
        self.tensorboard: TensorBoardLog | None = None
        self.lock: int | None = None  # the run folder's lock, held while the run writes
        self.made_folder = False  # this run created its folder (not found it, not resumed)

    def open(self, *, resumed_at_step: int | None) -> None:
        """Create the run folder (or tidy a resumed one), lock it for this process, and start
        the TensorBoard log."""
        if not self.writes:
            return
        if resumed_at_step is None:
            self.made_folder = not self.run_dir.exists()
            create_run_dir(self.run_dir, self.cfg.overwrite)
        self.lock = lock_run_dir(self.run_dir)
        if resumed_at_step is not None:
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
        unlock(self.lock, self.run_dir)
        self.lock = None

    def discard_start(self) -> None:
        """After a stop before the first checkpoint: remove what the run wrote (and its
        folder, if it made it), so nothing stands in the way of running it again."""
        if self.writes and self.run_dir.is_dir() and never_trained(self.run_dir) is not None:
            clear_start(self.run_dir)
            if self.made_folder:
                self.run_dir.rmdir()


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


def header(columns: tuple[EpochMetric, ...]) -> str:
    """The progress output's heading line."""
    return " ".join(f"{metric.short:>{metric.width}}" for metric in columns)


def format_row(row: dict[str, Any], columns: tuple[EpochMetric, ...] = EPOCH_METRICS) -> str:
    """The progress line of an epoch: its row under `header(columns)`."""
    return " ".join(metric.line_cell(row) for metric in columns)


def clock(seconds: float) -> str:
    """Seconds as MM:SS, or H:MM:SS from an hour (as rich's compact times read)."""
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes:02d}:{secs:02d}"
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class Progress:
    """A rich progress bar on a terminal: the epoch's batches and time left, the running train
    loss and accuracy, and the whole run's time left. In a Jupyter notebook, the same bar and
    the curves redrawn in place (notebook.py). Exactly one line per epoch otherwise."""

    REFRESH_SECONDS = 0.5  # the running figures wait for the device: read them this often

    def __init__(
        self, mode: str, total_epochs: int, *, has_val: bool = False, has_test: bool = True
    ):
        if mode == "auto":
            mode = "notebook" if in_notebook() else "bar" if sys.stdout.isatty() else "lines"
        self.mode = mode
        self.total_epochs = total_epochs
        self.columns = epoch_columns(has_val, has_test)
        self._bar = None
        self._task = None
        self._view: NotebookView | None = None  # the notebook's output area, made on first use
        self._epoch = (0, 0, 0)  # (epoch, batches done, batches): the notebook's bar
        self._printed_header = False
        self._steps_left = 0  # the run's batches still to train
        self._clock: tuple[float, int] | None = None  # (time, steps left) at the first step
        self._next_refresh = 0.0
        self.clock = time.monotonic  # seconds, for the running figures

    def start_epoch(self, epoch: int, batches: int, start_batch: int = 0) -> None:
        self._header()
        if self.mode not in ("bar", "notebook"):
            return
        self._steps_left = (self.total_epochs - epoch) * batches - start_batch
        if self.mode == "notebook":
            if self._view is None:
                self._view = NotebookView(self.columns, self.total_epochs)
            self._epoch = (epoch, start_batch, batches)
            self._show_notebook_bar(self._running_text())
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import (
            Progress as RichProgress,
        )

        self._bar = RichProgress(  # narrow: it fits 80 columns with the running figures
            TextColumn(f"epoch {epoch + 1}/{self.total_epochs}"),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TimeRemainingColumn(compact=True),
            TextColumn("left{task.fields[running]}"),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(
            "train", total=batches, completed=start_batch, running=self._running_text()
        )

    def advance(self, sums: Any = None, trained: int = 1) -> None:
        """`trained` batches trained (one step); `sums`: the epoch's running sums (EpochSums),
        read at most every REFRESH_SECONDS for the running loss and accuracy."""
        if self._bar is None and self._view is None:
            return
        self._steps_left -= trained
        epoch, done, batches = self._epoch
        self._epoch = (epoch, done + trained, batches)
        if self._bar is not None:
            self._bar.advance(self._task, trained)
        now = self.clock()
        if self._clock is None:
            self._clock = (now, self._steps_left)
        if sums is not None and now >= self._next_refresh:
            self._next_refresh = now + self.REFRESH_SECONDS
            if self._bar is not None:
                self._bar.update(self._task, running=self._running_text(sums, now))
            else:
                self._show_notebook_bar(self._running_text(sums, now))

    def _show_notebook_bar(self, running: str) -> None:
        epoch, done, batches = self._epoch
        self._view.progress(f"epoch {epoch + 1}/{self.total_epochs}", done, batches, running)

    def _running_text(self, sums: Any = None, now: float | None = None) -> str:
        """' · loss 0.512 acc 0.843 · run 3:10 left': the epoch so far, and the run's time
        left at the pace of this process's steps so far (evaluations included)."""
        parts = []
        if sums is not None and sums.seen:
            loss, correct = float(sums.loss_sum), int(sums.correct)
            parts.append(f"loss {loss / sums.seen:.3f} acc {correct / sums.seen:.3f}")
        if self._clock is not None and now is not None:
            started, left_then = self._clock
            done = left_then - self._steps_left
            if done > 0:
                parts.append(f"run {clock((now - started) / done * self._steps_left)} left")
        return "".join(f" · {part}" for part in parts)

    def end_epoch(self, row: dict[str, Any]) -> None:
        self._stop_bar()
        if self._view is not None:
            self._view.end_epoch(row)
        elif self.mode != "none":
            print(format_row(row, self.columns), flush=True)

    def message(self, text: str) -> None:
        if self._view is not None:
            self._view.message(text)
        elif self.mode != "none":
            print(text, flush=True)

    def close(self) -> None:
        self._stop_bar()
        if self._view is not None:
            self._view.close()

    def _header(self) -> None:
        if self.mode not in ("none", "notebook") and not self._printed_header:
            print(header(self.columns), flush=True)
            self._printed_header = True

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
