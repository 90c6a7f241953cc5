"""What `cnnlab.explain` (report/explanations.py) takes and shows, in the details: a module's
input (one image or a batch, its class names, the layer asked for, each image shown scaled to
its own range), a run's pixels (one image, the uint8 refusal) and its --index test images from
another data set (--dataset and --data-dir honoured, any number of classes, a folder: data set
decoded image by image, a data set of another shape refused naming the checkpoint).

Then the figure, from a hand-made Explanation (no model): its panels' arrays, colour map,
range and interpolation, its titles shortened to fit, its layout, a grey or a 4-channel
image, the captions and the files `write` names; the error for an unknown target; and a run's
mistakes: no --dataset, only its chosen checkpoint's, predicted from the --data-dir given, and
the line for a model without any.

Last, the options and refusals in words (an unknown option, a class number one too large,
image files with --index, no files, an index past the test split, an --out that is a file,
RUN/explain by default), one image file given alone, and the checkpoint's model: the layer and
a class name reach Grad-CAM, a GPU-saved checkpoint is rebuilt on the device asked for, and a
model that cannot be rebuilt is named by its checkpoint's path.

These tests came from mutmut's survivors in report/explanations.py (docs/TESTING.md); the
figures and the run's mistakes are also checked in test_explain.py and test_plots.py. A module
is a tiny conv net made here; a run is the session's tiny_run, read only (no predictions
written), or a one-step run on fake MNIST made in the test's own folder.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnlab
from cnnlab.cli import main
from cnnlab.data.images import normalize
from cnnlab.errors import CheckpointError, ConfigError, ModelError
from cnnlab.inspect.gradcam import Explained, explain_batch, overlay
from cnnlab.report import explanations
from cnnlab.report import predictions as report_predictions
from cnnlab.report.explanations import Explanation
from cnnlab.report.predictions import load_predictions
from cnnlab.training import checkpoint as checkpoint_module
from cnnlab.training.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    rebuild_model,
    save_checkpoint,
)
from helpers import FAKE_TEST, learnable_images, relocate_checkpoint


def small_net(channels: int = 1, classes: int = 3) -> nn.Sequential:
    """Two conv layers ("0" at 8×8, "3" at 4×4, the default), a linear head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, classes),
    )  # fmt: skip


# --- a module and its input --------------------------------------------------------------------


def test_a_module_without_images_says_what_to_give():
    with pytest.raises(ConfigError) as err:
        cnnlab.explain(small_net())
    assert str(err.value) == "give the images to explain: the model's input, (N, C, H, W)"


def test_a_single_rgb_image_is_explained_as_a_batch_of_one():
    model = small_net(channels=3)
    image = torch.randn(3, 8, 8)
    found = cnnlab.explain(model, image)  # (C, H, W), not (N, C, H, W)
    assert found.images.shape == (1, 3, 8, 8) and found.names == ["image 0"]
    direct = explain_batch(model, image[None])
    np.testing.assert_array_equal(found.heatmap, direct.heatmap.numpy())
    np.testing.assert_array_equal(found.saliency, direct.saliency.numpy())


def test_class_names_name_the_classes_a_target_and_the_layer_is_the_one_asked_for():
    model = small_net()
    x = torch.randn(2, 1, 8, 8)
    found = cnnlab.explain(model, x, class_names=["ant", "bee", "cat"], target="bee", layer="0")
    assert found.class_names == ["ant", "bee", "cat"]  # not "0", "1", "2"
    assert list(found.target) == [1, 1]
    # the first conv, at the input's 8×8, not the default last conv's 4×4
    assert found.layer == "0" and found.cam.shape == (2, 8, 8)
    np.testing.assert_array_equal(found.cam, explain_batch(model, x, 1, "0").cam.numpy())


def test_each_input_is_shown_scaled_to_its_own_range():
    """Two images with ranges apart, each under 1: each is shown from 0 to 255 on its own."""
    g = torch.Generator().manual_seed(3)
    x = torch.stack([torch.rand(1, 8, 8, generator=g) * 0.2, 5 + torch.rand(1, 8, 8, generator=g)])
    found = cnnlab.explain(small_net(), x)
    for image, shown in zip(x, found.images, strict=True):
        expected = ((image - image.min()) / (image.max() - image.min()) * 255).round()
        assert shown.min() == 0 and shown.max() == 255
        np.testing.assert_array_equal(shown, expected.to(torch.uint8).numpy())


