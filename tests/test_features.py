"""`cnnlab features`: the first conv layer's filters and one image's feature maps as PNG files,
the Python API behind it, and the image reading it shares with other commands (data/images.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnlab
from cnnlab.cli import main
from cnnlab.data.images import normalize, read_image
from cnnlab.errors import DataFormatError, ModelError
from cnnlab.figures import DPI, LABEL_HEIGHT, TILE, TITLE, grid_layout, render_png
from cnnlab.inspect import conv_filters, feature_maps, plot_feature_maps, plot_filters
from cnnlab.inspect.features import INPUT_SIZE, maps_filename, write_features
from cnnlab.training.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    rebuild_model,
    save_checkpoint,
)
from helpers import write_learnable_npz

INPUT_PIXELS = (round(INPUT_SIZE[0] * DPI), round(INPUT_SIZE[1] * DPI))


def _train(root: Path, model: str, **data: int) -> Path:
    npz = write_learnable_npz(root / f"npz-{model}", **data)
    cnnlab.train(
        model=model, dataset=f"npz:{npz}", epochs=1, batch_size=32, out_dir=str(root / "runs"),
        name=model, progress="none", lr=0.05, tensorboard=False,
    )  # fmt: skip
    return root / "runs" / model


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny one-epoch runs: lenet on 28×28 grey images (the demo's model) and mnist_cnn on
    16×16 RGB ones (3-channel filters)."""
    root = tmp_path_factory.mktemp("features")
    return {
        "lenet": _train(root, "lenet", train=64, test=32, classes=4),
        "rgb": _train(root, "mnist_cnn", train=32, test=8, classes=3, size=16, channels=3),
    }


