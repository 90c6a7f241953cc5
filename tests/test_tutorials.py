"""The tutorial notebooks (docs/tutorials/): each runs without error under a real Jupyter kernel,
on fake data in the upstream formats and one epoch, through tools/notebooks.py (`make notebooks`
runs them at full size); each is stored without outputs; and the LeNet one shows its training
live, as d2l's Animator does: one output area of curves and a table, not a line per epoch."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

from helpers import write_cifar_files, write_mnist_files

TOOL = Path(__file__).resolve().parent.parent / "tools" / "notebooks.py"
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


def _tool():
    spec = importlib.util.spec_from_file_location("notebooks_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


notebooks = _tool()
TUTORIALS = notebooks.tutorials()


# no report.html at the end of a run, as everywhere in the suite (conftest.py: drawing one takes
# seconds, and test_report.py checks them); what a user running the notebook sees is otherwise
# the same, with one epoch
NO_REPORTS = "import cnnlab.api\ncnnlab.api.report_run = lambda run_dir, cfg, data=None: None"


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MNIST, Fashion-MNIST and CIFAR-10 in their upstream formats, a few images each."""
    root = tmp_path_factory.mktemp("tutorial-data")
    write_mnist_files(root / "mnist", seed=0)
    write_mnist_files(root / "fashion-mnist", seed=10)
    write_cifar_files(root / "cifar-10-batches-py")
    return root


def test_there_is_a_tutorial_for_each_seed_and_each_is_stored_without_outputs():
    assert [path.name[:2] for path in TUTORIALS] == ["01", "02", "03", "04", "05"]
    for path in TUTORIALS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert all(cell.outputs == [] and cell.execution_count is None for cell in code), path
        tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
        assert len(tagged) == 1 and "EPOCHS = " in tagged[0].source, path


def test_every_tutorial_runs_under_a_kernel(fake_data, tmp_path, monkeypatch):
    """All five in one kernel, its namespace emptied before each (tools/notebooks.py says why);
    every cell runs without error, and each notebook's runs go to its own folder."""
    monkeypatch.setenv("CNNLAB_DATA", str(fake_data))  # the kernel inherits the environment
    folders = [tmp_path / path.stem for path in TUTORIALS]
    ran = notebooks.run_in_one_kernel(TUTORIALS, folders, {"EPOCHS": "1"}, NO_REPORTS, 300)
    for path, folder, executed in zip(TUTORIALS, folders, ran, strict=True):
        errors = [
            output
            for cell in executed.cells
            for output in cell.get("outputs", [])
            if output.output_type == "error"
        ]
        assert not errors, path.name
        assert (folder / "runs").is_dir(), path.name  # its runs went to its own folder
        if path.name.startswith("01"):
            check_live_training(executed)


def check_live_training(executed) -> None:
    """The training cell's output: the bar's area (empty once the run ends) and one board of
    the curves and the epochs table, then the run's closing lines; no line per epoch."""
    cell = next(cell for cell in executed.cells if "cnnlab.train(" in cell.source)
    shown = [output for output in cell.outputs if output.output_type == "display_data"]
    assert len(shown) == 2
    bar, board = (output.data["text/html"] for output in shown)
    assert bar == ""
    assert board.count('<img src="data:image/png;base64,') == 1
    rows = re.findall(r"<tr>(.*?)</tr>", board.split("<tbody>")[-1])
    assert len(rows) == 1  # one epoch
    text = "".join(output.text for output in cell.outputs if output.output_type == "stream")
    assert "run directory: runs/tutorial-lenet" in text
    assert "train_loss" not in text and "test_acc" not in text  # no progress lines
