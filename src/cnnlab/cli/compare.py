"""`cnnlab compare RUN...`: runs side by side, seeds of one experiment as one row."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli.options import add_command, command_config
from cnnlab.config import CompareConfig

RUNS_HELP = "run folders (`runs/*` compares every run there)"


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, CompareConfig, run_compare,
        help="compare runs in one table: accuracy mean ± std over seeds, what differs",
        description=(
            "Compare runs in one table. Runs that differ only in seed are one row: n, and the "
            "mean ± sample standard deviation of their final test accuracy and of their "
            "best.pt's (and its validation accuracy, where a validation split chose it; "
            "'chosen on' says which split did). Columns: "
            "parameters, epochs, wall time, examples/s, and the settings that differ between "
            "rows (nothing else). Rows are sorted by mean final accuracy (within each data set: "
            "runs on several are grouped by data set, with a warning); a warning says when two "
            "rows' spreads overlap (their order may be seed noise) and when a row is a single "
            "run. Runs trained with --no-eval-test show '-' for test accuracy: their rows come "
            "after those with one, sorted by best.pt's validation accuracy (the whole table, "
            "when no run measured its test split). --out writes the overlaid curves "
            "(compare-curves.png), --html one self-contained page. Only config.json and "
            "metrics.jsonl are read; a run folder that holds no finished epoch or a damaged "
            "file is skipped with a warning."
        ),
        usage="cnnlab compare RUN [RUN ...] [--html FILE] [--out DIR]",
        leading=(("runs", dict(nargs="+", metavar="RUN", help=RUNS_HELP)),),
    )  # fmt: skip


def run_compare(args: argparse.Namespace) -> None:
    from cnnlab.report.compare import NothingToCompare, compare
    from cnnlab.report.run_folder import warning_line

    cfg = command_config(args, CompareConfig)
    try:
        comparison = compare(args.runs, html=cfg.html, out=cfg.out)
    except NothingToCompare as err:  # each folder's reason, then the error's one line
        for text in err.skipped:
            print(warning_line(text), file=sys.stderr)
        raise
    # what reading the folders left out is about the input: stderr, as other commands' notes
    for text in comparison.folder_warnings:
        print(warning_line(text), file=sys.stderr)
    print(comparison.text(folder_warnings=False))
    for path in comparison.written:
        print(f"wrote {path}")
