"""pytest plugin for `make mutation` (docs/TESTING.md), five rules that keep a run within
hours on 2 cores without losing what the tests catch:

- the processes a test starts (the CLI, torchrun's workers) run the mutated copy too, and the
  functions they call count as covered by that test (see sitecustomize.py beside this file);
- the tests marked slow (whole jobs under torchrun, runs killed and resumed) and the calls of
  child processes count as coverage for distributed.py alone: its code runs only there, while
  the rest is covered by quicker tests in the test process, and a surviving mutant of it need
  not wait for the slow ones;
- the tests of what is built on the training core (reports, plots, prediction, export,
  inspection, start-up) count as coverage for those packages, not for the core: they train a
  run only to have one, and the core's own tests judge its mutants;
- the functions a shared fixture (module or session scope: a trained run, a built model) calls
  while it is made count as covered by every test that uses it, not only by the first test,
  in whose set-up pytest happens to make it; otherwise a mutant there runs that one test alone;
- a mutant's tests run test file by test file, the quickest files first: most mutants fail a
  short focused test, and pytest stops at the first failure.
"""

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest

ONLY_IN_CHILDREN = ("cnnlab.training.distributed.",)
CORE = ("cnnlab.training.", "cnnlab.data.loader.")
BUILT_ON_CORE = {
    "test_report.py", "test_report_browser.py", "test_plots.py", "test_predict.py",
    "test_predictions.py", "test_export.py", "test_features.py", "test_compare.py",
    "test_summary.py", "test_receptive_fields.py", "test_convcalc.py",
    "test_torchvision_models.py", "test_startup.py",
}  # fmt: skip
COLLECTING = "stats"  # MUTANT_UNDER_TEST while mutmut learns which tests call what


def pytest_configure(config) -> None:
    # mutmut runs the tests in mutants/, and puts mutants/src first on sys.path of its own
    # process only; a child finds the same copy through PYTHONPATH
    mutated = str(Path("src").resolve())
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if mutated not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([mutated, *filter(None, paths)])
    if os.environ.get("MUTANT_UNDER_TEST") == COLLECTING:
        os.environ["CNNLAB_MUTMUT_HITS"] = tempfile.mkdtemp(prefix="mutmut-hits-")


def pytest_collection_modifyitems(session, config, items) -> None:
    stats = Path("mutmut-stats.json")
    if os.environ.get("MUTANT_UNDER_TEST") in ("", COLLECTING, None) or not stats.exists():
        return
    seconds = json.loads(stats.read_text())["duration_by_test"]
    per_file: dict[str, float] = defaultdict(float)
    for item in items:
        per_file[item.path.name] += seconds.get(item.nodeid, 0.0)
    items.sort(key=lambda item: per_file[item.path.name])  # stable: file order kept inside


# what each shared fixture's set-up called, by its FixtureDef (one per fixture and scope)
_fixture_hits: dict[object, set[str]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    if os.environ.get("MUTANT_UNDER_TEST") != COLLECTING or fixturedef.scope == "function":
        yield
        return
    from mutmut.state import state

    before, state()._stats = state()._stats, set()
    try:
        yield
    finally:
        _fixture_hits[fixturedef] = state()._stats
        state()._stats = before | state()._stats


def _shared_fixture_hits(item) -> set[str]:
    definitions = item._fixtureinfo.name2fixturedefs
    return {
        hit
        for name in item.fixturenames
        for fixturedef in definitions.get(name, ())
        for hit in _fixture_hits.get(fixturedef, ())
    }


def _keep_only_distributed(names: set[str]) -> set[str]:
    return {name for name in names if name.startswith(ONLY_IN_CHILDREN)}


def _collect(item) -> None:
    if os.environ.get("MUTANT_UNDER_TEST") != COLLECTING:
        return
    from mutmut.state import state

    state()._stats.update(_shared_fixture_hits(item))
    folder = Path(os.environ["CNNLAB_MUTMUT_HITS"])
    for file in folder.glob("*.txt"):
        state()._stats.update(_keep_only_distributed(set(file.read_text().split())))
        file.unlink()
    if item.get_closest_marker("slow"):
        state()._stats = _keep_only_distributed(state()._stats)
    if item.path.name in BUILT_ON_CORE:
        state()._stats = {name for name in state()._stats if not name.startswith(CORE)}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield
    _collect(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield
    _collect(item)