# --- a run's pixels and test images ------------------------------------------------------------


def test_a_run_takes_one_image_of_pixels(tiny_run):
    pixels = learnable_images(1, 28, 28, num_classes=4, seed=5)[0][0]  # (28, 28) uint8
    one = cnnlab.explain(tiny_run, pixels[None])  # (C, H, W): one image
    assert one.images.shape == (1, 1, 28, 28) and one.names == ["image 0"]
    assert np.array_equal(one.images[0, 0], pixels)


def test_a_run_refuses_pixels_that_are_not_uint8_even_shaped_right(tiny_run):
    floats = np.zeros((1, 1, 28, 28), np.float32)
    with pytest.raises(ConfigError) as err:
        cnnlab.explain(tiny_run, floats)
    assert str(err.value) == (
        "images must be uint8 pixels shaped (N, 1, 28, 28) as the model was trained, got "
        "float32 (1, 1, 28, 28); or give image files"
    )


def test_index_images_come_from_the_data_set_and_folder_given(tiny_run, fake_data_root):
    """--dataset mnist in --data-dir: 10 classes where the run has 4, which is fine here."""
    found = cnnlab.explain(tiny_run, index=[0, 5], dataset="mnist", data_dir=fake_data_root)
    images, labels = learnable_images(FAKE_TEST, 28, 28, seed=1)  # write_mnist_files' t10k
    assert np.array_equal(found.images, images[[0, 5], None])
    assert found.labels == [int(labels[0]), int(labels[5])]
    assert found.names == ["test image 0", "test image 5"]
    assert found.class_names == ["class0", "class1", "class2", "class3"]  # still the run's


def test_index_images_of_a_folder_data_set_are_decoded_one_by_one(tiny_run, tmp_path):
    """folder: data is a Dataset of files, not a Split held in memory."""
    images, labels = learnable_images(6, 28, 28, num_classes=2, seed=9)
    for split in ("train", "test"):
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = tmp_path / split / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
    order = sorted(range(6), key=lambda i: (int(labels[i]), str(i)))  # class, then file name
    found = cnnlab.explain(tiny_run, index=[1, 4], dataset=f"folder:{tmp_path}")
    assert np.array_equal(found.images, images[[order[1], order[4]], None])
    assert found.labels == [int(labels[order[1]]), int(labels[order[4]])]
    assert all(isinstance(label, int) for label in found.labels)


def test_a_data_set_of_another_shape_names_the_checkpoint(tiny_run, npz_root):
    checkpoint, _ = checkpoint_path(tiny_run)
    with pytest.raises(CheckpointError) as err:
        cnnlab.explain(tiny_run, index=[0], dataset=f"npz:{npz_root}")  # 16×16 RGB
    assert str(err.value).startswith(f"{checkpoint} is a mnist_cnn for 4 classes at 1×28×28; ")
    assert str(err.value).endswith("has 3 classes at 3×16×16")


# --- the figure of a hand-made explanation ------------------------------------------------------

NAME = "Scan 2024-03-17 ward B, left side.PNG"  # 37 characters: shortened to 34 in a title
LONG_CLASS = "Testudo hermanni (Greek turtle)"  # 31 characters: shortened to 24 after "Grad-CAM of"


def made(channels: int = 1) -> Explanation:
    """Two 4×4 images of known pixels, heatmaps and saliencies; image 0 is labelled "ant" and
    predicted LONG_CLASS at 50%, image 1 has no label and is predicted "ant" at 75%."""
    images = (np.arange(2 * channels * 16).reshape(2, channels, 4, 4) * 3).astype(np.uint8)
    ramp = torch.linspace(0, 1, 16).reshape(4, 4)
    found = Explained(
        layer="features.3",
        logits=torch.tensor([[0.0, 0.0, math.log(2)], [math.log(6), 0.0, 0.0]]),
        target=torch.tensor([2, 1]),
        cam=torch.ones(2, 2, 2),
        heatmap=torch.stack([ramp, ramp.flip(0)]),
        saliency=torch.stack([0.2 + 0.8 * ramp, 0.2 + 0.8 * ramp.flip(1)]),  # its least 0.2
    )
    names = [NAME, "test image 12"]
    return Explanation(images, names, [0, None], ["ant", "bee", LONG_CLASS], found)


