"""Run the tutorial notebooks (docs/tutorials/*.ipynb) under a real Jupyter kernel.

    python tools/notebooks.py                       # `make notebooks`: every tutorial, full size
    python tools/notebooks.py 01 --set EPOCHS=1     # one of them, with a setting changed

Each notebook runs in a fresh kernel in its own folder (runs/tutorials/<name>/, where its runs
go), and the executed copy, outputs and pictures included, is written there beside them; the
notebooks in docs/ stay as they are stored, without outputs. `--set NAME=VALUE` adds a cell after
the one tagged "parameters" (as papermill does): the test suite runs every tutorial so, on a few
fake images and one epoch, all five in one kernel (run_in_one_kernel). A cell that fails
stops its notebook with the cell's traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "docs" / "tutorials"


def tutorials(names: list[str] | None = None) -> list[Path]:
    """The tutorial notebooks, in order; `names`: those whose file name starts with one."""
    found = sorted(TUTORIALS.glob("*.ipynb"))
    if names:
        found = [path for path in found if any(path.name.startswith(n) for n in names)]
    return found


def with_settings(notebook, settings: dict[str, str], code: str = ""):
    """The notebook with a cell setting each NAME = VALUE, then running `code`, after its
    "parameters" cell."""
    import nbformat

    if not settings and not code:
        return notebook
    tagged = [k for k, cell in enumerate(notebook.cells) if "parameters" in _tags(cell)]
    if not tagged:
        raise SystemExit("the notebook has no cell tagged 'parameters' to set values after")
    lines = [f"{name} = {value}" for name, value in settings.items()]
    source = "\n".join([*lines, code] if code else lines)
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(tagged[0] + 1, cell)
    return notebook


def _tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def run_notebook(
    path: Path,
    folder: Path,
    settings: dict[str, str] | None = None,
    code: str = "",
    timeout: int = 1800,
):
    """Execute the notebook at `path` in a fresh kernel whose working folder is `folder`, with
    `settings` and `code` after its parameters; return the executed notebook (nbclient raises
    CellExecutionError at a failing cell)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = with_settings(nbformat.read(path, as_version=4), settings or {}, code)
    folder.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": folder}}
    )
    client.execute()
    return notebook


def run_in_one_kernel(
    paths: list[Path],
    folders: list[Path],
    settings: dict[str, str] | None = None,
    code: str = "",
    timeout: int = 1800,
):
    """Execute the notebooks one after another in one kernel, each after a cell that empties
    the kernel's namespace (`%reset -f`) and moves it to the notebook's folder; yield each
    executed notebook. What a fresh kernel each would run, but for the modules already imported:
    the test suite's way, as a kernel's start and torch's import cost seconds each time."""
    import nbformat
    from nbclient import NotebookClient

    client = NotebookClient(nbformat.v4.new_notebook(), timeout=timeout, kernel_name="python3")
    with client.setup_kernel():
        for path, folder in zip(paths, folders, strict=True):
            folder.mkdir(parents=True, exist_ok=True)
            notebook = with_settings(nbformat.read(path, as_version=4), settings or {}, code)
            # what is left after the reset's collection lives on (modules): frozen, the next
            # reset's collection skips it (0.45 s each, walking torch's objects again)
            fresh = f"%reset -f\n__import__('gc').freeze()\n__import__('os').chdir({str(folder)!r})"
            notebook.cells.insert(0, nbformat.v4.new_code_cell(fresh))
            client.nb = notebook
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)
            yield notebook


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks whose file name starts so")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--out", default=str(ROOT / "runs" / "tutorials"))
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    paths = tutorials(args.names)
    if not paths:
        raise SystemExit(f"no tutorial notebook in {TUTORIALS} matches {args.names}")
    for path in paths:
        folder = Path(args.out) / path.stem
        start = time.perf_counter()
        executed = run_notebook(path, folder, settings)
        nbformat.write(executed, folder / path.name)
        print(f"{path.name}: ran in {time.perf_counter() - start:.0f} s -> {folder / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
