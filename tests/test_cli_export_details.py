"""`cnnlab export CHECKPOINT` (cli/export.py) without exporting: the ExportConfig its flags make
and hand to cnnlab.deploy.export.export_model, the result's lines printed as they are, and a
missing checkpoint refused before anything is loaded. Real exports, their checks and their
words are test_export.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.config import ExportConfig
from cnnlab.deploy import export

# a TorchScript file checked on random inputs: four lines, the last a note
RESULT = export.ExportResult(
    path=Path("model.torchscript.pt"), card_path=Path("model.json"), format="torchscript",
    checkpoint=Path("run/best.pt"), checked_images=8, real_images=False, dataset="mnist",
    batch_sizes=(1, 8), max_abs_diff=2.5e-7, size_bytes=2048, seconds=0.25,
)  # fmt: skip


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> list:
    """export_model replaced: each config it is given is kept, and it answers RESULT."""
    configs: list = []

    def export_model(cfg):
        configs.append(cfg)
        return RESULT

    monkeypatch.setattr(export, "export_model", export_model)
    return configs


def test_the_flags_reach_export_model_and_its_result_is_printed(exported, tmp_path, capsys):
    run, data, out = tmp_path / "run", tmp_path / "data", tmp_path / "model.torchscript.pt"
    run.mkdir(), data.mkdir()
    argv = ["export", str(run), "--format", "torchscript", "--out", str(out), "--data-dir",
            str(data)]  # fmt: skip
    assert main(argv) == 0
    assert exported == [
        ExportConfig(checkpoint=str(run), format="torchscript", out=str(out), data_dir=str(data))
    ]
    assert capsys.readouterr().out == f"{RESULT}\n"


def test_the_format_is_onnx_unless_given(exported, tmp_path):
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(b"")
    assert main(["export", str(checkpoint)]) == 0
    assert exported == [ExportConfig(checkpoint=str(checkpoint))]
    assert exported[0].format == "onnx" and exported[0].out is None


def test_a_missing_checkpoint_is_refused_before_anything_is_loaded(exported, tmp_path, capsys):
    missing = tmp_path / "nothing.pt"
    assert main(["export", str(missing), "--format", "safetensors"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: checkpoint {missing} does not exist; give a .pt file or a run folder\n"
    assert exported == []