def test_overlay_lays_the_heatmap_over_with_the_alpha_asked_for():
    found = made()
    np.testing.assert_array_equal(
        found.overlay(0, alpha=0.2), overlay(found.images[0], found.heatmap[0], 0.2)
    )
    assert not np.array_equal(found.overlay(0, alpha=0.2), found.overlay(0))  # 0.5 by default


def test_a_caption_says_the_true_class_where_known_and_the_prediction():
    found = made()
    assert found.caption(0) == f"{NAME}: true ant, predicted {LONG_CLASS} (50%)"
    assert found.caption(1) == "test image 12: predicted ant (75%)"


def test_a_figure_row_shows_the_image_the_heatmap_over_it_and_the_saliency():
    found = made()
    fig = found.figure()
    assert len(fig.axes) == 6  # three panels a row, no empty fourth
    for i in range(2):
        image, heat, saliency = (fig.axes[3 * i + k].images for k in range(3))
        assert len(image) == len(heat) == len(saliency) == 1
        grey = found.images[i, 0]
        np.testing.assert_array_equal(image[0].get_array(), np.stack([grey] * 3, axis=-1))
        np.testing.assert_array_equal(heat[0].get_array(), found.overlay(i))
        np.testing.assert_array_equal(saliency[0].get_array(), found.saliency[i])
        # saliency in grey on the fixed 0-1 scale: its smallest (0.2) is not shown black
        assert saliency[0].get_cmap().name == "gray" and saliency[0].get_clim() == (0, 1)
        # each pixel a sharp square, not blurred, at every size
        assert {panel[0].get_interpolation() for panel in (image, heat, saliency)} == {"nearest"}


def test_the_titles_say_what_each_panel_shows_shortened_to_fit():
    fig = made().figure()
    titles = [ax.title for ax in fig.axes]
    assert [t.get_text() for t in titles] == [
        "Scan 2024-03-17 …B, left side.PNG\ntrue ant\npredicted Testud…ek turtle) (50%)",
        "Grad-CAM of Testudo her…eek turtle)\n(layer features.3)",
        "saliency\n|d score / d pixel|",
        "test image 12\npredicted ant (75%)",
        "Grad-CAM of bee\n(layer features.3)",
        "saliency\n|d score / d pixel|",
    ]
    assert fig.get_suptitle() == "where the model looked"
    # small type: three 34-character lines fit over a 2.2-inch panel
    assert {t.get_fontsize() for t in titles} == {8} and fig._suptitle.get_fontsize() == 9


def test_a_figures_panels_fill_it_at_about_their_planned_size():
    """2.2 inches a panel at 80 dpi is 176 pixels: the layout leaves each image more than 160
    (matplotlib's default margins would leave it 120, a 28-pixel image 4 pixels a pixel)."""
    fig = made().figure([1])
    fig.draw_without_rendering()
    assert all(ax.get_window_extent().width > 160 for ax in fig.axes)


def test_an_image_of_more_than_three_channels_shows_its_first_three():
    found = made(channels=4)
    shown = found.figure([0]).axes[0].images[0].get_array()
    np.testing.assert_array_equal(shown, found.images[0, :3].transpose(1, 2, 0))


def test_write_names_each_file_after_its_image_keeping_letters_digits_dots(tmp_path, monkeypatch):
    monkeypatch.setattr(explanations, "render_png", lambda figure: b"png")  # no drawing needed
    paths = made().write(tmp_path / "out")
    assert [p.name for p in paths] == [
        "explain-01-Scan_2024-03-17_ward_B__left_side.PNG.png",
        "explain-02-test_image_12.png",
    ]
    assert all(p.read_bytes() == b"png" for p in paths)


# --- targets and a run's mistakes ---------------------------------------------------------------


