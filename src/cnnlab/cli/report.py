"""`cnnlab report RUN`: one self-contained HTML page about a run (RUN/report.html)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli.options import add_command, command_config
from cnnlab.config import ReportConfig


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, ReportConfig, run_report,
        help="write a run's HTML report: settings, summary, epochs, plots, per-class accuracy",
        description=(
            "Write one self-contained HTML page about a run (RUN/report.html): what ran and "
            "the command that runs it again, the environment, the model summary with "
            "receptive fields, the per-epoch table, the plots of `cnnlab plot`, accuracy per "
            "class and the checkpoints. Images are embedded and nothing is fetched from a "
            "network, so the page opens offline, mails as one file and prints. `cnnlab train` "
            "writes it when a run ends."
        ),
    )  # fmt: skip


def run_report(args: argparse.Namespace) -> None:
    from cnnlab.files import size_text
    from cnnlab.report.run_folder import warning_line
    from cnnlab.report.run_report import write_report

    cfg = command_config(args, ReportConfig)
    path = write_report(cfg, warn=lambda text: print(warning_line(text), file=sys.stderr))
    print(f"wrote {path} ({size_text(path.stat().st_size)})")
