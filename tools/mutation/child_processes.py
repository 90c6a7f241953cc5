"""pytest plugin for `make mutation`: the processes a test starts (the CLI, torchrun's workers)
run the mutated copy too, and the functions they call count as covered by that test (see
sitecustomize.py beside this file)."""

import os
import tempfile
from pathlib import Path

import pytest

# The code whose only tests start processes (torchrun's): a child's calls count as coverage for
# these functions alone. The rest runs in the test process too, and a mutant of it need not
# wait for the slow process-starting tests (each one imports torch and trains).
COVERED_IN_CHILDREN = ("cnnlab.train.distributed.",)


def pytest_configure(config) -> None:
    # mutmut runs the tests in mutants/, and puts mutants/src first on sys.path of its own
    # process only; a child finds the same copy through PYTHONPATH
    mutated = str(Path("src").resolve())
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if mutated not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([mutated, *filter(None, paths)])
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":
        os.environ["CNNLAB_MUTMUT_HITS"] = tempfile.mkdtemp(prefix="mutmut-hits-")


def _collect_child_hits() -> None:
    folder = os.environ.get("CNNLAB_MUTMUT_HITS")
    if os.environ.get("MUTANT_UNDER_TEST") != "stats" or not folder:
        return
    from mutmut.state import state

    for file in Path(folder).glob("*.txt"):
        names = file.read_text().split()
        state()._stats.update(n for n in names if n.startswith(COVERED_IN_CHILDREN))
        file.unlink()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield
    _collect_child_hits()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield
    _collect_child_hits()
