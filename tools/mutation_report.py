"""Print mutmut's results per module, and keep docs/MUTANTS.md, the table of survivors.

`make mutation` runs this after `mutmut run`. It prints mutants, killed, survived and the score
of every module, then writes docs/MUTANTS.md again: one row per mutant that survives today, with
what it changes and why it is left. The reasons are written by people, in that file: a row keeps
its reason while its mutant survives with the same change, a mutant that is killed now loses
its row, a new survivor gets TO_EXPLAIN, and one whose change is not the one its reason was
written for gets TO_CHECK. The command fails while a module scores under the target and has
such a row, so the habit holds as the code changes.

    python tools/mutation_report.py            # after `mutmut run` (make mutation)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

TARGET = 90.0
# mutmut's exit codes per mutant (mutmut/stats.py): 1 and 3 are test failures, the timeout
# codes a mutant that made the tests hang
KILLED = {1, 3, 36, -24, 24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}
PAGE = Path("docs") / "MUTANTS.md"
TO_EXPLAIN = "**to explain**"
# a reason written for another change: mutmut numbers a function's mutants anew when it changes
TO_CHECK = "**to check**: written for {change}: {reason}"
NEEDS_WORK = (TO_EXPLAIN, "**to check**")
ROW = re.compile(r"^\| `(?P<name>[^`]+)` \| (?P<change>.*) \| (?P<reason>.*) \|$")
HEAD = """# Mutants that survive `make mutation`, and why they are left

Written by `tools/mutation_report.py` after each `make mutation`; docs/TESTING.md says how the
run works and gives the scores. Each row is a mutant that survived: what it changes and why no
test is written for it. *equivalent*: the change cannot alter what a run does. *CUDA-only*: the
change moves a tensor on a GPU and nothing on the CPU, and the suite runs without a GPU here.
*not worth a test*: a speed setting (`foreach`, `pin_memory`, `non_blocking`, `--compile`) or
the words of an error whose form is tested elsewhere. *unreachable*: no caller can get there
(torch refuses first, or always passes the argument). *mutmut only*: a test kills it in `make
test` but cannot under mutmut (a warning's stack level: mutmut calls each function through a
trampoline, a frame more). *killed since*: a test added after the run. The reasons are written
here by hand and kept while their mutant survives with the same change; a new survivor gets
{to_explain}, and one whose change is not the one its reason was written for (mutmut numbers a
function's mutants anew when the function changes) gets **to check**. The report fails while
such a row is in a module under {target:.0f}%.
"""


def status(exit_code: int | None) -> str:
    if exit_code in KILLED:
        return "killed"
    if exit_code in SURVIVED:
        return "survived"
    if exit_code in NO_TESTS:
        return "no tests"
    return "not run" if exit_code is None else f"other ({exit_code})"


def module_results(root: Path, source: str) -> dict[str, str]:
    meta = root / "mutants" / f"{source}.meta"
    if not meta.exists():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: status(code) for name, code in codes.items()}


def sources(patterns: list[str], root: Path) -> list[str]:
    """The files of only_mutate's paths and globs, in its order, each once."""
    found: dict[str, None] = {}
    for pattern in patterns:
        for path in sorted(root.glob(pattern)) if "*" in pattern else [root / pattern]:
            found.setdefault(path.relative_to(root).as_posix(), None)
    return list(found)


def known_rows(page: Path) -> dict[str, tuple[str, str]]:
    """mutant name → (change, reason), from the rows of the page as it stands."""
    if not page.exists():
        return {}
    rows = (ROW.match(line) for line in page.read_text(encoding="utf-8").splitlines())
    return {m["name"]: (m["change"], m["reason"]) for m in rows if m}


def change_of(name: str, root: Path) -> str:
    """The mutant's first removed and added lines, from `mutmut show`."""
    try:
        shown = subprocess.run(
            [sys.executable, "-m", "mutmut", "show", name], cwd=root, capture_output=True,
            text=True, timeout=60, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "(see `mutmut show`)"
    lines = shown.splitlines()
    old = next((x[1:].strip() for x in lines if x.startswith("-") and not x.startswith("---")), "")
    new = next((x[1:].strip() for x in lines if x.startswith("+") and not x.startswith("+++")), "")
    return f"`-{old}` → `+{new}`".replace("|", "\\|") if old or new else "(see `mutmut show`)"


def row(name: str, known: tuple[str, str] | None, change: str) -> tuple[str, str]:
    """(change, reason) of a survivor: its reason is kept while the change it was written
    for is the mutant's change; otherwise it is shown to check, or to explain when new."""
    if known is None:
        return change, TO_EXPLAIN
    old_change, reason = known
    if old_change == change or reason.startswith(NEEDS_WORK):
        return change, reason
    return change, TO_CHECK.format(change=old_change, reason=reason)


def page_text(sections: list[tuple[str, list[tuple[str, str, str]]]]) -> str:
    parts = [HEAD.format(to_explain=TO_EXPLAIN, target=TARGET)]
    for module, rows in sections:
        parts.append(f"\n## `{module}`: {len(rows)}\n")
        if rows:
            parts.append("\n| mutant | change | why it is left |\n| --- | --- | --- |\n")
            parts.extend(f"| `{name}` | {change} | {reason} |\n" for name, change, reason in rows)
    return "".join(parts)


def main(root: Path = Path(".")) -> int:
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    known = known_rows(root / PAGE)
    header = ("mutants", "killed", "survived", "no tests", "not run", "score")
    print(f"{'module':<34}" + "".join(f" {name:>8}" for name in header))
    sections, failing, unexplained, ran = [], [], [], False
    for source in sources(config["only_mutate"], root):
        results = module_results(root, source)
        if not results:  # no mutants in it (or no run yet)
            continue
        ran = True
        counts = Counter(results.values())
        tried = counts["killed"] + counts["survived"] + counts["no tests"]
        score = 100 * counts["killed"] / tried if tried else 0.0
        module = source.removeprefix("src/").removesuffix(".py").replace("/", ".")
        print(
            f"{module:<34} {len(results):>8} {counts['killed']:>8} {counts['survived']:>8} "
            f"{counts['no tests']:>8} {counts['not run']:>8} "
            + (f"{score:>7.1f}%" if tried else f"{'-':>8}")
        )
        rows = []
        for name, result in results.items():
            if result in ("survived", "no tests"):
                rows.append((name, *row(name, known.get(name), change_of(name, root))))
            elif result == "not run" and name in known:  # `mutmut run PATTERN` left it out
                rows.append((name, *known[name]))
        sections.append((source.removeprefix("src/cnnlab/"), rows))
        if tried and score < TARGET:  # a module left out of this run is not judged
            failing.append(module)
            unexplained += [name for name, _, reason in rows if reason.startswith(NEEDS_WORK)]
    if ran:  # no mutants/ folder: nothing ran, the page stays as it is
        (root / PAGE).write_text(page_text(sections), encoding="utf-8")
    if unexplained:
        print(f"\n{len(unexplained)} survivors in modules under {TARGET:.0f}% have no reason in")
        print(f"{PAGE} (see one with: .venv/bin/mutmut show NAME):")
        for name in unexplained:
            print(f"  {name}")
        return 1
    if failing:
        print(f"\nunder {TARGET:.0f}%, every survivor explained in {PAGE}: {', '.join(failing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
