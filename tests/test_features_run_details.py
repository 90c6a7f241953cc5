"""`cnnlab features` end to end (inspect/features.py): which conv layers are found and how they are
named, the hooks that catch their outputs and the model's own output, the test image picked (its
data set, its label's name, the index refused), the subtitle of input.png, and the files
write_features writes (their names, their folder, the refusals, each one line).

The models here are hand-made (a conv or two, a few pixels) and the figures are checked through
matplotlib's objects (their texts), not pixels; write_features runs on a copy of the session's
tiny_run checkpoint with render_png replaced, so nothing is drawn. test_features.py checks the
drawn PNGs. Written because mutmut's survivors of features.py showed these paths untested.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.config import FeaturesConfig
from cnnlab.data.images import normalize
from cnnlab.errors import CheckpointError, ConfigError, ModelError
from cnnlab.figures import shorten
from cnnlab.inspect import features
from cnnlab.inspect.features import (
    _test_image,
    conv_filters,
    conv_layers,
    feature_figures,
    feature_maps,
    maps_filename,
    run_with_hooks,
    write_features,
)
from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from helpers import relocate_checkpoint, write_learnable_npz

TINY_FILES = ["input.png", "filters.png", "maps-01-conv1.png", "maps-02-conv2.png"]


# --- layers and hooks -----------------------------------------------------------------------


def test_a_bare_conv_is_the_layer_named_model():
    conv = nn.Conv2d(1, 2, 3)
    assert conv_layers(conv) == [("model", conv)]
    assert list(feature_maps(conv, torch.randn(1, 5, 5))) == ["model"]


class _Pair(nn.Module):
    """Two convs defined in the opposite order to the one forward calls them in; `early` is
    called twice. Returns a tuple, as a detection model would: no logits to read."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Conv2d(2, 3, 1)
        self.early = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        y = self.early(x)
        return self.late(y), self.early(x)


def test_the_output_of_a_tuple_model_is_none_and_of_a_classifier_its_logits():
    x = torch.randn(1, 5, 5)
    maps, output = run_with_hooks(_Pair(), x)
    assert list(maps) == ["early", "late", "early#2"] and output is None
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(18, 4))
    with torch.no_grad():
        expected = model(x[None])
    maps, output = run_with_hooks(model, x)  # one image: one row of logits
    assert output.shape == (4,) and torch.equal(output, expected[0])
    batch = torch.randn(3, 1, 5, 5)
    maps, output = run_with_hooks(model, batch)  # a batch: a row per image
    assert output.shape == (3, 4) and maps["0"].shape == (3, 2, 3, 3)


def test_filters_of_a_second_call_are_the_modules_and_an_unknown_layer_names_the_others():
    model = _Pair()
    # "early#2" is the second output of the module "early": the same weights
    assert torch.equal(conv_filters(model, "early#2"), model.early.weight.detach())
    with pytest.raises(ModelError) as info:
        conv_filters(model, "middle")
    assert str(info.value) == "no Conv2d named 'middle'; the conv layers are late, early"
    with pytest.raises(ModelError) as info:
        conv_filters(nn.Sequential(nn.Flatten()))
    assert str(info.value) == "Sequential has no Conv2d layer: no filters to show"


def test_a_maps_file_keeps_capital_letters_and_replaces_dots():
    assert maps_filename(2, "Block.Conv#2") == "maps-02-Block_Conv_2.png"


# --- feature_figures: the subtitle and the figures of one image ---------------------------


STATE = {"mean": [0.5], "std": [0.25], "class_names": ["ant", "bee", "cat"], "model_name": "tiny"}


def _classifier(in_channels: int, outputs: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(in_channels, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, outputs)
    )


def _texts(fig) -> tuple[str, str]:
    """(title, subtitle) of a figure: titles() writes them last."""
    return fig.texts[-2].get_text(), fig.texts[-1].get_text()


def test_input_subtitle_says_grey_its_size_the_label_and_the_prediction():
    model = _classifier(1)
    pixels = torch.randint(0, 256, (1, 5, 6), dtype=torch.uint8)
    with torch.no_grad():
        probs = torch.softmax(model(normalize(pixels, [0.5], [0.25])[None])[0], 0)
    predicted = f"{STATE['class_names'][int(probs.argmax())]} ({float(probs.max()):.0%})"
    figures = dict(feature_figures(model, STATE, pixels, "input: mine", "bee"))
    assert list(figures) == ["input.png", "filters.png", "maps-01-0.png"]
    assert _texts(figures["input.png"]) == (
        "input: mine",
        f"as the model sees it: grey 5×6, label bee, predicted {predicted}",
    )
    # no label known: none said
    figures = dict(feature_figures(model, STATE, pixels.numpy(), "input: mine"))
    assert _texts(figures["input.png"])[1] == (
        f"as the model sees it: grey 5×6, predicted {predicted}"
    )


