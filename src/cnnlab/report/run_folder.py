"""Reading a run folder back: config.json and metrics.jsonl as `cnnlab train` wrote them.

Everything after training (plot, report, compare) starts here, so a folder that is not a run,
or whose files are damaged, is refused in one line before anything is computed or written.
A run folder that cannot be used (no finished epoch, a damaged file) is an UnusableRun, which
`cnnlab compare` skips with a warning; `partial=True` reads a metrics.jsonl whose last line a
kill cut short as the rows before it, and `RunRecord.warnings` says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.config import saved_train_values
from cnnlab.errors import RunFolderError, first_line

# what a run that stopped while starting may leave before config.json: TensorBoard's event
# file and a killed write's temporary file
STARTUP_TRACES = ("events.out.tfevents.*", ".*.tmp")


class UnusableRun(RunFolderError):
    """A run folder that holds no finished epoch, or a damaged config.json or metrics.jsonl:
    one-run commands stop on it, `cnnlab compare` leaves it out with a warning."""


def warning_line(text: str) -> str:
    """A warning as compare and report print it (below compare's table, or on stderr)."""
    return f"warning: {text}"


class RunFolderWarning(UserWarning):
    """A run folder read in part: what was left out (a metrics.jsonl row cut short)."""


@dataclass
class RunRecord:
    """One run as its folder records it: `info` is config.json, `metrics` its epoch rows, and
    `warnings` what was left out reading them (a last row cut short: read_run's `partial`)."""

    path: Path
    info: dict[str, Any]
    metrics: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    def _repr_html_(self) -> str:  # a notebook shows the run: where, its curves, its epochs
        from cnnlab.training.notebook import run_html
        from cnnlab.training.outputs import epoch_columns

        config = self.config
        columns = epoch_columns(self.selection == "val", self.evaluates_test or self.measured_test)
        facts = [
            ("run folder", str(self.path)),
            ("model", f"{config.get('model')} on {config.get('dataset')}"),
            ("epochs", f"{len(self.metrics)} of {config.get('epochs')}"),
        ]
        return run_html(self.metrics, columns, facts)

    @property
    def config(self) -> dict[str, Any]:
        """The TrainConfig values it ran with, in today's fields (config.saved_train_values)."""
        return saved_train_values(self.info.get("config") or {})

    @property
    def class_names(self) -> list[str]:
        return list(self.info.get("class_names") or [])

    def column(self, key: str) -> list[float | None]:
        """`key` of every epoch row (None where an epoch did not record it)."""
        return [row.get(key) for row in self.metrics]

    @property
    def selection(self) -> str:
        """The split that chose best.pt: "val", or "test" (no validation split held out)."""
        return self.info.get("selection") or "test"

    @property
    def evaluates_test(self) -> bool:
        """Whether the run measures the test split: not when trained with --no-eval-test (a
        sweep's trial), whose rows hold no test metrics and whose report never measures it."""
        return bool(self.config.get("eval_test", True))

    @property
    def measured_test(self) -> bool:
        """Whether any epoch row holds a test accuracy (a run resumed with another
        --eval-test may hold some)."""
        return any(value is not None for value in self.column("test_accuracy"))

    @property
    def report_split(self) -> str:
        """The split the report's predictions are made on: "test", or "val" for a run that does
        not evaluate the test split (so that looking at a run never measures it)."""
        return "test" if self.evaluates_test else "val"

    @property
    def chosen_row(self) -> dict[str, Any] | None:
        """The epoch best.pt holds: the first of the highest selection accuracy."""
        key = f"{self.selection}_accuracy"
        scored = [row for row in self.metrics if row.get(key) is not None]
        return max(scored, key=lambda row: row[key]) if scored else None  # max: the first

    @property
    def best_accuracy(self) -> float | None:
        """best.pt's test accuracy (with no validation split: the highest the run measured);
        None where its epoch did not measure the test split (--no-eval-test)."""
        row = self.chosen_row
        return None if row is None else row.get("test_accuracy")

    @property
    def best_val_accuracy(self) -> float | None:
        """best.pt's validation accuracy (None without a validation split)."""
        row = self.chosen_row
        return None if row is None else row.get("val_accuracy")

    @property
    def stopped(self) -> str | None:
        """Why the run stopped before its last epoch (early stopping, a target reached)."""
        reason = (self.info.get("stopped") or {}).get("reason")
        # a kill between last.pt and config.json leaves the reason in the last row alone
        return reason or (self.metrics[-1].get("stopped") if self.metrics else None)

    @property
    def last_epoch_accuracy(self) -> float | None:
        """The last epoch's test accuracy: None when that epoch was not evaluated, or not on
        the test split (--no-eval-test; the last one measured is
        comparison.last_measured_accuracy)."""
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


def read_run(path: str | Path, *, partial: bool = False) -> RunRecord:
    """Read a run folder; a RunFolderError says what is missing or damaged (an UnusableRun
    when it is a run folder that holds no finished epoch or a damaged file).

    `partial`: a metrics.jsonl whose last line is cut short (a kill while writing it) gives
    the complete rows before it, and the record's `warnings` say so; else it is an error.
    """
    path = Path(path)
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise RunFolderError(f"run folder {path} {what}; give the folder `cnnlab train` printed")
    info = _read_config(path / "config.json")
    warnings: list[str] = []
    metrics = _read_metrics(path / "metrics.jsonl", warnings if partial else None)
    return RunRecord(path, info, metrics, warnings)


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        if _started_only(path.parent):
            raise UnusableRun(
                f"{path.parent} is not a cnnlab run folder yet: it holds no config.json and no "
                "finished epoch (a run stopped while starting); train it again"
            )
        raise RunFolderError(
            f"{path.parent} is not a cnnlab run folder (no config.json); give the folder "
            "`cnnlab train` printed"
        )
    try:
        info = json.loads(path.read_text())
    except OSError as err:
        raise RunFolderError(f"{path} cannot be read ({first_line(err, 100)})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UnusableRun(
            f"{path} is damaged ({first_line(err, 100)}); restore it or train the run again"
        ) from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise RunFolderError(f"{path} is not a cnnlab run's config.json (no 'config' table)")
    return info


def _started_only(folder: Path) -> bool:
    """Whether the folder holds nothing but what a run stopped while starting leaves."""
    traces = {p for pattern in STARTUP_TRACES for p in folder.glob(pattern)}
    return all(p in traces for p in folder.iterdir())


def _read_metrics(path: Path, warnings: list[str] | None) -> list[dict[str, Any]]:
    """The epoch rows; `warnings` given: a last line cut short is left out and said there."""
    if not path.is_file():
        raise _no_epoch(path.parent, "no metrics.jsonl")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise RunFolderError(f"{path} cannot be read ({first_line(err, 100)})") from None
    lines = [(n, line) for n, line in enumerate(data.splitlines(), 1) if line.strip()]
    rows: list[dict[str, Any]] = []
    for number, line in lines:
        row = _json_value(line)
        if row is BROKEN:
            # a kill while writing leaves the last line without its newline
            cut = number == lines[-1][0] and not data.endswith(b"\n")
            if cut and warnings is not None:
                warnings.append(_left_out(path, number, len(rows)))
                break
            why = "cut short" if cut else "damaged or edited"
            raise UnusableRun(f"{path} line {number} {INCOMPLETE} ({why}); {RESTORE}")
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
            raise UnusableRun(f"{path} line {number} is not an epoch row (no 'epoch'); {RESTORE}")
        rows.append(row)
    if not rows:
        raise _no_epoch(path.parent, f"{path.name} is empty")
    return rows


INCOMPLETE = "is not a complete JSON row"
RESTORE = "restore the file or train the run again"
BROKEN = object()  # a line that is no JSON (a line may hold JSON's null)


def _left_out(path: Path, number: int, complete: int) -> str:
    """The warning for a last line cut short after `complete` rows (none: no finished epoch)."""
    if not complete:
        raise _no_epoch(path.parent, f"{path.name} line {number} {INCOMPLETE}: cut short")
    return (
        f"{path} line {number} {INCOMPLETE} (cut short by a kill while it was written); read "
        f"the {complete} epoch{'s' if complete > 1 else ''} before it"
    )


def _json_value(line: bytes) -> Any:
    """The line's JSON value, or BROKEN when it is no JSON (cut short, damaged, not UTF-8)."""
    try:
        return json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return BROKEN


def _no_epoch(folder: Path, why: str) -> UnusableRun:
    """A run stopped before its first epoch ended: resumable when it saved a checkpoint."""
    todo = (
        f"resume it with `cnnlab train --resume {folder}` or train again"
        if (folder / "last.pt").is_file()
        else "train it again (it saved no checkpoint to resume from)"
    )
    return UnusableRun(f"run folder {folder} holds no finished epoch ({why}); {todo}")
