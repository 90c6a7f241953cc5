"""tools/mutation_report.py keeps docs/MUTANTS.md: reasons stay with their mutants' changes,
killed mutants leave, new ones are to explain, and the report fails while a module under the
target has one. mutmut itself is not run: its results file and `mutmut show` are stood in for."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "mutation_report.py"
SOURCE = "src/cnnlab/m.py"
FN = "cnnlab.m.x_f__mutmut_"


@pytest.fixture
def report(monkeypatch):
    spec = importlib.util.spec_from_file_location("mutation_report_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    changes = {f"{FN}{i}": f"`-a` → `+b{i}`" for i in range(1, 21)}
    monkeypatch.setattr(module, "change_of", lambda name, root: changes[name])
    return module


def project(root: Path, codes: dict[str, int | None], page: str | None) -> None:
    (root / "pyproject.toml").write_text(f'[tool.mutmut]\nonly_mutate = ["{SOURCE}"]\n')
    meta = root / "mutants" / f"{SOURCE}.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    (root / "docs").mkdir()
    if page is not None:
        (root / "docs" / "MUTANTS.md").write_text(page)


def rows(root: Path, report) -> dict[str, tuple[str, str]]:
    return report.known_rows(root / "docs" / "MUTANTS.md")


def test_reasons_stay_with_their_change_and_the_rest_is_to_explain_or_check(tmp_path, report):
    page = report.page_text([("m.py", [
        (f"{FN}1", "`-a` → `+b1`", "equivalent: kept"),
        (f"{FN}2", "`-a` → `+old`", "equivalent: written for another mutant"),
        (f"{FN}3", "`-a` → `+b3`", "equivalent: killed now"),
        (f"{FN}4", "`-a` → `+b4`", "CUDA-only: not run this time"),
    ])])  # fmt: skip
    # 1, 2 and 5 survive, 4 is not run, 3 and 6-20 are killed: 16 of 19 tried, 84%
    codes = {f"{FN}1": 0, f"{FN}2": 0, f"{FN}3": 1, f"{FN}4": None, f"{FN}5": 0}
    codes |= {f"{FN}{i}": 1 for i in range(6, 21)}
    project(tmp_path, codes, page)
    assert report.main(tmp_path) == 1  # under 90% with rows to check and to explain
    got = rows(tmp_path, report)
    assert got[f"{FN}1"] == ("`-a` → `+b1`", "equivalent: kept")
    assert got[f"{FN}2"] == (
        "`-a` → `+b2`",
        "**to check**: written for `-a` → `+old`: equivalent: written for another mutant",
    )
    assert f"{FN}3" not in got
    assert got[f"{FN}4"] == ("`-a` → `+b4`", "CUDA-only: not run this time")
    assert got[f"{FN}5"] == ("`-a` → `+b5`", report.TO_EXPLAIN)
    assert "## `m.py`: 4" in (tmp_path / "docs" / "MUTANTS.md").read_text()


def test_a_module_at_the_target_passes_with_survivors_to_explain(tmp_path, report):
    codes = {f"{FN}1": 0} | {f"{FN}{i}": 1 for i in range(2, 11)}  # 9 of 10: 90%
    project(tmp_path, codes, None)
    assert report.main(tmp_path) == 0
    assert rows(tmp_path, report) == {f"{FN}1": ("`-a` → `+b1`", report.TO_EXPLAIN)}


def test_a_module_under_the_target_passes_when_every_survivor_has_a_reason(tmp_path, report):
    page = report.page_text([("m.py", [(f"{FN}1", "`-a` → `+b1`", "equivalent: why")])])
    project(tmp_path, {f"{FN}1": 0, f"{FN}2": 1}, page)  # 50%
    assert report.main(tmp_path) == 0
    assert rows(tmp_path, report) == {f"{FN}1": ("`-a` → `+b1`", "equivalent: why")}


def test_without_a_run_the_page_is_left_as_it_is(tmp_path, report):
    project(tmp_path, {}, "hand-written\n")
    (tmp_path / "mutants" / f"{SOURCE}.meta").unlink()
    assert report.main(tmp_path) == 0
    assert (tmp_path / "docs" / "MUTANTS.md").read_text() == "hand-written\n"


def test_globs_name_every_file_and_a_module_left_out_of_the_run_is_not_judged(
    tmp_path, report, capsys
):
    """only_mutate's globs give each file once; `mutmut run PATTERN` leaves other modules' mutants
    not run, and they neither fail the target nor lose their rows."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mutmut]\nonly_mutate = ["src/cnnlab/m.py", "src/cnnlab/*.py"]\n'
    )
    for name in ("m", "n"):
        (tmp_path / "src" / "cnnlab").mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / "cnnlab" / f"{name}.py").write_text("")
    (tmp_path / "src" / "cnnlab" / "empty.py").write_text("")
    other = "cnnlab.n.x_g__mutmut_"
    metas = {
        "m": {f"{FN}1": 0} | {f"{FN}{i}": 1 for i in range(2, 11)},  # 90%
        "n": {f"{other}1": None, f"{other}2": None},  # left out of this run
        "empty": {},
    }
    for name, codes in metas.items():
        meta = tmp_path / "mutants" / "src" / "cnnlab" / f"{name}.py.meta"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"exit_code_by_key": codes}))
    (tmp_path / "docs").mkdir()
    page = report.page_text([("n.py", [(f"{other}1", "`-a` → `+c`", "equivalent: kept")])])
    (tmp_path / "docs" / "MUTANTS.md").write_text(page)
    assert report.main(tmp_path) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed[1:]] == ["cnnlab.m", "cnnlab.n"]
    assert printed[2].split()[-1] == "-" and printed[1].split()[-1] == "90.0%"
    assert rows(tmp_path, report) == {
        f"{FN}1": ("`-a` → `+b1`", report.TO_EXPLAIN),
        f"{other}1": ("`-a` → `+c`", "equivalent: kept"),
    }
