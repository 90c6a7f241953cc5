"""Your own data given in Python (data/own.py), in detail: the pixels each image form becomes,
checked against values computed here by hand (not against the other path, which shares the
code), in memory and streamed item by item (PixelItems); the refusals, each one line, word for
word; the bad items read in this process (test_own_model.py reads them with worker processes);
what decides memory or streaming; and the sample the mean and std come from.

Every data set here is a few tiny images, so each test takes milliseconds. The tests exist
because docs/TESTING.md's mutation run showed the paths untested (survivors of mutmut on
cnnlab.data.own).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import cnnlab
from cnnlab.data import own
from cnnlab.data.datasets import load_dataset
from cnnlab.data.own import own_data, pixels
from cnnlab.data.types import Split

GOOD = (torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]))
# three RGB images of 2×3 pixels, every value different, and their labels
RGB = torch.arange(3 * 3 * 2 * 3, dtype=torch.uint8).reshape(3, 3, 2, 3) * 4 + 30
RGB_LABELS = [2, 0, 1]


class Items(Dataset):
    """A Dataset of the given items, as a list holds them (index 1 of one item: IndexError)."""

    def __init__(self, items: list):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def rgb_items(kind: str) -> Items:
    """RGB as ToTensor's floats (C, H, W), or as PIL images."""
    from PIL import Image

    images = {
        "floats": [image.float() / 255 for image in RGB],
        "pil": [Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB") for image in RGB],
    }[kind]
    return Items(list(zip(images, RGB_LABELS, strict=True)))


def streamed(monkeypatch) -> None:
    """Every Dataset from here on too big for memory: read item by item (PixelItems)."""
    monkeypatch.setattr(own, "memory_budget", lambda: 0)


@pytest.mark.parametrize("kind", ["floats", "pil"])
def test_an_rgb_dataset_gives_its_own_pixels_in_memory_and_streamed(kind, monkeypatch):
    data = own_data(rgb_items(kind), rgb_items(kind))
    assert data.input_shape == (3, 2, 3)
    assert data.train.images.dtype == torch.uint8
    assert torch.equal(data.train.images, RGB) and data.train.labels.tolist() == RGB_LABELS
    streamed(monkeypatch)
    data = own_data(rgb_items(kind), rgb_items(kind))
    assert isinstance(data.train, own.PixelItems) and data.input_shape == (3, 2, 3)
    for index, (image, label) in enumerate(data.test):
        assert image.dtype == torch.uint8 and torch.equal(image, RGB[index]), index
        assert label == RGB_LABELS[index]
    assert data.test.targets == RGB_LABELS


def test_images_with_autograd_history_are_taken_as_their_pixels():
    # a generator's output, say: numpy cannot read such a tensor without detach()
    images = (RGB.float() / 255).requires_grad_()
    data = own_data((images, torch.tensor(RGB_LABELS)), (RGB, torch.tensor(RGB_LABELS)))
    assert torch.equal(data.train.images, RGB)


@pytest.mark.parametrize("shape", [(2, 1, 5, 3), (2, 3, 5, 3), (2, 3, 5, 1)])
def test_images_1_or_3_pixels_wide_are_not_taken_for_channels_last(shape):
    images = torch.arange(int(np.prod(shape)), dtype=torch.int64).reshape(shape) % 256
    data = own_data((images, torch.tensor([0, 1])), (images, torch.tensor([1, 0])))
    assert data.input_shape == shape[1:] and torch.equal(data.train.images, images.byte())


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        (torch.zeros(4, 8, 8, 1),
         "train_data's images has shape (4, 8, 8, 1), channels last; give channels first, "
         "(N, C, H, W): images.permute(0, 3, 1, 2)"),
        (torch.zeros(4, 1, 1, 8, 8),
         "train_data's images has shape (4, 1, 1, 8, 8); give (N, C, H, W) images"),
    ],
    ids=["grey channels last", "5 dimensions"],
)  # fmt: skip
def test_images_of_another_layout_are_refused_saying_which(images, expected):
    with pytest.raises(cnnlab.DataFormatError) as caught:
        own_data((images, GOOD[1]), GOOD)
    assert str(caught.value) == expected


def test_labels_of_any_integer_type_become_int64():
    # numpy's default integer is int32 on Windows
    labels = np.array([0, 1, 0, 1], dtype=np.int32)
    data = own_data((GOOD[0], labels), (GOOD[0], torch.from_numpy(labels)))
    assert data.train.labels.dtype == data.test.labels.dtype == torch.int64
    assert data.test.labels.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("train", "test", "expected"),
    [
        (GOOD, None,
         "give test_data too: a Dataset or (images, labels) to measure the model on "
         "(torch.utils.data.random_split splits one Dataset in two)"),
        (Items([]), GOOD, "train_data is empty; give it some images"),
        ((*GOOD, ["a", "b"]), GOOD,
         "train_data is tuple; give a torch Dataset of (image, label) items or a pair "
         "(images, labels)"),
    ],
    ids=["no test", "empty", "three parts"],
)  # fmt: skip
def test_data_that_is_missing_or_not_a_pair_is_refused_saying_what_to_give(train, test, expected):
    with pytest.raises(cnnlab.CnnlabError) as caught:
        own_data(train, test)
    assert str(caught.value) == expected


