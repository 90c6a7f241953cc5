"""What a run leaves behind while it trains: metrics.jsonl, TensorBoard events, progress output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cnnlab.train.checkpoint import atomic_write_text


class MetricsLog:
    """metrics.jsonl: one JSON object per epoch, rewritten atomically (it is a few KB at most)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "metrics.jsonl"

    def write(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in rows))


class TensorBoardLog:
    """The seed 004 scalars: train_loss per log interval, test_loss and test_accuracy per epoch."""

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
