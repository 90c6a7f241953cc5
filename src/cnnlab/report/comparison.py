"""Runs grouped into rows, with the spread of their accuracy: what `cnnlab compare` and the end of
`cnnlab train --seeds` print (`str(comparison)`: the table, then the warnings).

Runs whose TrainConfig values differ only in `seed` are one row (a group): its n, and the mean
± sample standard deviation (n - 1) of the runs' final test accuracy and their best.pt's
(its test accuracy, and its validation accuracy where a validation split chose it). Settings that
decide where and how fast a run goes, not what it learns (`resumable_fields()` but epochs),
and the run's name, folder and --overwrite, are not settings here: two runs that differ only
in them are seeds of one experiment too. The table shows the settings that differ between rows,
and nothing else, so what changed is what you read. Rows are sorted by mean final accuracy,
best first, and the warnings say when that order may be seed noise (spreads that overlap) or
cannot be judged (a single run has no measured spread). Numbers and text only: the curves and
the HTML page are compare_page.py's.

Accuracies on different test sets do not compare: runs of several data sets are grouped by data
set (a `dataset` column next to the run's name says which), ranked within each, and the first
warning says so. The groups come in the order of their best rows.

Runs trained with --no-eval-test (a sweep's trials) measured no test accuracy: their test
columns show "-". A row with no final test accuracy at all is ranked after every row that has
one, among its like by the mean validation accuracy of its runs' best.pt (so when no row has a
test accuracy, that is the order of the whole table); validation and test accuracies are never
ranked against each other, and a warning says which rows are ranked on validation. Rows with
neither come last. A row whose runs measured the test split in part (runs differing only in
--eval-test are seeds of one experiment) shows the mean of those that did, and a warning says so.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.config import TrainConfig, resumable_fields
from cnnlab.report.run_folder import RunRecord, warning_line

# not what a run learns: runs differing only in these (and seed) are one experiment
NOT_SETTINGS = frozenset((resumable_fields() - {"epochs"}) | {"name", "out_dir", "overwrite"})
SEED_SUFFIX = re.compile(r"[-_.]?seed[-_]?\d+$")


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of `values` (std is None for fewer than two)."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) >= 2 else None

    def __str__(self) -> str:
        if self.mean is None:
            return "-"
        return f"{self.mean:.4f}" + (f" ± {self.std:.4f}" if self.std is not None else "")


@dataclass
class Row:
    """One experiment: runs that differ only in seed."""

    label: str
    runs: list[RunRecord]
    settings: dict[str, Any]  # the TrainConfig values they share (seed and NOT_SETTINGS left out)
    final: Spread  # final test accuracy of each run
    best: Spread  # test accuracy of each run's best.pt
    best_val: Spread  # validation accuracy of each run's best.pt (none without the split)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def ranked_on(self) -> str:
        """What orders the row (RANKINGS): "test", its mean final test accuracy; "val", where no
        run of it measured the test split (--no-eval-test), its best.pt's mean validation
        accuracy; "" with neither."""
        if self.final.n:
            return "test"
        return "val" if self.best_val.n else ""

    @property
    def dataset(self) -> str:
        """The data set the runs were trained and tested on, as the table shows it."""
        return setting(self.settings.get("dataset"))

    @property
    def ranking(self) -> Spread:
        """The accuracies the row is ranked on (empty when `ranked_on` is "")."""
        return self.best_val if self.ranked_on == "val" else self.final

    @property
    def chosen_on(self) -> str:
        """The split that chose the runs' best.pt: val, test (or both, comma-separated)."""
        return ",".join(dict.fromkeys(run.selection for run in self.runs))

    @property
    def seeds(self) -> list[Any]:
        return [run.config.get("seed") for run in self.runs]

    @property
    def parameters(self) -> int | None:
        return self.runs[0].info.get("parameters")

    @property
    def epochs(self) -> str:
        """Epochs done; `3/10` for a run that stopped early, `5,10` when its runs disagree."""
        done = []
        for run in self.runs:
            planned, finished = run.config.get("epochs"), len(run.metrics)
            text = str(finished) if planned in (None, finished) else f"{finished}/{planned}"
            if text not in done:
                done.append(text)
        return ",".join(done)

    @property
    def wall_seconds(self) -> float:
        return statistics.mean(run.wall_seconds for run in self.runs)

    @property
    def examples_per_second(self) -> float | None:
        speeds = [s for s in (run.examples_per_second for run in self.runs) if s]
        return statistics.mean(speeds) if speeds else None


