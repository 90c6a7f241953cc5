"""The `cnnlab` command: train, lr-find, eval, models, recipes, datasets, summary, convcalc,
params, features, explain, plot, report, compare, predict, export and sweep.

Each command's options are generated from its config dataclass (config/) by options.py, so a
flag, a recipe key and a Python argument are always the same thing. One module per group of
commands: train.py (train), lr_find.py (lr-find), evaluate.py (eval), catalog.py (models,
recipes, datasets), summary.py (summary), convcalc.py (convcalc, params), features.py
(features), explain.py (explain), plot.py (plot), report.py (report), compare.py (compare),
predict.py (predict), export.py (export), sweep.py (sweep). Bad input ends in one line on
stderr, in the command line's words (flags, not Python field names), and exit code 2; a run
stopped by SIGINT / SIGTERM exits 130 / 143 after saving. Nothing here imports torch before a
command needs it, so `--help` answers at once, and what the command line alone shows to be wrong
(checks.py, train.py) is refused before torch is imported.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

from cnnlab.cli import (
    catalog,
    compare,
    convcalc,
    evaluate,
    explain,
    export,
    features,
    lr_find,
    plot,
    predict,
    report,
    summary,
    sweep,
    train,
)  # fmt: skip
from cnnlab.cli.checks import check_command_line
from cnnlab.cli.options import Parser, UsageError
from cnnlab.config.flags import cli_message
from cnnlab.errors import CnnlabError

# each module's `add_commands(subparsers)`
COMMANDS = (
    train, lr_find, evaluate, catalog, summary, convcalc, features, explain, plot, report,
    compare, predict, export, sweep,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="cnnlab",
        description="Train, inspect and compare convolutional image classifiers (PyTorch).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS:
        module.add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    from cnnlab.process import launched_rank  # no torch in these two
    from cnnlab.training.signals import Terminated, TrainingInterrupted

    try:  # a Ctrl-C while the parser is built (imports) is a clean stop too, not a traceback
        parser = build_parser()
        args, unknown = parser.parse_known_args(argv)
        if args.command is None:  # plain `cnnlab`: its help
            parser.print_help()
            return 0
        if unknown:  # named here, where the command is known, so the hint is its --help
            raise UsageError(
                f"unrecognized arguments: {' '.join(unknown)}; see `cnnlab {args.command} --help`"
            )
        check_command_line(args)
        return args.handler(args) or 0
    except SystemExit as done:  # --help, and argparse's own exits
        return done.code if isinstance(done.code, int) else 0
    except (CnnlabError, UsageError) as err:
        # one write, so lines from torchrun's processes sharing a terminal never interleave
        sys.stderr.write(f"error: {cli_message(err)}\n")
        return getattr(err, "exit_code", 2)  # 2: bad input; a lost torchrun process: 1
    except TrainingInterrupted as err:
        if launched_rank() == "0":  # under torchrun every rank stops; one says so
            sys.stderr.write(f"{err}\n")
        return err.exit_code
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (Terminated) outside training
        print("terminated" if isinstance(err, Terminated) else "interrupted", file=sys.stderr)
        return getattr(err, "exit_code", 130)


def run() -> None:
    """Console-script entry point (`cnnlab`, `python -m cnnlab`)."""
    from cnnlab.process import pause_gc_for_startup
    from cnnlab.training.signals import terminate_like_interrupt

    pause_gc_for_startup()  # a command runs to its end in one go: see process.py
    terminate_like_interrupt()  # a start-up stopped by SIGTERM cleans up as Ctrl-C's does
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `cnnlab predict ... | head -1`: the reader has what it wanted
        # Python's own recipe: no traceback, and no second error as stdout closes at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # 128 + SIGPIPE, as a shell reports a command a pipe closed on
    # Python's last collection at exit walks every object torch made (300k+ with dynamo):
    # frozen objects are skipped, which ends `import torch, torch._dynamo` 0.9 s sooner
    gc.freeze()
    sys.exit(code)
