"""What `cnnlab.explain` (report/explanations.py) takes and shows, in the details: a module's
input (one image or a batch, its class names, the layer asked for, each image shown scaled to
its own range), a run's pixels (one image, the uint8 refusal) and its --index test images from
another data set (--dataset and --data-dir honoured, any number of classes, a folder: data set
decoded image by image, a data set of another shape refused naming the checkpoint).

These tests came from mutmut's survivors in report/explanations.py (docs/TESTING.md); the
figures and the run's mistakes are checked in test_explain.py and test_plots.py. A module is a
tiny conv net made here; a run is the session's tiny_run, read only (no predictions written).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnlab
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.inspect.gradcam import explain_batch
from cnnlab.training.checkpoint import checkpoint_path
from helpers import FAKE_TEST, learnable_images


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