def test_an_unknown_target_lists_up_to_ten_class_names():
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(ConfigError) as err:
        cnnlab.explain(small_net(classes=10), x, class_names=list("abcdefghij"), target="zebra")
    assert str(err.value) == (
        "unknown target class 'zebra'; give a class name (a, b, c, d, e, f, g, h, i, j) or a "
        "number from 0 to 9"
    )
    with pytest.raises(ConfigError) as err:
        cnnlab.explain(small_net(classes=11), x, class_names=list("abcdefghijk"), target="zebra")
    assert str(err.value) == (
        "unknown target class 'zebra'; give a class name (a, b, c, d, e, f, g, h, i, j, ...) or "
        "a number from 0 to 10"
    )


def test_a_runs_mistakes_take_no_dataset(tiny_run):
    with pytest.raises(ConfigError) as err:
        cnnlab.explain(tiny_run, dataset="mnist")
    assert str(err.value) == "--dataset is for --index test images; a run's mistakes are its own"


def test_a_runs_mistakes_are_those_of_its_chosen_checkpoint(tiny_run):
    with pytest.raises(ConfigError) as err:
        cnnlab.explain(tiny_run / "last.pt")  # the run's mistakes are best.pt's
    assert str(err.value) == (
        "the run's mistakes are those of its best.pt, not last.pt: give the run folder, or "
        "--index / IMAGE files"
    )


def mnist_run(tmp_path: Path, data_root: Path) -> Path:
    """A run of one step on the fake mnist in `data_root` (not found without data_dir), with no
    predictions.npz yet."""
    return cnnlab.train(
        model="mnist_cnn", dataset="mnist", data_dir=str(data_root), epochs=1, batch_size=64,
        out_dir=str(tmp_path / "runs"), name="m", progress="none", tensorboard=False,
        report=False,
    ).run_dir  # fmt: skip


def test_a_runs_mistakes_are_predicted_from_the_data_dir_given(tmp_path, fake_data_root):
    run = mnist_run(tmp_path, fake_data_root)
    moved = fake_data_root.rename(tmp_path / "moved")  # not where the run's --data-dir says
    found = cnnlab.explain(run, count=3, data_dir=moved)
    top = load_predictions(run).top_losses(3)  # now read from the predictions.npz written
    assert len(top) == 3 and found.names == [f"test image {i}" for i in top]


def test_a_model_without_mistakes_says_what_to_give_instead(tmp_path, fake_data_root, monkeypatch):
    run = mnist_run(tmp_path, fake_data_root)
    real = report_predictions.load_predictions

    def all_right(*args, **kwargs):  # the run's predictions, every one made right
        found = real(*args, **kwargs)
        return dataclasses.replace(found, predicted=found.labels.copy())

    monkeypatch.setattr(report_predictions, "load_predictions", all_right)
    with pytest.raises(ConfigError) as err:
        cnnlab.explain(run, data_dir=fake_data_root)
    assert str(err.value) == (
        "the model got every test image right: no mistake to explain; give --index or IMAGE files"
    )


# --- options, refusals and the checkpoint's model -----------------------------------------------

PIXELS = learnable_images(2, 28, 28, num_classes=4, seed=5)[0][:, None]  # (2, 1, 28, 28) uint8


def test_an_unknown_option_is_refused_naming_explain_and_its_help():
    with pytest.raises(ConfigError) as err:
        cnnlab.explain(small_net(), torch.zeros(1, 1, 8, 8), colour="red")
    assert str(err.value) == (
        "explain: unknown key(s) colour; valid keys are listed by `cnnlab explain --help`"
    )


@pytest.mark.parametrize("target", ["3", 3])
def test_a_class_number_as_large_as_the_number_of_classes_is_unknown(target):
    with pytest.raises(ConfigError) as err:
        cnnlab.explain(small_net(), torch.zeros(1, 1, 8, 8), class_names=["a", "b", "c"],
                       target=target)  # fmt: skip
    assert str(err.value) == (
        "unknown target class '3'; give a class name (a, b, c) or a number from 0 to 2"
    )