@dataclass
class Comparison:
    """The rows (best mean final accuracy first; the module docstring says where runs without a
    test accuracy go), the settings that differ between them, the warnings about the table, the
    files written, and `folder_warnings`: what reading the run folders left out (a folder
    skipped, a last row cut short; `cnnlab compare` prints them on stderr). `str(comparison)`
    is the table, then every warning."""

    rows: list[Row]
    differing: list[str]
    warnings: list[str]
    written: list[Path] = field(default_factory=list)
    folder_warnings: list[str] = field(default_factory=list)

    NUMERIC = ("n", "parameters", "epochs", "wall time", "examples/s")

    @property
    def has_val(self) -> bool:
        """Whether any run held out a validation split (then its column is shown)."""
        return any(row.best_val.n for row in self.rows)

    @property
    def several_datasets(self) -> bool:
        """Whether the runs are on more than one data set: then the rows are grouped by data
        set, and its column comes right after the run's name."""
        return len(datasets_of(self.rows)) > 1

    @property
    def setting_columns(self) -> list[str]:
        """The differing settings at the table's end (not the data set, when it has its column
        after the run's name)."""
        return [n for n in self.differing if n != "dataset" or not self.several_datasets]

    @property
    def header(self) -> list[str]:
        val = ["best.pt val acc"] if self.has_val else []
        dataset = ["dataset"] if self.several_datasets else []
        return [
            "run", *dataset, "n", "final test acc", "best.pt test acc", *val, "chosen on",
            "parameters", "epochs", "wall time", "examples/s", *self.setting_columns,
        ]  # fmt: skip

    def cells(self) -> list[list[str]]:
        """The table's rows as text, in the order of `header`."""
        several, names = self.several_datasets, self.setting_columns
        return [
            [
                row.label, *([row.dataset] if several else []), str(row.n), str(row.final),
                str(row.best), *([str(row.best_val)] if self.has_val else []), row.chosen_on,
                _thousands(row.parameters), row.epochs, duration(row.wall_seconds),
                _thousands(row.examples_per_second),
                *(setting(row.settings.get(name)) for name in names),
            ]
            for row in self.rows
        ]  # fmt: skip

    def group_starts(self) -> list[int]:
        """The rows (from 0) that begin another data set's group, the first row left out."""
        rows = self.rows
        return [i for i in range(1, len(rows)) if rows[i].dataset != rows[i - 1].dataset]

    def numeric_columns(self) -> list[int]:
        return [i for i, name in enumerate(self.header) if name in self.NUMERIC]

    def table(self) -> str:
        """The aligned plain-text table: numbers right-aligned, text left."""
        return text_table(self.header, self.cells(), self.numeric_columns())

    def text(self, folder_warnings: bool = True) -> str:
        """The table, then the warnings as `warning: ...` lines (`folder_warnings` first)."""
        notes = [*self.folder_warnings, *self.warnings] if folder_warnings else self.warnings
        return "\n".join([self.table(), *(warning_line(w) for w in notes)])

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:  # a notebook shows the table, then the warnings
        from cnnlab.display import html_table, preformatted

        notes = [*self.folder_warnings, *self.warnings]
        table = html_table(self.header, self.cells(), self.numeric_columns())
        return table + "".join(preformatted(warning_line(text)) for text in notes)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[int]) -> str:
    """An aligned plain-text table under a rule: the columns in `right` right-aligned."""
    right = set(right)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def settings_of(run: RunRecord) -> dict[str, Any]:
    """What a run learns from: its TrainConfig values (defaults filling keys an older cnnlab did
    not write), without seed and NOT_SETTINGS."""
    values = {**TrainConfig().to_dict(), **run.config}
    return {k: v for k, v in values.items() if k not in NOT_SETTINGS and k != "seed"}


