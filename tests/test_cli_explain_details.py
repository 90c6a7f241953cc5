"""`cnnlab explain RUN [IMAGE...]` (cli/explain.py): the IMAGE files and the options reach the
explanation, a PNG per image is written to --out (else RUN/explain), and the lines printed are
the layer, the file count and folder, one line per file with its caption, and the note of a 1×1
layer.

The run is a checkpoint written by hand (an untrained mnist_cnn at 16×16, whose last max-pool
gives 1×1 maps) on a small npz data set, so nothing is trained; figures are made but not encoded
as PNG (the rendered images are checked in test_explain.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.cli import main
from helpers import learnable_images, write_learnable_npz

CLASSES = ["ant", "bee", "cat", "dog"]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run folder holding best.pt (mnist_cnn, 4 classes, 1×16×16) and, beside it, the npz
    data it names (8 test images) and two image files, a.png and b.png."""
    from cnnlab.report import explanations
    from cnnlab.training.checkpoint import FORMAT, VERSION, save_checkpoint

    monkeypatch.setattr(explanations, "render_png", lambda figure: b"png")
    data = write_learnable_npz(tmp_path / "data", train=8, test=8, size=16)
    torch.manual_seed(0)
    model = cnnlab.create_model("mnist_cnn", num_classes=4, in_channels=1, image_size=16)
    (tmp_path / "run").mkdir()
    save_checkpoint(
        {
            "format": FORMAT, "version": VERSION, "model_name": "mnist_cnn",
            "model_args": dict(model.model_args), "class_names": CLASSES, "mean": [0.1],
            "std": [0.2], "input_shape": [1, 16, 16], "dataset": f"npz:{data}", "config": {},
            "model_state": model.state_dict(), "metrics": [],
        },
        tmp_path / "run" / "best.pt",
    )  # fmt: skip
    pixels, _ = learnable_images(2, 16, 16, num_classes=4, seed=3)
    for name, image in zip(("a.png", "b.png"), pixels, strict=True):
        Image.fromarray(image).save(tmp_path / name)
    return tmp_path / "run"


def explain_cli(capsys, *argv: str) -> list[str]:
    code = main(["explain", *map(str, argv)])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    return out.splitlines()


def test_image_files_are_explained_in_the_order_given_into_out(run, tmp_path, capsys):
    images, out = [tmp_path / "b.png", tmp_path / "a.png"], tmp_path / "why"
    lines = explain_cli(capsys, run, *images, "--out", out)
    found = cnnlab.explain(run, images)
    assert lines == [
        f"Grad-CAM of layer conv2; wrote 2 files to {out}/",
        f"  explain-01-b.png.png  {found.caption(0)}",
        f"  explain-02-a.png.png  {found.caption(1)}",
    ]  # and no note: conv2's maps are 2×2
    assert found.caption(0).startswith("b.png: predicted ")
    assert sorted(path.name for path in out.iterdir()) == [
        "explain-01-b.png.png",
        "explain-02-a.png.png",
    ]
    assert not (run / "explain").exists()


def test_a_layer_of_1x1_maps_gets_a_note_and_the_files_go_to_run_explain(run, tmp_path, capsys):
    lines = explain_cli(capsys, run, tmp_path / "a.png", "--layer", "mp")
    found = cnnlab.explain(run, [tmp_path / "a.png"], layer="mp")
    assert lines == [
        f"Grad-CAM of layer mp; wrote 1 file to {run / 'explain'}/",
        f"  explain-01-a.png.png  {found.caption(0)}",
        "note: layer mp gives 1×1 maps for this input size, so its heatmap cannot say where: "
        "name an earlier layer with a larger output (layer=... / --layer)",
    ]
    assert [path.name for path in (run / "explain").iterdir()] == ["explain-01-a.png.png"]


def test_index_explains_test_images_with_no_image_file_given(run, capsys):
    lines = explain_cli(capsys, run / "best.pt", "--index", "5")
    found = cnnlab.explain(run, index=[5])
    assert found.caption(0).startswith("test image 5: true ")  # a test image's label is known
    assert lines == [
        f"Grad-CAM of layer conv2; wrote 1 file to {run / 'explain'}/",
        f"  explain-01-test_image_5.png  {found.caption(0)}",
    ]
