"""`cnnlab features RUN` (cli/features.py) without drawing: the FeaturesConfig its flags make
and hand to cnnlab.inspect.features.write_features, and the lines it prints of the files that
wrote (their folder, then each name). Drawn filters and feature maps are test_features.py's and
test_features_run_details.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.config import FeaturesConfig
from cnnlab.inspect import features

NAMES = ("input.png", "filters.png", "maps-01-conv1.png", "maps-02-conv2.png")


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list:
    """write_features replaced: each config it is given is kept, and it answers with the four
    PNGs of NAMES in the config's --out (else RUN/features)."""
    configs: list = []

    def write_features(cfg):
        configs.append(cfg)
        folder = cfg.out or f"{cfg.checkpoint}/features"
        return [Path(folder) / name for name in NAMES]

    monkeypatch.setattr(features, "write_features", write_features)
    return configs


def test_the_flags_reach_write_features_and_every_file_is_named(drawn, tmp_path, capsys):
    run, image, data = tmp_path / "run", tmp_path / "seven.png", tmp_path / "data"
    run.mkdir(), data.mkdir(), image.write_bytes(b"png")
    out = tmp_path / "maps"
    argv = ["features", str(run), "--image", str(image), "--out", str(out), "--dataset",
            "mnist", "--data-dir", str(data), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    given = FeaturesConfig(
        checkpoint=str(run), image=str(image), out=str(out), dataset="mnist",
        data_dir=str(data), device="cpu",
    )  # fmt: skip
    assert drawn == [given]
    assert capsys.readouterr().out == (
        f"wrote 4 files to {out}/\n  input.png\n  filters.png\n  maps-01-conv1.png\n"
        "  maps-02-conv2.png\n"
    )


def test_a_test_image_index_and_the_defaults_are_handed_on(drawn, tmp_path, capsys):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"")
    assert main(["features", str(checkpoint), "--index", "5"]) == 0
    assert drawn == [FeaturesConfig(checkpoint=str(checkpoint), index=5)]
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"wrote 4 files to {checkpoint}/features/"


def test_a_missing_checkpoint_is_refused_before_anything_is_drawn(drawn, tmp_path, capsys):
    missing = tmp_path / "nothing"
    assert main(["features", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: checkpoint {missing} does not exist; give a .pt file or a run folder\n"
    assert drawn == []
