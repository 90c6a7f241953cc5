"""Reading a run folder back: config.json and metrics.jsonl as `cnnlab train` wrote them.

Everything after training (plot, report, compare) starts here, so a folder that is not a run,
or whose files are damaged, is refused in one line before anything is computed or written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import RunFolderError, first_line


@dataclass
class RunRecord:
    """One run as its folder records it: `info` is config.json, `metrics` its epoch rows."""

    path: Path
    info: dict[str, Any]
    metrics: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> dict[str, Any]:
        """The TrainConfig values it ran with."""
        return self.info.get("config") or {}

    @property
    def class_names(self) -> list[str]:
        return list(self.info.get("class_names") or [])

    def column(self, key: str) -> list[float | None]:
        """`key` of every epoch row (None where an epoch did not record it)."""
        return [row.get(key) for row in self.metrics]

    @property
    def best_accuracy(self) -> float | None:
        values = [v for v in self.column("test_accuracy") if v is not None]
        return max(values) if values else None

    @property
    def last_epoch_accuracy(self) -> float | None:
        """The last epoch's test accuracy: None when that epoch was not evaluated (the last
        one measured is comparison.last_measured_accuracy)."""
        return self.metrics[-1].get("test_accuracy")

    @property
    def wall_seconds(self) -> float:
        """Training and evaluation time over all epochs (the process's start-up left out:
        it depends on how the run was started, not on what it trained)."""
        return sum(row.get("epoch_seconds") or 0.0 for row in self.metrics)

    @property
    def examples_per_second(self) -> float | None:
        """Median training speed over the epochs (the first, warming up, does not dominate)."""
        values = sorted(v for v in self.column("examples_per_second") if v)
        if not values:
            return None
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2

    @property
    def started(self) -> str | None:
        return self.info.get("started")

    @property
    def ended(self) -> str | None:
        return self.metrics[-1].get("time")

    def checkpoints(self) -> list[tuple[str, int]]:
        """(file name, bytes) of each checkpoint in the folder (not exported TorchScript files)."""
        return [
            (p.name, p.stat().st_size)
            for p in sorted(self.path.glob("*.pt"))
            if p.is_file() and not p.name.endswith(".torchscript.pt")
        ]


def read_run(path: str | Path) -> RunRecord:
    """Read a run folder; a RunFolderError says what is missing or damaged."""
    path = Path(path)
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise RunFolderError(f"run folder {path} {what}; give the folder `cnnlab train` printed")
    info = _read_config(path / "config.json")
    metrics = _read_metrics(path / "metrics.jsonl")
    return RunRecord(path, info, metrics)


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RunFolderError(
            f"{path.parent} is not a cnnlab run folder (no config.json); give the folder "
            "`cnnlab train` printed"
        )
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFolderError(
            f"{path} is damaged ({first_line(err, 100)}); it cannot be read"
        ) from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise RunFolderError(f"{path} is not a cnnlab run's config.json (no 'config' table)")
    return info


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise RunFolderError(
            f"{path.parent} has no metrics.jsonl: the run finished no epoch; train it "
            f"(`cnnlab train --resume {path.parent}`) or give another run"
        )
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise RunFolderError(f"{path} cannot be read ({first_line(err, 100)})") from None
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise RunFolderError(
                f"{path} line {number} is not a complete JSON row (truncated or edited); "
                "restore the file or train the run again"
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
            raise RunFolderError(f"{path} line {number} is not an epoch row (no 'epoch' number)")
        rows.append(row)
    if not rows:
        raise RunFolderError(f"{path} is empty: the run finished no epoch")
    return rows