def test_input_subtitle_of_rgb_pixels_and_of_logits_that_are_not_the_classes():
    # 5 outputs for 3 class names: no prediction to name
    model = _classifier(3, outputs=5)
    pixels = torch.randint(0, 256, (3, 4, 7), dtype=torch.uint8)
    state = {**STATE, "mean": [0.5] * 3, "std": [0.25] * 3}
    figures = dict(feature_figures(model, state, pixels, "input: colour"))
    assert _texts(figures["input.png"])[1] == "as the model sees it: RGB 4×7"


def test_filters_are_the_first_conv_called_numbered_as_the_maps_are():
    # "early" is called first but defined second; three maps (early is called twice)
    figures = dict(feature_figures(_Pair(), STATE, torch.zeros(1, 4, 4, dtype=torch.uint8), "x"))
    assert list(figures) == [
        "input.png", "filters.png", "maps-01-early.png", "maps-02-late.png", "maps-03-early_2.png"
    ]  # fmt: skip
    assert _texts(figures["filters.png"])[0] == (
        "conv layer 1 of 3 (module early): 2 filters, each 1×3×3"
    )
    # a model returning a tuple has no prediction
    assert _texts(figures["input.png"])[1] == "as the model sees it: grey 4×4"


def test_a_forward_pass_calling_no_conv_is_one_line():
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return x.flatten(1)

    with pytest.raises(ModelError) as info:
        feature_figures(Unused(), STATE, torch.zeros(1, 2, 2, dtype=torch.uint8), "x")
    assert str(info.value) == "the forward pass of tiny called no Conv2d layer"


# --- _test_image: which image, which label --------------------------------------------------


def _npz(root: Path, size: int = 8, **kwargs) -> str:
    return f"npz:{write_learnable_npz(root, size=size, **kwargs)}"


def _state(dataset: str = "npz:/not/this/one", shape=(1, 8, 8)) -> dict:
    return {
        "config": {}, "dataset": dataset, "mean": [0.5], "std": [0.25], "input_shape": shape,
        "class_names": ["c0", "c1", "c2", "c3"], "model_name": "tiny",
    }  # fmt: skip


def test_a_label_is_named_by_the_checkpoints_classes_else_shown_as_its_number(tmp_path):
    # a 10-class data set for a 4-class model: labels 4 to 9 have no name of the model's
    dataset = _npz(tmp_path / "ten", classes=10, train=10, test=10)
    with np.load(tmp_path / "ten" / "test.npz") as test:
        x, y = test["x"], list(test["y"])
    state = _state()
    names = {0: "c0", 3: "c3", 4: "4", 9: "9"}
    for label, name in names.items():
        index = y.index(label)
        cfg = FeaturesConfig(checkpoint="ckpt.pt", index=index, dataset=dataset)
        pixels, label_name, source = _test_image(cfg, state, tmp_path / "ckpt.pt")
        assert label_name == name, label
        assert torch.equal(pixels, torch.from_numpy(x[index])[None])
        assert source == f"npz:{tmp_path / 'ten'}"


def test_an_index_past_the_test_split_says_the_range(tmp_path):
    dataset = _npz(tmp_path / "four", train=4, test=4)
    cfg = FeaturesConfig(checkpoint="ckpt.pt", index=4, dataset=dataset)
    with pytest.raises(ConfigError) as info:
        _test_image(cfg, _state(), tmp_path / "ckpt.pt")
    assert str(info.value) == (
        f"index 4 is out of range: the test split of {dataset} has 4 images (0 to 3)"
    )
    # an empty test split has no range to give
    with np.load(tmp_path / "four" / "test.npz") as test:
        arrays = {k: v[:0] if k != "class_names" else v for k, v in test.items()}
    np.savez(tmp_path / "four" / "test.npz", **arrays)
    cfg = FeaturesConfig(checkpoint="ckpt.pt", index=0, dataset=dataset)
    with pytest.raises(ConfigError) as info:
        _test_image(cfg, _state(), tmp_path / "ckpt.pt")
    assert str(info.value) == f"index 0 is out of range: the test split of {dataset} has 0 images"


def test_a_folder_data_set_gives_its_decoded_image(tmp_path):
    # folder data sets decode files on demand (not a Split of arrays)
    images = {}
    for split, name in (("train", "a"), ("train", "b"), ("test", "a"), ("test", "b")):
        (tmp_path / split / name).mkdir(parents=True)
        image = np.random.default_rng(len(images)).integers(0, 256, (8, 8), np.uint8)
        Image.fromarray(image).save(tmp_path / split / name / "0.png")
        images[split, name] = image
    cfg = FeaturesConfig(checkpoint="ckpt.pt", index=1, dataset=f"folder:{tmp_path}")
    pixels, label_name, _ = _test_image(cfg, _state(), tmp_path / "ckpt.pt")
    assert label_name == "c1"  # class b: label 1
    assert torch.equal(pixels, torch.from_numpy(images["test", "b"])[None])


def test_a_built_in_data_set_is_read_from_the_data_dir_given(fake_data_root, tmp_path):
    cfg = FeaturesConfig(checkpoint="ckpt.pt", dataset="mnist", data_dir=str(fake_data_root))
    pixels, _, source = _test_image(cfg, _state(shape=(1, 28, 28)), tmp_path / "ckpt.pt")
    assert source == "mnist" and pixels.shape == (1, 28, 28)