def build_comparison(records: Sequence[RunRecord]) -> Comparison:
    """Group the runs, sort the rows, find the differing settings, write the warnings."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        key = json.dumps(settings_of(record), sort_keys=True, default=str)
        groups.setdefault(key, []).append(record)
    rows = []
    for members in groups.values():
        members.sort(key=lambda r: (_seed_order(r.config.get("seed")), r.name))
        finals = [last_measured_accuracy(r) for r in members]
        rows.append(
            Row(
                label=_label(members),
                runs=members,
                settings=settings_of(members[0]),
                final=Spread(tuple(v for v in finals if v is not None)),
                best=_spread(r.best_accuracy for r in members),
                best_val=_spread(r.best_val_accuracy for r in members),
            )
        )
    rows = _grouped_by_dataset(sorted(rows, key=_rank))
    _unique_labels(rows)
    return Comparison(rows, differing_settings(rows), warnings_for(rows))


def differing_settings(rows: Sequence[Row]) -> list[str]:
    """The settings whose values are not the same in every row, in TrainConfig's order (epochs
    has its own column)."""
    names = list(TrainConfig().to_dict())
    names += sorted({k for row in rows for k in row.settings} - set(names))
    return [
        name
        for name in names
        if name != "epochs"
        and len({json.dumps(row.settings.get(name), sort_keys=True, default=str) for row in rows})
        > 1
    ]


# the rankings in table order: test accuracy, then validation accuracy, then neither
RANKINGS = ("test", "val", "")
RANKING_WORDS = {"test": "final test accuracy", "val": "best.pt validation accuracy"}


def _rank(row: Row) -> tuple[int, float, str]:
    """The sort key: the ranking's place in RANKINGS, then the best mean first, then the label."""
    return (RANKINGS.index(row.ranked_on), -(row.ranking.mean or 0.0), row.label)


def _grouped_by_dataset(ranked: list[Row]) -> list[Row]:
    """The ranked rows with each data set's rows together (a ranking never crosses data sets),
    the data sets in the order of their best rows."""
    order = datasets_of(ranked)
    return sorted(ranked, key=lambda row: order.index(row.dataset))  # stable: keeps the ranks


def warnings_for(rows: Sequence[Row]) -> list[str]:
    """Where the table's order may mislead: several data sets, overlapping spreads, rows ranked
    on validation accuracy or measured on the test split in part, single runs, unfinished runs."""
    warnings = _dataset_warnings(rows)
    for ranked_on, words in RANKING_WORDS.items():  # spreads are compared within a ranking
        spread = [r for r in rows if r.ranked_on == ranked_on and r.ranking.n >= 2]
        for i, a in enumerate(spread):  # one line per row: the rows below it it overlaps
            below = [
                b for b in spread[i + 1 :]
                if b.dataset == a.dataset and _overlap(a.ranking, b.ranking)
            ]  # fmt: skip
            if below:
                others = ", ".join(b.label for b in below)
                warnings.append(
                    f"{a.label} overlaps {others} ({words}, mean ± std): their order may be "
                    "seed noise"
                )
    warnings += _untested_warnings(rows)
    single = [r.label for r in rows if r.n == 1]
    if single:
        which = "it has" if len(single) == 1 else "they have"
        warnings.append(
            f"single run{'s' if len(single) > 1 else ''} ({', '.join(single)}): {which} no "
            "measured spread, so an order against it may be seed noise; train with several "
            "seeds to measure it (`cnnlab train --seeds 0,1,2 ...`)"
        )
    for row in rows:
        for run in row.runs:
            planned = run.config.get("epochs")
            # a run read in part (its last row cut short) is said once, by its own warning;
            # one that stopped early (patience, a target) has finished
            unfinished = not run.warnings and not run.stopped
            if planned is not None and len(run.metrics) < planned and unfinished:
                warnings.append(
                    f"{run.name} stopped after {len(run.metrics)} of {planned} epochs; finish "
                    f"it with `cnnlab train --resume {run.path}`"
                )
    return warnings