def test_bool_images_are_black_and_white():
    images = torch.tensor([[[[True, False]]], [[[False, True]]]])
    data = own_data((images, torch.tensor([0, 1])), (images, torch.tensor([1, 0])))
    assert data.train.images.dtype == torch.uint8
    assert data.train.images.flatten().tolist() == [255, 0, 0, 255]


def test_integer_pixels_go_from_0_to_255_and_256_is_refused():
    images = torch.tensor([0, 17, 254, 255], dtype=torch.int64).reshape(1, 1, 2, 2)
    data = own_data((images, torch.tensor([0])), (images, torch.tensor([0])))
    assert data.train.images.dtype == torch.uint8
    assert data.train.images.flatten().tolist() == [0, 17, 254, 255]
    with pytest.raises(cnnlab.DataFormatError) as caught:
        own_data((images + 1, torch.tensor([0])), GOOD)
    assert str(caught.value) == (
        "train_data's images holds integers from 1 to 256, not 0..255 pixels"
    )


def test_an_empty_batch_of_images_is_an_empty_uint8_batch():
    # no min() of no pixels
    images = pixels(torch.empty(0, 1, 4, 4), "images")
    assert images.dtype == torch.uint8 and images.shape == (0, 1, 4, 4)


def test_images_normalised_to_minus_1_to_1_are_refused_naming_the_item():
    # Normalize((0.5,), (0.5,)), the usual one: exactly -1 to 1, nowhere past ±1
    image = torch.tensor([[[0.0, 1.0], [0.5, 0.25]]]) * 2 - 1
    with pytest.raises(cnnlab.DataFormatError) as caught:
        own_data(Items([(image, 0)] * 2), GOOD)
    assert str(caught.value) == (
        "train image 0 holds floats from -1 to 1, not pixels in [0, 1]; cnnlab normalises "
        "images itself (the training split's mean and std): give ToTensor's pixels without "
        "Normalize, or uint8"
    )


def test_floats_above_1_are_refused_though_none_is_negative():
    # brightened past 1 (a colour jitter without a clamp): not 0..1 pixels either
    images = torch.tensor([0.0, 0.5, 1.0, 1.5]).reshape(1, 1, 2, 2)
    with pytest.raises(cnnlab.DataFormatError, match=r"^test_data's images holds floats from 0 "):
        own_data(GOOD, (images, torch.tensor([0])))


def test_an_item_that_is_not_an_image_and_a_label_is_named():
    with pytest.raises(cnnlab.DataFormatError) as caught:
        own_data(Items([(torch.zeros(1, 8, 8),)] * 2), GOOD)
    assert str(caught.value) == (
        "train item 0 is tuple, not (image, label); __getitem__ must return the image and its "
        "class index"
    )


class OneBad(Dataset):
    """10 good items, and a bad one at `bad`: the label `label`, an image of another size
    ("size") or an error raised (`error`)."""

    def __init__(self, bad: int, *, label=0, size: bool = False, error: Exception | None = None):
        self.bad, self.label, self.size, self.error = bad, label, size, error

    def __len__(self):
        return 10

    def __getitem__(self, index):
        if index != self.bad:
            return torch.zeros(1, 4, 4), index % 2
        if self.error is not None:
            raise self.error
        return torch.zeros(1, 4 + self.size, 4), self.label


@pytest.mark.parametrize(
    ("train", "test", "expected"),
    [
        (OneBad(2, label=-1), GOOD, "train label 2 is -1; class indices start at 0"),
        (OneBad(5, size=True), GOOD,
         "train_data's images differ in shape; give images of one size (a Resize transform)"),
        (GOOD, OneBad(7, error=FileNotFoundError("no such file: img7.png\nmore lines")),
         "reading test_data failed: FileNotFoundError: no such file: img7.png"),
        # the user's message cut at 200 characters: one line, not a page
        (GOOD, OneBad(3, error=ValueError("  " + "x" * 300)),
         f"reading test_data failed: ValueError: {'x' * 200}"),
    ],
    ids=["negative label", "two sizes", "raised", "long message"],
)  # fmt: skip
def test_a_bad_item_read_in_this_process_is_one_line(train, test, expected):
    # 10 items: read here, no worker processes (test_own_model.py reads with workers)
    with pytest.raises(cnnlab.DataFormatError) as caught:
        own_data(train, test)
    assert str(caught.value) == expected