# --- write_features: the files of a checkpoint ---------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tiny_run: Path, tmp_path_factory) -> Path:
    """tiny_run's best.pt (mnist_cnn, 1×28×28, class0-class3), alone in a folder of its own."""
    copy = tmp_path_factory.mktemp("features_run") / "run" / "best.pt"
    copy.parent.mkdir()
    shutil.copy(tiny_run / "best.pt", copy)
    return copy


@pytest.fixture
def drawn(monkeypatch) -> list:
    """Figures that write_features makes, kept instead of being drawn as PNGs (b"png")."""
    figures = []
    monkeypatch.setattr(features, "render_png", lambda fig: figures.append(fig) or b"png")
    return figures


def test_a_test_image_of_another_data_set_into_the_folder_given(checkpoint, tmp_path, drawn):
    # a 3-class data set of the same image shape will do for a 4-class model
    dataset = _npz(tmp_path / "three", classes=3, train=6, test=6, size=28)
    label = int(np.load(tmp_path / "three" / "test.npz")["y"][5])
    out = tmp_path / "out"
    paths = write_features(checkpoint, index=5, out=out, dataset=dataset, device="cpu")
    assert paths == [out / name for name in TINY_FILES]
    assert all(p.read_bytes() == b"png" for p in paths)
    assert not (checkpoint.parent / "features").exists()
    title, subtitle = _texts(drawn[0])
    assert title == f"input: test image 5 of {shorten(dataset)}"
    assert subtitle.startswith(f"as the model sees it: grey 28×28, label class{label}, predicted")


def test_an_image_file_through_a_checkpoint_saved_on_a_gpu(checkpoint, tmp_path, drawn):
    # saved on a GPU, it is read onto the CPU (torch.load refuses it without map_location)
    relocate_checkpoint(checkpoint, tmp_path / "gpu.pt")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(photo)
    paths = write_features(tmp_path / "gpu.pt", image=photo, out=tmp_path / "out", device="cpu")
    assert [p.name for p in paths] == TINY_FILES  # index left at 0: no "not both" refusal
    title, subtitle = _texts(drawn[0])
    assert title == "input: photo.png" and ", label" not in subtitle


def test_a_data_set_of_another_image_shape_names_the_checkpoint(checkpoint, tmp_path):
    dataset = _npz(tmp_path / "small")  # 8×8 images for a 28×28 model
    with pytest.raises(CheckpointError) as info:
        write_features(checkpoint, out=tmp_path / "out", dataset=dataset)
    assert str(info.value).startswith(f"{checkpoint} is a mnist_cnn for 4 classes at 1×28×28; ")


def test_own_code_that_is_not_recorded_names_the_checkpoint(checkpoint, tmp_path):
    state = load_checkpoint(checkpoint)
    state.update(model_name=f"{tmp_path / 'net.py'}:Net", model_source=None)
    save_checkpoint(state, tmp_path / "own.pt")
    with pytest.raises(ModelError) as info:
        write_features(tmp_path / "own.pt", out=tmp_path / "out")
    assert str(info.value).startswith(f"{tmp_path / 'own.pt'} names its model ")


def test_a_model_without_conv_layers_says_there_is_nothing_to_show(
    checkpoint, tmp_path, monkeypatch
):
    from cnnlab.models import registry

    def mlp(*, num_classes=4, in_channels=1, image_size=(28, 28), init="default"):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, num_classes))

    info = registry.ModelInfo("test_mlp", mlp, (1, 28, 28), 4, "a model without convs", "000")
    monkeypatch.setitem(registry._MODELS, "test_mlp", info)
    state = load_checkpoint(checkpoint)
    model = registry.create_model("test_mlp", num_classes=4)
    state.update(model_name="test_mlp", model_args=model.model_args, model_state=model.state_dict())
    save_checkpoint(state, tmp_path / "mlp.pt")
    with pytest.raises(ModelError) as info:
        write_features(tmp_path / "mlp.pt", out=tmp_path / "out")
    assert str(info.value) == (
        f"{tmp_path / 'mlp.pt'} holds a test_mlp, which has no Conv2d layer: no filters or "
        "feature maps to show"
    )


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({}, "give a checkpoint: a run folder or a .pt file"),
        ({"checkpoint": "run", "image": "a.png", "index": 2},
         "give an image file or a test image index, not both"),
        ({"checkpoint": "run", "colour": "red"}, "features: unknown key(s) colour; "),
    ],
    ids=["no checkpoint", "image and index", "unknown option"],
)  # fmt: skip
def test_what_write_features_refuses_before_reading_anything(arguments, message):
    with pytest.raises(ConfigError) as info:
        write_features(**{"checkpoint": None, **arguments})
    assert str(info.value).startswith(message)


def test_an_out_that_is_a_file_is_one_line(checkpoint, tmp_path):
    (tmp_path / "out").write_text("notes")
    with pytest.raises(ConfigError) as info:
        write_features(checkpoint, out=tmp_path / "out")
    assert str(info.value) == f"output folder {tmp_path / 'out'} is a file; give --out a folder"
