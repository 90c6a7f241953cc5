"""tools/mutation/recheck.py: survivors and unrun mutants that the given tests fail on are
recorded as killed, the others keep their verdicts, killed ones are not run again. mutmut
itself is not run: a module that switches its mutants on MUTANT_UNDER_TEST, as mutmut's
trampolines do, stands in for mutants/."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "mutation" / "recheck.py"
TOY = """import os


def double(x):
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if mutant == "toy.x_double__mutmut_1":
        return x * 3
    if mutant == "toy.x_double__mutmut_2":
        return x + x  # the same numbers: no test can tell
    if mutant in ("toy.x_double__mutmut_3", "toy.x_double__mutmut_4"):
        return x - 1
    return 2 * x
"""
CODES = {"toy.x_double__mutmut_1": 0, "toy.x_double__mutmut_2": 0,
         "toy.x_double__mutmut_3": 1, "toy.x_double__mutmut_4": None}  # fmt: skip


@pytest.fixture
def recheck(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("mutation_recheck_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mutmut]\npytest_add_cli_args = ["-p", "no:cacheprovider", "--ignore=x"]\n'
    )
    for folder in (
        tmp_path / "tests",
        tmp_path / "mutants" / "src",
        tmp_path / "mutants" / "tests",
    ):
        folder.mkdir(parents=True)
    (tmp_path / "mutants" / "src" / "toy.py").write_text(TOY)
    (tmp_path / "mutants" / "src" / "toy.py.meta").write_text(
        json.dumps({"exit_code_by_key": CODES})
    )
    (tmp_path / "tests" / "conftest.py").write_text("")
    (tmp_path / "tests" / "helpers.py").write_text("")
    (tmp_path / "tests" / "test_toy.py").write_text(
        "from toy import double\n\n\ndef test_double():\n    assert double(3) == 6\n"
    )
    # what the tool changes for its children: put back after the test
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "")
    return module


def test_recheck_records_the_mutants_the_tests_fail_on_as_killed(recheck, tmp_path, capsys):
    assert recheck.main(["toy.*", "tests/test_toy.py"]) == 0
    codes = json.loads((tmp_path / "mutants" / "src" / "toy.py.meta").read_text())
    assert codes["exit_code_by_key"] == {
        "toy.x_double__mutmut_1": 1,  # a survivor the test now fails on
        "toy.x_double__mutmut_2": 0,  # equivalent: still a survivor
        "toy.x_double__mutmut_3": 1,  # killed before, not run again
        "toy.x_double__mutmut_4": 1,  # not run before
    }
    assert capsys.readouterr().out.splitlines()[-1] == "2 of 3 killed"


def test_recheck_refuses_tests_that_fail_without_a_mutant(recheck, tmp_path, capsys):
    (tmp_path / "tests" / "test_toy.py").write_text("def test_broken():\n    assert False\n")
    assert recheck.main(["toy.*", "tests/test_toy.py"]) == 1
    assert "fail without a mutant" in capsys.readouterr().out
    codes = json.loads((tmp_path / "mutants" / "src" / "toy.py.meta").read_text())
    assert codes["exit_code_by_key"] == CODES


def test_recheck_runs_the_tests_as_mutmut_does(recheck, tmp_path):
    args = recheck.pytest_args(tmp_path, ["tests/test_toy.py"])
    # stops at the first failure, one process, pyproject's plugins but not its test selection
    assert args == ["-x", "-q", "-p", "no:randomly", "-p", "no:xdist", "-p", "no:cacheprovider",
                    "tests/test_toy.py"]  # fmt: skip