def _dataset_warnings(rows: Sequence[Row]) -> list[str]:
    """One line when the rows are on several data sets: they are ranked within each."""
    datasets = datasets_of(rows)
    if len(datasets) < 2:
        return []
    return [
        f"these runs are on {len(datasets)} data sets ({', '.join(datasets)}): accuracies on "
        "different test sets do not compare, so the rows are ranked within each data set"
    ]


def datasets_of(rows: Sequence[Row]) -> list[str]:
    """The rows' data sets, each once, in the rows' order."""
    return list(dict.fromkeys(row.dataset for row in rows))


def _untested_warnings(rows: Sequence[Row]) -> list[str]:
    """Rows ranked on validation accuracy (no run of them measured the test split), and rows
    whose test columns are the mean of only some of their runs."""
    warnings = []
    on_val = [row.label for row in rows if row.ranked_on == "val"]
    if on_val and len(on_val) == len(rows):
        warnings.append(
            "no run measured its test split (trained with --no-eval-test): the rows are ranked "
            "by best.pt validation accuracy"
        )
    elif on_val:
        warnings.append(
            f"{', '.join(on_val)} measured no test accuracy (trained with --no-eval-test): "
            "ranked after the rows that did, by best.pt validation accuracy"
        )
    for row in rows:
        untested = row.n - row.final.n
        if row.final.n and untested:
            tested = (
                "those of the one run that did" if row.final.n == 1
                else f"the means over the {row.final.n} runs that did"
            )  # fmt: skip
            warnings.append(
                f"{row.label}: {untested} of its {row.n} runs measured no test accuracy "
                f"(--no-eval-test); its test accuracies (final and best.pt) are {tested}"
            )
    return warnings


def _spread(values: Any) -> Spread:
    return Spread(tuple(value for value in values if value is not None))


def _overlap(a: Spread, b: Spread) -> bool:
    """Whether mean ± std of `a` and of `b` share values."""
    assert a.mean is not None and b.mean is not None and a.std is not None and b.std is not None
    return abs(a.mean - b.mean) <= a.std + b.std


def last_measured_accuracy(run: RunRecord) -> float | None:
    """The last test accuracy the run measured (its last epoch's, unless it stopped between
    evaluations)."""
    values = [v for v in run.column("test_accuracy") if v is not None]
    return values[-1] if values else None


def _label(runs: Sequence[RunRecord]) -> str:
    """The runs' common name: `lenet` for lenet-seed0 and lenet-seed1, the name of a lone run."""
    if len(runs) == 1:
        return runs[0].name
    stems = {SEED_SUFFIX.sub("", run.name) or run.name for run in runs}
    if len(stems) == 1:
        return stems.pop()
    # run names, not paths: their common start character by character is what is wanted
    prefix = os.path.commonprefix([run.name for run in runs]).rstrip("-_. ")  # noqa: RUF071
    return prefix if len(prefix) >= 3 else f"{runs[0].name} (+{len(runs) - 1})"


def _unique_labels(rows: Sequence[Row]) -> None:
    """Two rows of the same name (same run names in two folders) get `#2`, `#3`..."""
    seen: dict[str, int] = {}
    for row in rows:
        seen[row.label] = seen.get(row.label, 0) + 1
        if seen[row.label] > 1:
            row.label = f"{row.label} #{seen[row.label]}"


def _seed_order(seed: Any) -> tuple[int, str]:
    return (seed, "") if isinstance(seed, int) else (1 << 62, str(seed))


def _thousands(value: float | None) -> str:
    return "-" if value is None else f"{round(value):,}"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def setting(value: Any) -> str:
    """A setting as the table shows it: `0.0005`, `true`, `0.9,0.999`, `n_chans1=32`, `-`."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(setting(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={setting(v)}" for k, v in sorted(value.items())) or "-"
    return str(value)
