"""Check mutants again against a few test files, in minutes instead of hours.

`mutmut run NAME` runs every test that covers a mutant, in a fresh pytest per mutant: after
tests are written for a run's survivors, checking those survivors again that way takes hours
on 2 cores (a survivor of a function that 400 tests cover runs all 400). This runs only the
test files given, against the mutants given that survived or are not run yet, each in a child
forked from one process that has imported torch (no torch op has run, so its thread pools
are not yet started), and records a mutant those tests fail on as killed in mutmut's results
(mutants/*.meta), where tools/mutation_report.py counts it. Failing a subset of the suite
means failing the suite, so that verdict is the one mutmut would reach; a mutant the files
pass keeps its verdict (a survivor stays one, an unrun mutant stays unrun).

    .venv/bin/python tools/mutation/recheck.py "cnnlab.data.cache.*" tests/test_data_npz.py ...

A test file may also be one test of it (`tests/test_selection.py::test_name`), where only that
one of a slow file is about the module.

Run it from the checkout where `make mutation` ran, after `mutmut run` has made mutants/ from
the current source (a mutant of a function changed since is not in mutants/ yet).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import signal
import sys
import tomllib
from pathlib import Path

CHECKED = {0, 5, 33, None}  # survived, no tests (mutmut's codes), not run
KILLED = 1
TIMEOUT_SECONDS = 300


def results(root: Path) -> dict[Path, dict]:
    return {meta: json.loads(meta.read_text()) for meta in (root / "mutants").rglob("*.py.meta")}


def chosen(metas: dict[Path, dict], patterns: list[str]) -> list[tuple[Path, str]]:
    return [
        (meta, name)
        for meta, data in metas.items()
        for name, code in data["exit_code_by_key"].items()
        if code in CHECKED and any(fnmatch.fnmatchcase(name, p) for p in patterns)
    ]


def pytest_args(root: Path, tests: list[str]) -> list[str]:
    """The test files as mutmut runs them: in mutants/, with pyproject's plugins and options."""
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    extra = [a for a in config.get("pytest_add_cli_args", []) if not a.startswith("--ignore")]
    return ["-x", "-q", "-p", "no:randomly", "-p", "no:xdist", *extra, *tests]


def collect(args: list[str]) -> None:
    """Import the tests and what they import once, here: a child then starts its pytest in a
    tenth of a second, not one (a mutant's switch is read at each call, so the mutated
    functions imported here take it; code that runs at import runs unmutated, as in mutmut)."""
    import pytest

    stdout = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    try:
        pytest.main(["--collect-only", *args])
    finally:
        os.dup2(stdout, 1)


def start(name: str, args: list[str]) -> int:
    """A forked child that runs the tests with `name` switched on; its pid."""
    pid = os.fork()
    if pid == 0:
        import pytest

        os.environ["MUTANT_UNDER_TEST"] = name
        signal.alarm(TIMEOUT_SECONDS)  # a mutant that loops for ever counts as killed
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1), os.dup2(devnull, 2)
        os._exit(int(pytest.main(args)))
    return pid


def exit_codes(names: list[str], args: list[str], at_once: int) -> dict[str, int]:
    """pytest's exit code for each mutant name, `at_once` children at a time."""
    codes, running, waiting = {}, {}, list(reversed(names))
    while waiting or running:
        while waiting and len(running) < at_once:
            name = waiting.pop()
            running[start(name, args)] = name
        pid, status = os.wait()
        name = running.pop(pid)
        codes[name] = os.waitstatus_to_exitcode(status)
        if name:  # as it comes, for a run of hundreds
            verdict = "survives" if codes[name] in (0, 5) else "killed  "  # 5: no tests ran
            print(f"{len(codes):>5}/{len(names)} {verdict} {name}", flush=True)
    return codes


def main(argv: list[str]) -> int:
    tests = [a for a in argv if a.endswith(".py") or ".py::" in a]  # files, or single tests
    patterns = [a for a in argv if a not in tests]
    if not patterns or not tests:
        print(__doc__)
        return 2
    root = Path.cwd()
    # as they are now, with the modules beside them that tests import (conftest, helpers)
    shared = [p.relative_to(root) for p in (root / "tests").glob("*.py")]
    files = {Path(t.split("::")[0]) for t in tests}
    for test in {*files, *(p for p in shared if not p.name.startswith("test_"))}:
        shutil.copy(root / test, root / "mutants" / test)
    metas = results(root)
    todo = chosen(metas, patterns)
    os.chdir(root / "mutants")
    # the mutated copy first, and the plugin that has the tests' own children (the CLI) take it
    paths = [root / "mutants" / "src", root / "tools" / "mutation"]
    sys.path[:0] = map(str, paths)
    os.environ["PYTHONPATH"] = os.pathsep.join([*map(str, paths), os.environ.get("PYTHONPATH", "")])
    import torch  # noqa: F401  imported once here, for every child
    import torchvision  # noqa: F401

    args = pytest_args(root, tests)
    collect(args)
    if exit_codes([""], args, 1)[""] != 0:
        print("the tests fail without a mutant: fix them first")
        return 1
    codes = exit_codes([name for _, name in todo], args, os.cpu_count() or 1)
    for meta, name in todo:
        if codes[name] not in (0, 5):  # read again: mutmut or another recheck may have written it
            data = json.loads(meta.read_text())
            data["exit_code_by_key"][name] = KILLED
            meta.write_text(json.dumps(data, indent=4))
    print(f"{sum(codes[n] not in (0, 5) for _, n in todo)} of {len(todo)} killed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