def _called_convs(model: nn.Module, x: torch.Tensor) -> int:
    """How many Conv2d calls one forward pass makes, counted independently of features.py."""
    calls = []
    handles = [
        m.register_forward_hook(lambda *_: calls.append(1))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model(x[None])
    for handle in handles:
        handle.remove()
    return len(calls)


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()  # a whole, valid PNG
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_a_lenet_run_gets_its_filters_input_and_one_maps_png_per_conv_layer(runs, capsys):
    run = runs["lenet"]
    assert main(["features", str(run)]) == 0
    out = run / "features"
    names = ["input.png", "filters.png", "maps-01-0.png", "maps-02-3.png"]
    assert capsys.readouterr().out.splitlines() == [
        f"wrote 4 files to {out}/",
        *(f"  {name}" for name in names),
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    state = load_checkpoint(run / "best.pt")
    model = rebuild_model(state)
    x = torch.zeros(tuple(state["input_shape"]))
    assert len(list(out.glob("maps-*.png"))) == _called_convs(model, x) == 2
    # LeNet: 6 filters of 1×5×5, maps 6×28×28 and 16×10×10
    assert _png_size(out / "filters.png") == grid_layout(6).pixels == (600, 320)
    assert _png_size(out / "maps-01-0.png") == grid_layout(6).pixels
    assert _png_size(out / "maps-02-3.png") == grid_layout(16).pixels == (600, 580)
    assert _png_size(out / "input.png") == INPUT_PIXELS
    # small enough for the run's HTML report (2 MB for the whole page)
    assert sum((out / name).stat().st_size for name in names) < 150_000


def test_titles_number_the_layers_as_the_files_do_and_every_text_is_legible(runs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from cnnlab.inspect.features import feature_figures

    state = load_checkpoint(runs["lenet"] / "best.pt")
    pixels = torch.zeros(tuple(state["input_shape"]), dtype=torch.uint8)
    figures = dict(feature_figures(rebuild_model(state), state, pixels, "input: zeros"))
    # LeNet's convs are the modules 0 and 3: conv layers 1 and 2 of 2, maps-01 and maps-02
    expected = {
        "filters.png": "conv layer 1 of 2 (module 0): 6 filters, each 1×5×5",
        "maps-01-0.png": "conv layer 1 of 2 (module 0): output 6×28×28 (C×H×W)",
        "maps-02-3.png": "conv layer 2 of 2 (module 3): output 16×10×10 (C×H×W)",
    }
    for name, title in expected.items():
        fig = figures[name]
        assert fig.texts[-2].get_text() == title  # the title, then the subtitle
        renderer = FigureCanvasAgg(fig).get_renderer()
        width = fig.get_figwidth() * fig.dpi
        for text in fig.texts:  # shown at its pixel size by the report: 11 pixels at least
            assert text.get_fontsize() * fig.dpi / 72 >= 11, (name, text.get_text())
            box = text.get_window_extent(renderer)
            assert box.x0 >= 0 and box.x1 <= width, (name, text.get_text())


def test_each_tile_shows_its_map_pixel_for_pixel():
    import io

    from cnnlab.figures import fit
    from cnnlab.inspect.features import _coloured

    maps = {"0": torch.randn(6, 28, 28)}
    [fig] = plot_feature_maps(maps)
    png = np.asarray(Image.open(io.BytesIO(render_png(fig))))
    assert png.shape == (*grid_layout(6).pixels[::-1], 3)
    side, band, pad = round(TILE * DPI), round(TITLE * DPI), 4  # pixels: 130, 60
    tile = fit(_coloured(maps["0"][4], "viridis"), side - LABEL_HEIGHT - pad, side - 2 * pad)
    assert tile.shape == (84, 84, 3)  # 28×28 drawn 3× as large
    # tile 4: second row, second column of a 3-column grid centred in 600 pixels
    top = band + side + LABEL_HEIGHT + (side - LABEL_HEIGHT - pad - 84) // 2
    left = (600 - 3 * side) // 2 + side + (side - 84) // 2
    assert np.array_equal(png[top : top + 84, left : left + 84], tile)


def test_a_run_folder_gives_best_pt_else_last_pt(tmp_path):
    (tmp_path / "last.pt").touch()
    assert checkpoint_path(tmp_path) == (tmp_path / "last.pt", tmp_path)
    (tmp_path / "best.pt").touch()
    assert checkpoint_path(tmp_path) == (tmp_path / "best.pt", tmp_path)
    assert checkpoint_path(tmp_path / "last.pt") == (tmp_path / "last.pt", tmp_path)
    assert maps_filename(3, "layer1.0.conv2") == "maps-03-layer1_0_conv2.png"


def test_feature_maps_are_the_conv_outputs_on_the_normalised_image(runs):
    state = load_checkpoint(runs["lenet"] / "last.pt")
    model = rebuild_model(state)
    pixels = torch.from_numpy(np.load(Path(state["dataset"][4:]) / "test.npz")["x"][:2])[:, None]
    x = normalize(pixels, state["mean"], state["std"])  # (2, 1, 28, 28)
    model.train()
    maps = feature_maps(model, x[0])
    assert model.training and all(m.training for m in model.modules())  # mode restored
    assert list(maps) == ["0", "3"]
    with torch.no_grad():
        assert torch.equal(maps["0"], model[0](x[:1])[0])  # LeNet's first conv
        model.eval()
        assert torch.equal(maps["3"], model[:4](x[:1])[0])  # conv, sigmoid, pool, conv
    assert maps["3"].shape == (16, 10, 10)
    batch = feature_maps(model, x)  # a batch gives batched maps
    assert batch["0"].shape == (2, 6, 28, 28)
    torch.testing.assert_close(batch["0"][0], maps["0"])
    assert torch.equal(conv_filters(model), model[0].weight.detach())


def test_a_module_called_twice_is_shown_twice():
    conv = nn.Conv2d(1, 1, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    assert list(feature_maps(model, torch.randn(1, 5, 5))) == ["0", "0#2"]
    assert feature_maps(nn.Sequential(nn.Flatten()), torch.randn(1, 2, 2)) == {}
    with pytest.raises(ModelError, match="no Conv2d"):
        plot_filters(nn.Sequential(nn.Flatten()))


def test_normalize_is_the_loaders_formula():
    from cnnlab.data import TensorLoader

    images = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.25)
    x = normalize(images, mean, std)
    expected = (images.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected.float())
    loader = TensorLoader(images, torch.zeros(4), batch_size=4, mean=mean, std=std)
    assert torch.equal(next(iter(loader))[0], x)  # bit for bit what training saw
    assert torch.equal(normalize(images[1], mean, std), x[1])


def test_an_image_file_reads_back_as_its_pixels(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (9, 7), dtype=np.uint8)
    colour = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(colour).save(tmp_path / "colour.png")
    got = read_image(tmp_path / "grey.png", 1, (9, 7))
    assert got.dtype == torch.uint8 and torch.equal(got, torch.from_numpy(grey)[None])
    assert torch.equal(
        read_image(tmp_path / "colour.png", 3, (9, 7)), torch.from_numpy(colour).permute(2, 0, 1)
    )
    # converted as folder: data sets are: PIL's "L" and "RGB", then a bilinear resize
    as_grey = Image.fromarray(colour).convert("L")
    assert torch.equal(
        read_image(tmp_path / "colour.png", 1, (9, 7))[0], torch.from_numpy(np.array(as_grey))
    )
    assert torch.equal(
        read_image(tmp_path / "grey.png", 3, (9, 7)), torch.from_numpy(grey)[None].expand(3, 9, 7)
    )
    small = np.array(Image.fromarray(colour).resize((4, 5), Image.Resampling.BILINEAR))
    assert torch.equal(
        read_image(tmp_path / "colour.png", 3, (5, 4)), torch.from_numpy(small).permute(2, 0, 1)
    )
    assert read_image(tmp_path / "grey.png", 1, 4).shape == (1, 4, 4)
    # an opaque alpha channel carries nothing: accepted, and dropped
    rgba = np.dstack([colour, np.full((9, 7), 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    opaque = read_image(tmp_path / "opaque.png", 3, (9, 7))
    assert torch.equal(opaque, read_image(tmp_path / "colour.png", 3, (9, 7)))


@pytest.mark.parametrize(
    "make, channels, expected",
    [
        (lambda p: p, 1, "does not exist"),
        (lambda p: p.parent, 1, "is a folder"),
        (lambda p: (p.write_text("not a picture"), p)[1], 1, "not an image file"),
        (lambda p: (p.write_bytes(_png_bytes()[:60]), p)[1], 1, "not a readable image"),
        (lambda p: _save(p, np.zeros((4, 4, 4), np.uint8)), 3, "transparent pixels"),
        (lambda p: _save(p, np.full((4, 4), 300, np.uint16)), 1, "16-bit"),
        (lambda p: _save(p, np.zeros((4, 4), np.uint8)), 4, "4-channel"),
    ],
    ids=["missing", "folder", "text", "truncated", "transparent", "16-bit", "4-channel model"],
)
def test_what_cannot_be_read_or_converted_is_one_line(tmp_path, make, channels, expected):
    path = make(tmp_path / "image.png")
    with pytest.raises(DataFormatError) as info:
        read_image(path, channels, (4, 4))
    assert expected in str(info.value) and "\n" not in str(info.value)


def _png_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)).save(
        buffer, format="png"
    )
    return buffer.getvalue()


def _save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_an_image_file_through_an_rgb_model(runs, tmp_path, capsys):
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 40, 3), np.uint8)).save(photo)
    out = tmp_path / "out"
    assert main(["features", str(runs["rgb"]), "--image", str(photo), "--out", str(out)]) == 0
    assert f"wrote 4 files to {out}/" in capsys.readouterr().out
    assert _png_size(out / "filters.png") == grid_layout(10).pixels  # 10 RGB filters
    assert _png_size(out / "maps-01-conv1.png") == grid_layout(10).pixels
    assert _png_size(out / "maps-02-conv2.png") == grid_layout(20).pixels
    assert not (runs["rgb"] / "features").exists()
    # the Python API gives the same files
    paths = write_features(runs["rgb"], index=3, out=tmp_path / "api", device="cpu")
    assert [p.name for p in paths] == [
        "input.png",
        "filters.png",
        *(p.name for p in sorted(out.glob("maps-*"))),
    ]


@pytest.mark.parametrize(
    "image, expected",
    [("missing.png", "does not exist"), ("notes.txt", "not an image file")],
)
def test_a_bad_image_file_is_one_line_and_exit_2(runs, tmp_path, capsys, image, expected):
    (tmp_path / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    argv = ["features", str(runs["lenet"]), "--image", str(tmp_path / image), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0]
    assert not out.exists()  # nothing written, not even the folder


def test_a_model_without_conv_layers_is_one_line_and_exit_2(runs, tmp_path, monkeypatch, capsys):
    from cnnlab.models import registry

    def mlp(*, num_classes=4, in_channels=1, image_size=(28, 28), init="default"):
        return nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], num_classes)
        )

    info = registry.ModelInfo("test_mlp", mlp, (1, 28, 28), 4, "a model without convs", "000")
    monkeypatch.setitem(registry._MODELS, "test_mlp", info)
    state = load_checkpoint(runs["lenet"] / "last.pt")
    model = registry.create_model("test_mlp", num_classes=4)
    state.update(model_name="test_mlp", model_args=model.model_args, model_state=model.state_dict())
    save_checkpoint(state, tmp_path / "mlp.pt")
    assert main(["features", str(tmp_path / "mlp.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test_mlp, which has no Conv2d layer" in err[0]
    assert not (tmp_path / "features").exists()


def test_wide_layers_are_capped_at_64_tiles():
    import io

    [fig] = plot_feature_maps({"layer4.1.conv2": torch.randn(256, 3, 3)})
    texts = [text.get_text() for text in fig.texts]
    assert [t for t in texts if t.startswith("channel ")] == [f"channel {c}" for c in range(64)]
    assert any("first 64 of 256" in t for t in texts)
    with Image.open(io.BytesIO(render_png(fig))) as image:
        assert image.size == grid_layout(64).pixels == (1040, 1100)  # fits a report's column
    # a first conv on 2-channel images: one tile per input channel, a filter per row
    fig = plot_filters(nn.Sequential(nn.Conv2d(2, 40, 3)))
    texts = [text.get_text() for text in fig.texts]
    assert texts[:3] == ["f0 ch 0", "f0 ch 1", "f1 ch 0"] and "f31 ch 1" in texts
    assert any("first 32 shown" in t for t in texts)
    assert grid_layout(64, 2).pixels == (600, 4220)