def test_a_dataset_goes_to_memory_only_when_all_its_pixels_fit(monkeypatch):
    dataset = Items([(torch.zeros(1, 8, 8), 0)] * 4)  # 4 × 64 bytes of pixels
    monkeypatch.setattr(own, "memory_budget", lambda: 4 * 64 - 1)
    assert isinstance(own_data(dataset, GOOD).train, own.PixelItems)
    monkeypatch.setattr(own, "memory_budget", lambda: 4 * 64)
    assert isinstance(own_data(dataset, GOOD).train, Split)


def test_the_memory_budget_is_a_quarter_of_the_machines_memory(monkeypatch):
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        pytest.skip("the machine's memory read from /proc/meminfo (Linux)")
    total_kb = next(int(line.split()[1]) for line in meminfo.read_text().splitlines()
                    if line.startswith("MemTotal:"))  # fmt: skip
    assert own.memory_budget() == pytest.approx(total_kb * 1024 / 4, rel=0.02)

    def no_sysconf(name):
        raise ValueError(f"unrecognized configuration name {name}")

    monkeypatch.setattr(os, "sysconf", no_sysconf)  # as where the names are unknown
    assert own.memory_budget() == 2 << 30  # a quarter of 8 GiB


def test_a_split_of_one_image_in_memory_or_streamed(monkeypatch):
    one = (torch.full((1, 1, 8, 8), 255, dtype=torch.uint8), torch.tensor([1]))
    data = own_data(GOOD, one)
    assert len(data.test) == 1 and data.input_shape == (1, 8, 8)
    streamed(monkeypatch)
    data = own_data(GOOD, Items([(torch.ones(1, 8, 8), 1)]))
    assert len(data.test) == 1 and data.input_shape == (1, 8, 8)


def test_data_for_an_evaluation_alone_has_an_empty_training_split_of_its_shape():
    data = own_data(None, GOOD)
    assert data.train.images.shape == (0, 1, 8, 8) and data.train.images.dtype == torch.uint8
    assert data.train.labels.shape == (0,) and data.train.labels.dtype == torch.int64


def test_the_mean_of_a_streamed_dataset_comes_from_a_fixed_sample(monkeypatch):
    streamed(monkeypatch)
    monkeypatch.setattr(own, "STATS_SAMPLE", 10)
    # one-pixel images, each its own value; the mean of all 11 is no mean of 10 of them
    values = [i * i for i in range(11)]
    dataset = Items([(torch.tensor([[[v]]], dtype=torch.uint8), 0) for v in values])
    means = []
    for seed in (1, 2):  # whatever state torch's global generator is in
        torch.manual_seed(seed)
        state = torch.get_rng_state()
        means.append(own_data(dataset, dataset).mean[0])
        assert torch.equal(torch.get_rng_state(), state)  # a run started after it is the same
    assert means[0] == means[1]
    # 10 of the 11 images: the sum of all but one
    assert round(means[0] * 255 * 10) in {sum(values) - v for v in values}


def test_data_given_in_python_cannot_be_read_from_disk():
    with pytest.raises(cnnlab.ConfigError) as caught:
        load_dataset("python:Pictures")
    assert str(caught.value) == (
        "data set python:Pictures was given to cnnlab.train in Python and cannot be read from a "
        "file; give the same data again: cnnlab.train(resume=RUN, train_data=..., "
        "test_data=...), cnnlab.evaluate_checkpoint(RUN, test_data=...)"
    )


def test_too_few_class_names_are_refused_saying_what_to_give():
    with pytest.raises(cnnlab.DataFormatError) as caught:
        own_data(GOOD, GOOD, class_names=["only"])
    assert str(caught.value) == (
        "a label is 1 but there are 1 class names; give one name per class, in label order"
    )


def test_tensors_say_so_where_the_data_was_found():
    data = own_data(GOOD, (GOOD[0][:3], GOOD[1][:3]))
    assert data.location == "given in Python (tensors: 4 train, 3 test images)"
    assert data.name == "python:tensors"


class Bright(Items):
    """Training images: all white, classes named a and b."""

    def __init__(self):
        super().__init__([(torch.ones(1, 2, 2), 0), (torch.ones(1, 2, 2), 1)])
        self.classes = ["a", "b"]


class Dark(Items):
    """Test images: all black, classes named x and y."""

    def __init__(self):
        super().__init__([(torch.zeros(1, 2, 2), 1)] * 3)
        self.classes = ["x", "y"]


def test_names_and_statistics_come_from_the_training_split_else_the_test_split():
    data = own_data(Bright(), Dark())
    assert data.class_names == ["a", "b"] and data.mean == (1.0,)
    assert data.name == "python:Bright"
    assert data.location == f"given in Python ({__name__}.Bright: 2 train, 3 test images)"
    data = own_data(None, Dark())  # an evaluation's: the test split alone
    assert data.class_names == ["x", "y"] and data.mean == (0.0,)
    assert data.name == "python:Dark"
    assert data.location == f"given in Python ({__name__}.Dark: 3 test images)"
