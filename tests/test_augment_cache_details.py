"""Batched augmentation and the decoded-data cache in detail (data/augment.py, data/cache.py):
the crop padding of small and non-square images, the flip and JPEG rule at a draw of exactly
one half, that crop and flip never leave the images' device, and the cache's key, its refusal
of pickles and its writing into folders that do or do not exist yet.

Each test exists because a mutant of `mutmut run "cnnlab.data*"` survived the other tests
(docs/TESTING.md). The references are torchvision's own functions on a few tiny images.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from cnnlab.data.augment import (
    augment_batch,
    augment_padding,
    crop,
    random_crop,
    random_flip,
    random_jpeg,
)
from cnnlab.data.cache import cache_key, load_arrays, save_arrays

# ---- augmentation ----------------------------------------------------------------------


def distinct_images(batch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """uint8 images whose pixels all differ (and are not 0, the padding), so any other window,
    padding or flip gives other pixels."""
    count = batch * channels * height * width
    return (torch.arange(count) % 255 + 1).to(torch.uint8).view(batch, channels, height, width)


def test_crop_padding_is_an_eighth_of_the_height_and_at_least_one():
    # below 16 pixels H // 8 is 0 or 1: the floor of 1 pixel, never more, applies
    heights = (5, 6, 7, 8, 15, 16, 17, 24)
    assert [augment_padding(h) for h in heights] == [1, 1, 1, 1, 1, 2, 2, 3]


@pytest.mark.parametrize(
    "shape, padding",
    [((4, 1, 6, 6), 1), ((4, 3, 16, 5), 2)],  # tall images: the height, not the width, counts
)
def test_augment_batch_is_torchvisions_pad_crop_and_flip_with_the_same_draws(shape, padding):
    """Crop offsets (randint(0, 2p + 1), tops then lefts) then flips (rand < 0.5) from one
    generator, each image padded with zeros, cropped and flipped by torchvision."""
    images = distinct_images(*shape)
    height, width = shape[2:]
    draws = torch.Generator().manual_seed(11)
    offsets = torch.randint(0, 2 * padding + 1, (2, shape[0]), generator=draws)
    flips = torch.rand(shape[0], generator=draws) < 0.5
    expected = []
    for image, top, left, flip in zip(images, *offsets.tolist(), flips.tolist(), strict=True):
        window = TF.crop(TF.pad(image, [padding]), top, left, height, width)
        expected.append(TF.horizontal_flip(window) if flip else window)
    out = augment_batch(images, torch.Generator().manual_seed(11))
    assert torch.equal(out, torch.stack(expected))


def test_crop_and_flip_keep_their_work_on_the_images_device():
    """The offsets and flips are drawn on the CPU; every index made from them must follow the
    images to their device (a GPU in training), or the ops mix devices and fail. The meta
    device stands in for a GPU on any machine: a tensor of it never meets a CPU tensor."""
    images = distinct_images(2, 3, 5, 5).to("meta")
    top, left = torch.tensor([0, 2]), torch.tensor([1, 0])  # CPU, as random_crop draws them
    assert crop(images, 1, top, left).device.type == "meta"
    assert random_crop(images, 1, torch.Generator().manual_seed(0)).device.type == "meta"
    assert random_flip(images, torch.Generator().manual_seed(0)).device.type == "meta"
    out = augment_batch(images, torch.Generator().manual_seed(0))
    assert out.device.type == "meta" and out.shape == images.shape


# seed and row of a float32 draw that is exactly 0.5 (found by search: about 1 in 2^24 is)
HALF_SEED, HALF_ROW, HALF_BATCH = 174657, 193, 256


def half_draw() -> torch.Generator:
    generator = torch.Generator().manual_seed(HALF_SEED)
    assert torch.rand(HALF_BATCH, generator=generator)[HALF_ROW] == 0.5  # the premise holds
    return torch.Generator().manual_seed(HALF_SEED)


def test_a_draw_of_exactly_one_half_neither_flips_nor_compresses():
    """Probability 0.5 means `draw < 0.5`, as torchvision's RandomHorizontalFlip tests
    `torch.rand(1) < p`: the one row of a batch whose draw is exactly 0.5 is left alone."""
    rows = (HALF_ROW, HALF_ROW + 1, HALF_BATCH)
    image = distinct_images(1, 1, 2, 3)
    assert torch.equal(random_flip(image, half_draw(), rows), image)
    noise = torch.randint(0, 256, (1, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    noise = noise.to(torch.uint8)  # JPEG changes noise, so a compressed copy would show
    assert torch.equal(random_jpeg(noise, 50, half_draw(), rows), noise)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_random_jpeg_on_a_gpu_gives_the_cpu_result():
    """Pillow codes on the CPU: the chosen rows go there and their copies come back to the
    images' device (a CPU index or CPU copies would fail on a GPU; the meta device cannot
    stand in here, its tensors have no pixels for Pillow)."""
    images = distinct_images(6, 3, 8, 8)
    expected = random_jpeg(images, 50, torch.Generator().manual_seed(1))
    out = random_jpeg(images.cuda(), 50, torch.Generator().manual_seed(1))
    assert out.device.type == "cuda" and torch.equal(out.cpu(), expected)


# ---- the decoded-data cache ------------------------------------------------------------


def test_cache_key_changes_with_path_size_and_mtime_of_each_source(tmp_path, monkeypatch):
    first, second = tmp_path / "a.gz", tmp_path / "b.gz"
    for path in (first, second):
        path.write_bytes(b"same bytes")
        os.utime(path, ns=(1_700_000_000_000_000_000,) * 2)
    key = cache_key([first])
    assert re.fullmatch(r"[0-9a-f]{16}", key)  # the file name part: 16 hex digits
    # a copy elsewhere with the same size and time is another source (another data set)
    assert cache_key([second]) != key
    monkeypatch.chdir(tmp_path)
    assert cache_key([Path("a.gz")]) == key  # the same file however it is named
    os.utime(first, ns=(1_700_000_000_000_000_001,) * 2)  # touched: decode again
    assert cache_key([first]) != key
    touched = cache_key([first])
    first.write_bytes(b"other bytes")  # one byte longer, the same time again: decode again
    os.utime(first, ns=(1_700_000_000_000_000_001,) * 2)
    assert cache_key([first]) != touched


class Payload:
    """An object whose unpickling runs a command: here, making a folder."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_a_cache_file_holding_pickles_is_treated_as_broken_and_never_unpickled(tmp_path):
    """A cache folder may be shared: a planted .npz must not run code when it is read."""
    marker = tmp_path / "unpickled"
    path = tmp_path / "decoded" / "mnist-0123456789abcdef.npz"
    path.parent.mkdir()
    np.savez(path, x=np.zeros(3, np.uint8), y=np.array([Payload(marker)], dtype=object))
    assert load_arrays(path) is None  # as a damaged file: the source is decoded again
    assert not marker.exists()


def test_save_arrays_makes_missing_folders_and_writes_into_existing_ones(tmp_path):
    arrays = {"x": np.arange(6, dtype=np.uint8).reshape(2, 3), "y": np.array([3, 1])}
    deep = tmp_path / "cache" / "decoded" / "mnist-1.npz"  # neither folder exists yet
    assert save_arrays(deep, arrays) is True
    beside = deep.parent / "mnist-2.npz"  # the folder exists now
    assert save_arrays(beside, arrays) is True
    for path in (deep, beside):
        loaded = load_arrays(path)
        assert loaded.keys() == arrays.keys()
        assert all(np.array_equal(loaded[name], arrays[name]) for name in arrays)


def test_save_arrays_says_false_and_writes_nothing_when_it_cannot_write(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert save_arrays(blocker / "decoded" / "mnist-1.npz", {"x": np.zeros(2)}) is False
    assert sorted(tmp_path.iterdir()) == [blocker]
