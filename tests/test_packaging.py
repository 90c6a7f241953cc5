"""cnnlab installed like any package: the recipes ship inside it and are found by name (or a
file by its path), `cnnlab recipes` lists them, and a wheel installed into a fresh environment
outside the checkout trains one of them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.config import load_recipe
from cnnlab.config.recipes import find_recipe, shipped_recipes

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "cnnlab" / "recipes"
RECIPE_FILES = sorted(SHIPPED.glob("*.toml"))
LENET = "lenet-fashion-mnist"  # seed 001's recipe: lr 0.9, init xavier, batch 256


def purpose(path: Path) -> str:
    """What `cnnlab recipes` must show for the file: the first sentence of its opening comment
    (the file starts with one), on one line."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# "), path
    comment = re.match(r"((?:#[^\n]*\n)+)", text).group(1)
    paragraph = " ".join(line.removeprefix("#").strip() for line in comment.splitlines())
    return re.match(r"(.*?\.)(?:\s|$)", paragraph + " ").group(1)


def test_the_recipes_live_in_the_package_and_nowhere_else():
    assert len(RECIPE_FILES) >= 15
    assert not (ROOT / "recipes").exists()  # moved into src/cnnlab/recipes/
    found = shipped_recipes()
    assert list(found) == sorted(path.stem for path in RECIPE_FILES)  # in name order
    for path in RECIPE_FILES:
        assert Path(str(found[path.stem])) == path


def test_a_recipe_is_found_by_name_with_or_without_toml_and_by_path(tmp_path, monkeypatch):
    by_name = load_recipe(LENET)
    assert by_name["lr"] == 0.9 and by_name["init"] == "xavier"
    assert load_recipe(f"{LENET}.toml") == by_name
    assert load_recipe(SHIPPED / f"{LENET}.toml") == by_name
    assert load_recipe(str(SHIPPED / f"{LENET}.toml")) == by_name
    # a file of one's own, by a path relative to where the command runs
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my").mkdir()
    (tmp_path / "my" / "own.toml").write_text('model = "mnist_cnn"\nlr = 0.5\n')
    assert load_recipe("my/own.toml") == {"model": "mnist_cnn", "lr": 0.5}
    # a file that is there wins over the shipped recipe of the same name
    (tmp_path / f"{LENET}.toml").write_text("lr = 0.2\n")
    assert find_recipe(f"{LENET}.toml") == Path(f"{LENET}.toml")
    assert load_recipe(f"{LENET}.toml") == {"lr": 0.2}
    assert load_recipe(LENET) == by_name  # no file of that name here: the shipped one


@pytest.mark.parametrize("given", [LENET, f"{LENET}.toml", f"my/{LENET}.toml"])
def test_train_runs_a_recipe_by_name_or_path_and_names_the_run_after_it(
    given, fake_data_root, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    if "/" in given:  # a copy of the recipe, given by its path
        (tmp_path / "my").mkdir()
        shutil.copy(SHIPPED / f"{LENET}.toml", tmp_path / given)
    argv = [
        "train", "--recipe", given, "--epochs", "1", "--data-dir", str(fake_data_root),
        "--no-download", "--out-dir", "runs", "--progress", "none", "--no-tensorboard",
        "--no-report",
    ]  # fmt: skip
    assert main(argv) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert re.fullmatch(rf"{LENET}-\d{{8}}-\d{{6}}.*", run.name), run.name
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["lr"] == 0.9 and config["init"] == "xavier" and config["epochs"] == 1


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("lenet", "did you mean lenet-fashion-mnist?"),
        ("lenet-fashion-mnst.toml", "did you mean lenet-fashion-mnist"),
        ("no-such-thing", "is neither a file nor a shipped recipe"),
        ("my/missing.toml", "recipe my/missing.toml does not exist"),
    ],
)
def test_an_unknown_recipe_is_one_line_and_exit_code_2(
    given, expected, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--recipe", given, "--out-dir", "runs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err and "`cnnlab recipes` lists them" in err
    assert not (tmp_path / "runs").exists()


def table_rows(out: str) -> dict[str, str]:
    """name → purpose, from rich's table (unicode or ASCII borders)."""
    rows: dict[str, str] = {}
    name = None
    for line in out.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│|]", line)[1:-1]]
        if len(cells) != 2 or cells[0] == "name":
            continue
        if cells[0]:
            name = cells[0]
            rows[name] = cells[1]
        elif name is not None and cells[1]:  # a purpose wrapped onto the next line
            rows[name] += " " + cells[1]
    return rows


def test_recipes_lists_every_shipped_file_with_its_purpose(capsys):
    assert main(["recipes"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows == {path.stem: purpose(path) for path in RECIPE_FILES}


def test_recipes_filters_by_pattern(capsys):
    assert main(["recipes", "*modern"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert set(rows) == {path.stem for path in RECIPE_FILES if path.stem.endswith("modern")}
    assert len(rows) == 4


def _run(command: list, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_trains_a_shipped_recipe(tmp_path, fake_data_root):
    """Build a wheel, install it into a fresh venv, train from a folder outside the checkout.
    About 4 s on 2 cores (the build and install about 1.5 s, the training run about 2 s).
    No network: no build isolation, no index; the fresh venv borrows the repository venv's
    third-party packages (torch ...) but not its editable cnnlab."""
    # the build runs on a copy, so its build/ and egg-info never land in the checkout
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    wheels = tmp_path / "wheels"
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, source])
    (wheel,) = wheels.glob("cnnlab-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata_lines = archive.read(metadata).decode().splitlines()
    in_wheel = {name.split("/")[-1] for name in names if name.startswith("cnnlab/recipes/")}
    assert in_wheel == {path.name for path in RECIPE_FILES}
    assert "Provides-Extra: onnx" in metadata_lines  # pip install 'cnnlab[onnx]'
    assert any(line.startswith("Requires-Dist: onnxruntime") and 'extra == "onnx"' in line
               for line in metadata_lines)  # fmt: skip

    # a fresh venv; a path line in a .pth adds the folder without running its own .pth files,
    # so the editable install's __editable__ .pth (which adds src/) stays out
    fresh = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", fresh])
    python = fresh / "bin" / "python"
    site = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip()
    )
    (site / "repo-venv-packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = "import importlib.util as u; print(u.find_spec('cnnlab'), u.find_spec('torch') is None)"
    assert _run([python, "-c", probe], cwd=elsewhere).split() == ["None", "False"]

    _run([*pip, "--python", python, "install", "--no-deps", "--no-index", "--ignore-installed",
          wheel])  # fmt: skip
    where = _run([python, "-c", "import cnnlab; print(cnnlab.__file__)"], cwd=elsewhere).strip()
    where = Path(where).resolve()
    assert where == (site / "cnnlab" / "__init__.py").resolve()
    assert not where.is_relative_to(ROOT)

    cnnlab = fresh / "bin" / "cnnlab"
    listing = _run([cnnlab, "recipes"], cwd=elsewhere)
    assert LENET in listing and purpose(SHIPPED / f"{LENET}.toml") in listing
    _run([cnnlab, "train", "--recipe", LENET, "--epochs", "1", "--data-dir", fake_data_root,
          "--no-download", "--out-dir", "runs", "--progress", "none", "--no-tensorboard",
          "--no-report"], cwd=elsewhere)  # fmt: skip
    (run,) = (elsewhere / "runs").iterdir()
    assert run.name.startswith(f"{LENET}-")
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["lr"] == 0.9 and config["init"] == "xavier" and config["epochs"] == 1
    assert (run / "best.pt").is_file()
