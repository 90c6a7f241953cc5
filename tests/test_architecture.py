"""The packages import in one direction: every import in src/cnnlab/, at module level or
inside a function, against the layers docs/ARCHITECTURE.md lists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "cnnlab"


def layers(text: str) -> dict[str, int]:
    """`3. \\`config\\`: ...` lines → {"config": 3}; every unit named once."""
    order: dict[str, int] = {}
    for number, names in re.findall(r"^(\d+)\. ((?:`\w+`(?:, )?)+):", text, re.MULTILINE):
        for name in re.findall(r"`(\w+)`", names):
            assert name not in order, f"{name} is in two layers"
            order[name] = int(number)
    return order


def unit_of(path: Path, root: Path = PACKAGE) -> str:
    """src/cnnlab/training/loop.py → "training"; src/cnnlab/files.py → "files"."""
    return path.relative_to(root).parts[0].removesuffix(".py")


def imported_units(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, unit) of every cnnlab import in the file, wherever it stands."""
    package = ["cnnlab", *path.relative_to(root).parts[:-1]]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolved against the file's package
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            names = [alias.name for alias in node.names]
            modules = [f"{module}.{name}" for name in names] if module == "cnnlab" else [module]
        else:
            continue
        found += [(node.lineno, m.split(".")[1]) for m in modules if m.startswith("cnnlab.")]
    return found


def violations(order: dict[str, int], root: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        here = unit_of(path, root)
        for line, there in imported_units(path, root):
            where = f"{path.relative_to(root)}:{line}"
            if here not in order or there not in order:
                found.append(f"{where}: {here} or {there} is in no layer")
            elif there != here and order[there] >= order[here]:
                found.append(f"{where}: {here} (layer {order[here]}) imports {there} "
                             f"(layer {order[there]})")  # fmt: skip
    return found


def test_every_import_runs_up_the_layers_of_architecture_md():
    order = layers((ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    on_disk = {unit_of(p) for p in PACKAGE.rglob("*.py")}
    assert on_disk <= set(order), f"not in a layer: {sorted(on_disk - set(order))}"
    assert violations(order) == []


@pytest.mark.parametrize(
    ("source", "file", "expected"),
    [
        ("from cnnlab.report.run_report import write_report", "training/outputs.py", "report"),
        ("def f():\n    from cnnlab.cli import options", "report/x.py", "cli"),
        ("import cnnlab.deploy.model_card", "training/x.py", "deploy"),
        ("from cnnlab import api", "training/x.py", "api"),
        ("from ..inspect import arithmetic", "models/shapes.py", "inspect"),
        ("from . import loop", "training/x.py", "training"),
    ],
)
def test_imports_are_found_wherever_they_stand(tmp_path, source, file, expected):
    """The checker sees a function's own imports and relative ones, and names the wrong ones."""
    path = tmp_path / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source + "\n")
    assert [unit for _, unit in imported_units(path, tmp_path)] == [expected]
    order = {"training": 6, "models": 5, "inspect": 7, "report": 8, "cli": 10, "api": 9,
             "deploy": 7}  # fmt: skip
    assert bool(violations(order, tmp_path)) == (expected != "training")


def test_two_packages_of_one_layer_may_not_import_each_other(tmp_path):
    (tmp_path / "inspect").mkdir()
    (tmp_path / "inspect" / "x.py").write_text("from cnnlab.deploy import model_file\n")
    assert violations({"inspect": 7, "deploy": 7}, tmp_path) == [
        "inspect/x.py:1: inspect (layer 7) imports deploy (layer 7)"
    ]
