"""`cnnlab compare RUN...`: runs side by side, seeds of one experiment as one row."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import add_command, given_values
from cnnlab.config import CompareConfig

RUNS_HELP = "run folders (`runs/*` compares every run there)"


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, CompareConfig, run_compare,
        help="compare runs in one table: accuracy mean ± std over seeds, what differs",
        description=(
            "Compare runs in one table. Runs that differ only in seed are one row: n, and the "
            "mean ± sample standard deviation of their final and best test accuracy. Columns: "
            "parameters, epochs, wall time, examples/s, and the settings that differ between "
            "rows (nothing else). Rows are sorted by mean final accuracy; a warning says when two "
            "rows' spreads overlap (their order may be seed noise) and when a row is a single "
            "run. --out writes the overlaid curves (compare-curves.png), --html one "
            "self-contained page. Only config.json and metrics.jsonl are read."
        ),
        usage="cnnlab compare RUN [RUN ...] [--html FILE] [--out DIR]",
        leading=(("runs", dict(nargs="+", metavar="RUN", help=RUNS_HELP)),),
    )  # fmt: skip


def run_compare(args: argparse.Namespace) -> None:
    from cnnlab.report.compare import compare

    cfg = CompareConfig.from_dict(given_values(args, CompareConfig), source="cnnlab compare")
    comparison = compare(args.runs, html=cfg.html, out=cfg.out)
    print(comparison)
    for path in comparison.written:
        print(f"wrote {path}")