@pytest.mark.parametrize(
    ("images", "options", "message"),
    [
        (["shoe.png"], {"index": [0]}, "give image files or --index test images, not both"),
        ([], {}, "no images given: give image files, or leave them out"),
    ],
    ids=["files-and-index", "no-files"],
)
def test_a_run_refuses_files_with_index_and_an_empty_list_of_files(
    tiny_run, images, options, message
):
    with pytest.raises(ConfigError) as err:
        cnnlab.explain(tiny_run, images, **options)
    assert str(err.value) == message


@pytest.mark.parametrize("kind", [str, Path])
def test_a_run_takes_one_image_file_not_in_a_list(tiny_run, tmp_path, kind):
    Image.fromarray(PIXELS[0, 0]).save(tmp_path / "digit.png")
    found = cnnlab.explain(tiny_run, kind(tmp_path / "digit.png"))
    assert found.names == ["digit.png"] and np.array_equal(found.images, PIXELS[:1])


@pytest.mark.parametrize(("index", "named"), [([128], 128), ([3, 200, 129], 200)])
def test_an_index_past_the_test_split_is_refused_naming_the_first(tiny_run, index, named):
    data = tiny_run.parent.parent / "data"  # the run's npz data set, 128 test images
    with pytest.raises(ConfigError) as err:
        cnnlab.explain(tiny_run, index=index)
    assert str(err.value) == (
        f"index {named} is out of range: the test split of npz:{data} has 128 images"
    )


def test_the_output_folder_is_explain_in_the_run_folder_unless_out_is_given(tiny_run, tmp_path):
    assert explanations.output_folder(tiny_run) == tiny_run / "explain"
    assert explanations.output_folder(tiny_run / "last.pt") == tiny_run / "explain"
    assert explanations.output_folder(tiny_run, tmp_path / "pngs") == tmp_path / "pngs"


def test_an_out_that_is_a_file_is_refused_in_words(tiny_run, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["explain", str(tiny_run), "--out", str(notes)]) == 2
    assert (
        capsys.readouterr().err == f"error: output folder {notes} is a file; give --out a folder\n"
    )
    assert notes.read_text() == "mine"


def test_a_runs_layer_and_a_target_by_class_name_are_the_ones_explained(tiny_run):
    found = cnnlab.explain(tiny_run, PIXELS, target="class2", layer="conv1")
    assert found.layer == "conv1" and list(found.target) == [2, 2]
    state = load_checkpoint(checkpoint_path(tiny_run)[0])
    x = normalize(torch.as_tensor(PIXELS), state["mean"], state["std"])
    direct = explain_batch(rebuild_model(state), x, 2, "conv1")
    # conv1's 24×24 maps, not the default conv2's 8×8
    assert found.cam.shape == (2, 24, 24)
    np.testing.assert_array_equal(found.cam, direct.cam.numpy())
    np.testing.assert_array_equal(found.heatmap, direct.heatmap.numpy())


def test_a_checkpoint_saved_on_a_gpu_is_rebuilt_on_the_device_asked_for(
    tiny_run, tmp_path, monkeypatch
):
    gpu = tmp_path / "gpu.pt"
    relocate_checkpoint(tiny_run / "best.pt", gpu, "cuda:7")  # no such GPU here
    devices = []

    def rebuild(state, *args):  # the real one, noting the device the model goes to
        devices.append(args[0])
        return rebuild_model(state, *args)

    monkeypatch.setattr(checkpoint_module, "rebuild_model", rebuild)
    found = cnnlab.explain(gpu, PIXELS, device="cpu")
    assert devices == [torch.device("cpu")]
    expected = cnnlab.explain(tiny_run, PIXELS, device="cpu")
    np.testing.assert_array_equal(found.heatmap, expected.heatmap)


def test_a_model_that_cannot_be_rebuilt_is_named_by_its_checkpoint(tiny_run, tmp_path):
    state = load_checkpoint(tiny_run / "best.pt")
    state["model_name"] = f"{tmp_path / 'net.py'}:Net"  # recorded without its source
    forged = tmp_path / "forged.pt"
    save_checkpoint(state, forged)
    with pytest.raises(ModelError) as err:
        cnnlab.explain(forged, PIXELS)
    assert str(err.value) == (
        f"{forged} names its model {tmp_path / 'net.py'}:Net without the source cnnlab records "
        "with it; it was not saved by cnnlab or is damaged, so its code is not run"
    )
