"""The help of `cnnlab` and of every command, word for word against tests/data/cli-help.txt.

What `--help` says is part of the interface a user reads (what each flag means, its default,
the usage line), so a change to it is reviewed as a change to that file rather than slipping
in with a code change (mutation testing found every help string free to change). Words are
compared, not line breaks, so a terminal's width does not matter. After a deliberate change,
write the file anew with `CNNLAB_WRITE_HELP=1 .venv/bin/python -m pytest tests/test_cli_help.py`
and read its diff.
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

import pytest

from cnnlab.cli import build_parser, main

EXPECTED = Path(__file__).parent / "data" / "cli-help.txt"


def commands() -> list[str]:
    parser = build_parser()
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(subparsers.choices)


def all_help(capsys) -> str:
    """`cnnlab --help` and `cnnlab COMMAND --help` for each command, each under a heading."""
    pages = []
    for command in ["", *commands()]:
        argv = [command, "--help"] if command else ["--help"]
        assert main(argv) == 0
        pages.append(f"### cnnlab {' '.join(argv)}\n{capsys.readouterr().out}")
    return "\n".join(pages)


def words(text: str) -> list[str]:
    return text.split()


def test_every_commands_help_is_the_reviewed_text(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    text = all_help(capsys)
    if os.environ.get("CNNLAB_WRITE_HELP") == "1":
        EXPECTED.write_text(text)
        pytest.skip(f"wrote {EXPECTED}")
    expected = EXPECTED.read_text()
    if words(text) != words(expected):
        got, want = words(text), words(expected)
        at = next(
            i for i, pair in enumerate(itertools.zip_longest(got, want)) if pair[0] != pair[1]
        )
        raise AssertionError(
            f"help differs from {EXPECTED.name} at word {at}: "
            f"{' '.join(got[max(0, at - 8) : at + 8])!r} != "
            f"{' '.join(want[max(0, at - 8) : at + 8])!r} "
            "(a deliberate change: CNNLAB_WRITE_HELP=1 writes the file anew)"
        )


def test_the_reviewed_text_has_every_command():
    headings = [line for line in EXPECTED.read_text().splitlines() if line.startswith("### ")]
    assert headings == ["### cnnlab --help"] + [f"### cnnlab {c} --help" for c in commands()]
