"""Resizing in-memory data (data/datasets.py: resize_split, configured) and reading data set
names (data/specs.py: get_spec, close_names): the pixel values a resize gives, its edge cases
(no images, more images than one chunk), which data given in Python may be resized, and the
guesses an unknown name gets.

Every test calls the functions on a few tiny tensors or names, without loading a data set. The
tests exist because docs/TESTING.md's mutation run showed these paths untested (survivors of
`mutmut run "cnnlab.data*"`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from cnnlab.data.datasets import configured, resize_split
from cnnlab.data.specs import FOLDER_NEEDS, NPZ_NEEDS, check_dataset_name, close_names, get_spec
from cnnlab.data.types import ImageData, Split
from cnnlab.errors import ConfigError, DataNotFoundError


def split_of(images: np.ndarray | torch.Tensor) -> Split:
    images = torch.as_tensor(images)
    return Split(images, torch.zeros(len(images), dtype=torch.int64))


# ---- resize_split --------------------------------------------------------------------------


def test_resizing_keeps_flat_images_exactly_black_grey_and_white():
    # a flat image is the same flat image at any size: no pixel pushed up to 1 or to 255
    images = torch.tensor([0, 100, 255], dtype=torch.uint8).reshape(3, 1, 1, 1).expand(3, 1, 6, 6)
    resized = resize_split(split_of(images.contiguous()), 4).images
    assert resized.shape == (3, 1, 4, 4) and resized.dtype == torch.uint8
    assert resized.amax(dim=(1, 2, 3)).tolist() == [0, 100, 255]
    assert resized.amin(dim=(1, 2, 3)).tolist() == [0, 100, 255]


def test_shrinking_is_antialiased_like_pils_bilinear_resize():
    # npz: and built-in data are resized here, folder: images by torchvision's Resize (PIL's
    # antialiased bilinear filter): the same picture either way, within rounding
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(1, 1, 12, 12), dtype=np.uint8)
    resized = resize_split(split_of(images), 4).images[0, 0].numpy().astype(int)
    pil = np.asarray(Image.fromarray(images[0, 0]).resize((4, 4), Image.BILINEAR)).astype(int)
    assert np.abs(resized - pil).max() <= 1
    # a line one pixel wide is averaged in, not skipped over as sampling without antialias does
    line = np.zeros((1, 1, 8, 8), dtype=np.uint8)
    line[..., 0] = 255
    assert resize_split(split_of(line), 2).images[0, 0].tolist() == [[46, 0], [46, 0]]


def test_more_images_than_one_chunk_are_each_resized_once_in_order():
    # 4096 images are resized at a time: image 4096 starts the second chunk, neither lost nor
    # resized twice
    values = torch.arange(4097) % 251
    images = values.to(torch.uint8).reshape(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    resized = resize_split(split_of(images), 1)
    assert resized.images.shape == (4097, 1, 1, 1) and len(resized) == 4097
    assert torch.equal(resized.images.flatten(), values.to(torch.uint8))


def test_a_split_without_images_resizes_to_an_empty_uint8_split_of_the_new_size():
    empty = Split(torch.empty((0, 3, 16, 16), dtype=torch.uint8), torch.empty(0, dtype=torch.int64))
    resized = resize_split(empty, 8)
    assert resized.images.shape == (0, 3, 8, 8) and resized.images.dtype == torch.uint8
    assert len(resized) == 0


# ---- configured: data given in Python ------------------------------------------------------


def given(train, test) -> ImageData:
    return ImageData(
        name="python:tensors", class_names=["a", "b"], mean=(0.5,), std=(0.25,),
        input_shape=(1, 6, 6), train=train, test=test, location="given in Python",
    )  # fmt: skip


def in_memory() -> Split:
    return split_of(torch.full((2, 1, 6, 6), 7, dtype=torch.uint8))


def batch_by_batch() -> TensorDataset:
    return TensorDataset(torch.zeros(2, 1, 6, 6), torch.zeros(2, dtype=torch.int64))


@pytest.mark.parametrize(
    "splits", [(in_memory, batch_by_batch), (batch_by_batch, in_memory)], ids=["test", "train"]
)
def test_image_size_is_refused_when_either_split_is_read_batch_by_batch(splits):
    # only a split held in memory can be resized here; one Dataset is enough to refuse
    data = given(splits[0](), splits[1]())
    with pytest.raises(ConfigError) as caught:
        configured(data, image_size=4, normalize=True)
    assert str(caught.value) == (
        "image_size 4: a Dataset read batch by batch is resized by its own transform "
        "(torchvision's Resize); remove image_size"
    )


def test_image_size_equal_to_a_datasets_own_size_is_accepted():
    # nothing to resize: image_size 6 of 6x6 images is no reason to refuse a Dataset
    train, test = batch_by_batch(), batch_by_batch()
    data = configured(given(train, test), image_size=6, normalize=False)
    assert data.train is train and data.test is test and data.input_shape == (1, 6, 6)
    assert data.mean == (0.0,) and data.std == (1.0,)


# ---- specs: names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "name"),
    [("FashionMNIST", "fashion-mnist"), ("CIFAR_10", "cifar10"), (" cifar-2 ", "cifar2")],
)
def test_aliases_name_their_built_in(typed, name):
    assert get_spec(typed).name == name


def test_unknown_name_without_a_close_one_says_what_to_use(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder named imagenet here
    with pytest.raises(ConfigError) as caught:
        get_spec("imagenet")
    assert str(caught.value) == (
        "unknown data set 'imagenet'; use one of mnist, fashion-mnist, cifar10, cifar2, or "
        "npz:PATH (a folder with train.npz and test.npz) or folder:PATH (a folder of class "
        "folders of images)"
    )


def test_folder_of_images_given_without_its_prefix_is_guessed_as_folder(tmp_path):
    # no train.npz in it: folder:PATH, not npz:PATH
    (tmp_path / "ant").mkdir()
    assert close_names(str(tmp_path)) == [f"folder:{tmp_path}"]
    with pytest.raises(ConfigError, match=f"did you mean folder:{tmp_path}\\? use one of"):
        get_spec(str(tmp_path))


@pytest.mark.parametrize(
    ("typed", "guess"),
    [("foldr:x", ["folder:x"]), ("nzp:C:/data", ["npz:C:/data"]), ("npx:a:b", ["npz:a:b"])],
)
def test_misspelled_prefix_is_corrected_and_the_path_kept_whole(typed, guess):
    # the prefix ends at the first colon: a path may hold colons of its own
    assert close_names(typed) == guess


@pytest.mark.parametrize(
    ("typed", "guesses"),
    [("mnis", ["mnist", "fashion-mnist"]), ("cifar", ["cifar2", "cifar10"]),
     ("i", ["mnist", "cifar2", "cifar10"])],
)  # fmt: skip
def test_names_containing_what_was_typed_come_shortest_first_three_at_most(typed, guesses):
    # "mnis" is also close to mnist alone: containment, not similarity, gives fashion-mnist too
    assert close_names(typed) == guesses


def test_check_dataset_name_says_what_is_missing_before_any_data_is_read(tmp_path):
    # the loaders would say the same later, after the model is built: a sweep checks first
    with pytest.raises(ConfigError) as caught:
        check_dataset_name("python:mine")
    assert str(caught.value) == (
        "data set python:mine names data given in Python, which cannot be read from disk; give "
        "a built-in name, npz:PATH or folder:PATH"
    )
    (tmp_path / "train.npz").write_bytes(b"")  # the training half only
    with pytest.raises(DataNotFoundError) as caught:
        check_dataset_name(f"npz:{tmp_path}")
    assert str(caught.value) == f"{tmp_path.resolve() / 'test.npz'} does not exist; {NPZ_NEEDS}"
    nowhere = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError) as caught:
        check_dataset_name(f"folder:{nowhere}")
    assert str(caught.value) == f"folder {nowhere.resolve()} does not exist; {FOLDER_NEEDS}"
    assert check_dataset_name(f"folder:{tmp_path}").kind == "folder"  # it exists: no word yet
