"""Print mutmut's results per module: mutants, killed, survived, the score, and each survivor.

`make mutation` runs this after `mutmut run`. A survivor named in docs/TESTING.md (its reason
given there) is marked "explained"; the command fails while a module scores under the target
and has a survivor nobody explained, so the habit holds as the code changes.
"""

from __future__ import annotations

import json
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


def main(root: Path = Path(".")) -> int:
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    explained = (root / "docs" / "TESTING.md").read_text()
    header = ("mutants", "killed", "survived", "no tests", "not run", "score")
    print(f"{'module':<34}" + "".join(f" {name:>8}" for name in header))
    failing, unexplained = [], []
    for source in config["only_mutate"]:
        results = module_results(root, source)
        counts = Counter(results.values())
        tried = counts["killed"] + counts["survived"] + counts["no tests"]
        score = 100 * counts["killed"] / tried if tried else 0.0
        module = source.removeprefix("src/").removesuffix(".py").replace("/", ".")
        print(
            f"{module:<34} {len(results):>8} {counts['killed']:>8} {counts['survived']:>8} "
            f"{counts['no tests']:>8} {counts['not run']:>8} {score:>7.1f}%"
        )
        missed = [name for name, s in results.items() if s in ("survived", "no tests")]
        if score < TARGET:
            failing.append(module)
            unexplained += [name for name in missed if name not in explained]
    if unexplained:
        print(f"\n{len(unexplained)} survivors in modules under {TARGET:.0f}% that docs/TESTING.md")
        print("does not explain (see one with: .venv/bin/mutmut show NAME):")
        for name in unexplained:
            print(f"  {name}")
        return 1
    if failing:
        print(f"\nunder {TARGET:.0f}%, explained in docs/TESTING.md: {', '.join(failing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
