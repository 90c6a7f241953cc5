"""TensorLoader, make_loader and batched augmentation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cnnlab.data import ImageData, Split, TensorLoader, load_dataset, make_loader
from cnnlab.data.augment import (
    augment_batch,
    augment_padding,
    crop,
    jpeg_round_trip,
    random_crop,
    random_flip,
    random_jpeg,
)
from cnnlab.data.loader import seeded_generator
from cnnlab.errors import ConfigError
from helpers import collect

MEAN, STD = (0.2, 0.4, 0.6), (0.3, 0.2, 0.1)


def fake_split(n: int = 50, channels: int = 3, size: int = 8, seed: int = 0) -> Split:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(
        0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator
    )
    return Split(images, torch.arange(n))  # label i marks sample i


def loader_for(split: Split, **kwargs) -> TensorLoader:
    kwargs.setdefault("batch_size", 16)
    return TensorLoader(split.images, split.labels, mean=MEAN, std=STD, **kwargs)


def epoch_labels(loader) -> list[int]:
    return torch.cat([y for _, y in loader]).tolist()


def test_batches_are_normalised_floats_in_order_without_shuffle():
    split = fake_split()
    batches = list(loader_for(split))
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (16, 3, 8, 8) and y.dtype == torch.int64
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    expected = (split.images[:16].float() / 255 - mean) / std
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-5)
    assert torch.cat([y for _, y in batches]).tolist() == list(range(50))


@pytest.mark.parametrize(("drop_last", "batches", "last"), [(False, 4, 2), (True, 3, 16)])
def test_length_with_and_without_drop_last(drop_last, batches, last):
    loader = loader_for(fake_split(), drop_last=drop_last, shuffle=True)
    sizes = [len(y) for _, y in loader]
    assert len(loader) == len(sizes) == batches and sizes[-1] == last
    assert loader.num_items == 50


def test_shuffle_covers_every_sample_once_and_depends_on_seed_and_epoch():
    loader = loader_for(fake_split(), shuffle=True, seed=3)
    first = epoch_labels(loader)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    assert epoch_labels(loader) == first  # iter again without set_epoch: the same order
    loader.set_epoch(1)
    second = epoch_labels(loader)
    assert sorted(second) == list(range(50)) and second != first
    assert epoch_labels(loader_for(fake_split(), shuffle=True, seed=4)) != first
    loader.set_epoch(0)
    assert epoch_labels(loader) == first


@pytest.mark.parametrize("shuffle", [True, False])
def test_start_batch_yields_exactly_the_tail_of_the_epoch(shuffle):
    options = dict(shuffle=shuffle, augment=True, jpeg_quality=75, seed=5)
    loader = loader_for(fake_split(size=16), **options)
    loader.set_epoch(2)
    full = collect(loader)
    resumed = loader_for(fake_split(size=16), **options)
    resumed.set_epoch(2, start_batch=2)
    tail = collect(resumed)
    assert len(tail) == len(full) - 2
    for (x, y), (x_ref, y_ref) in zip(tail, full[2:], strict=True):
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)  # bit for bit, augmentation too
    assert len(collect(resumed)) == len(full)  # the next iteration starts at 0 again


def test_start_batch_out_of_range_is_refused():
    with pytest.raises(ValueError, match="start_batch"):
        loader_for(fake_split()).set_epoch(0, start_batch=5)


@pytest.mark.parametrize(
    "augment", [dict(augment=True), dict(augment=False), dict(augment=True, jpeg_quality=50)]
)
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("world_size", [2, 3, 7])
def test_each_process_takes_its_part_of_the_same_global_batch(shuffle, augment, world_size):
    """Under torchrun --batch-size is the global batch: the processes' parts of batch k,
    put together in rank order, are batch k of one process, images and augmentation alike
    (50 samples in batches of 16: the last batch of 2 leaves some of 3 or 7 ranks empty)."""
    whole = loader_for(fake_split(), shuffle=shuffle, seed=1, **augment)
    shards = [
        loader_for(fake_split(), shuffle=shuffle, seed=1, rank=r, world_size=world_size, **augment)
        for r in range(world_size)
    ]
    for loader in [whole, *shards]:
        loader.set_epoch(4, start_batch=1)  # a resumed epoch, too
    assert {len(shard) for shard in shards} == {len(whole)}
    parts = [list(shard) for shard in shards]
    for batch, (images, labels) in enumerate(whole):
        sizes = [len(part[batch][1]) for part in parts]
        assert max(sizes) - min(sizes) <= 1  # shared as evenly as torch.tensor_split does
        assert torch.equal(torch.cat([part[batch][1] for part in parts]), labels)
        assert torch.equal(torch.cat([part[batch][0] for part in parts]), images)
    assert {shard.batch_total for shard in shards} == {len(labels)}  # the last batch's size


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="batch_size"):
        loader_for(fake_split(), batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        loader_for(fake_split(), rank=2, world_size=2)
    with pytest.raises(ValueError, match="uint8"):
        TensorLoader(torch.zeros(4, 3, 8, 8), torch.zeros(4), batch_size=2, mean=MEAN, std=STD)


def test_make_loader_over_a_loaded_dataset(fake_data_root):
    data = load_dataset("mnist", fake_data_root)
    loader = make_loader(data, "train", batch_size=10, shuffle=True, drop_last=True)
    assert isinstance(loader, TensorLoader) and len(loader) == 6
    x, _ = next(iter(loader))
    assert x.shape == (10, 1, 28, 28)
    assert len(make_loader(data, "test", batch_size=10)) == 4
    with pytest.raises(ConfigError, match="split"):
        make_loader(data, "val", batch_size=10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_live_on_the_requested_device():
    split = fake_split(size=16)
    cpu = collect(loader_for(split, shuffle=True, augment=True))
    gpu = collect(loader_for(split, shuffle=True, augment=True, device="cuda"))
    assert gpu[0][0].device.type == "cuda" and gpu[0][1].device.type == "cuda"
    for (x, y), (x_cpu, y_cpu) in zip(gpu, cpu, strict=True):
        torch.testing.assert_close(x.cpu(), x_cpu)
        assert torch.equal(y.cpu(), y_cpu)


def test_fake_mnist_is_learnable_in_two_epochs(fake_data_root):
    """The fixture promises data a tiny CNN learns quickly; other tests rely on it."""
    torch.manual_seed(0)
    data = load_dataset("mnist", fake_data_root)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
        nn.Linear(8 * 7 * 7, 10),
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    train = make_loader(data, "train", batch_size=16, shuffle=True)
    for epoch in range(2):
        train.set_epoch(epoch)
        for x, y in train:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
    with torch.no_grad():
        correct = sum(
            int((model(x).argmax(1) == y).sum())
            for x, y in make_loader(data, "test", batch_size=32)
        )
    assert correct / len(data.test) > 0.5  # chance is 0.1


# ---- augmentation ----------------------------------------------------------------------


def slow_crop(images, padding, top, left):
    """Reference: pad and cut each sample on its own, as torchvision's RandomCrop does."""
    out = torch.empty_like(images)
    height, width = images.shape[2:]
    for i in range(len(images)):
        padded = F.pad(images[i], (padding,) * 4)
        out[i] = padded[:, top[i] : top[i] + height, left[i] : left[i] + width]
    return out


def test_crop_matches_a_per_sample_reference():
    images = fake_split(n=20, size=12).images
    generator = torch.Generator().manual_seed(0)
    top, left = torch.randint(0, 9, (2, 20), generator=generator)
    assert torch.equal(crop(images, 4, top, left), slow_crop(images, 4, top, left))


def test_random_crop_gives_each_sample_its_own_window():
    images = fake_split(n=64, size=12).images
    out = random_crop(images, 2, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == torch.uint8
    offsets = []
    for i in range(len(images)):  # which window of the padded image is it?
        padded = F.pad(images[i], (2,) * 4)
        found = [
            (t, s) for t in range(5) for s in range(5)
            if torch.equal(padded[:, t : t + 12, s : s + 12], out[i])
        ]  # fmt: skip
        assert found, f"sample {i} is not a crop of its padded image"
        offsets.append(found[0])
    assert len(set(offsets)) > 10  # not one offset for the whole batch


def test_random_flip_mirrors_about_half_the_batch():
    images = fake_split(n=200, size=8).images
    out = random_flip(images, torch.Generator().manual_seed(2))
    flipped = [torch.equal(out[i], images[i].flip(2)) for i in range(200)]
    kept = [torch.equal(out[i], images[i]) for i in range(200)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 70 < sum(flipped) < 130


def smooth_images(n: int, channels: int = 3, size: int = 32) -> torch.Tensor:
    """uint8 gradients with a few edges: pictures JPEG keeps close, unlike uniform noise."""
    ramp = torch.linspace(0, 200, size).view(1, 1, 1, size)
    shift = torch.arange(n).view(n, 1, 1, 1) * 3 + torch.arange(channels).view(1, channels, 1, 1)
    images = (ramp + shift).expand(n, channels, size, size).clone()
    images[:, :, size // 4 : size // 2, size // 4 : size // 2] = 240  # a bright square
    return images.clamp(0, 255).to(torch.uint8)


def pillow_jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Reference: one (C, H, W) image through Pillow's JPEG coder, file on disk style."""
    pixels = image.permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(2) if image.shape[0] == 1 else pixels).save(
        buffer, "JPEG", quality=quality
    )
    buffer.seek(0)
    decoded = np.array(Image.open(buffer))
    return torch.from_numpy(decoded.reshape(*image.shape[1:], image.shape[0])).permute(2, 0, 1)


@pytest.mark.parametrize("channels", [1, 3])
def test_random_jpeg_replaces_about_half_the_images_by_their_jpeg_copies(channels):
    images = smooth_images(200, channels)
    out = random_jpeg(images, 75, torch.Generator().manual_seed(3))
    assert out.shape == images.shape and out.dtype == torch.uint8
    chosen = (torch.rand(200, generator=torch.Generator().manual_seed(3)) < 0.5).tolist()
    for i, compressed in enumerate(chosen):
        expected = pillow_jpeg(images[i], 75) if compressed else images[i]
        assert torch.equal(out[i], expected), f"image {i}"
    assert 70 < sum(chosen) < 130
    error = (out.float() - images.float()).abs().mean(dim=(1, 2, 3))  # per image, 0-255
    assert 0.1 < error[torch.tensor(chosen)].mean() < 10  # lossy, yet the same picture


def test_jpeg_round_trip_refuses_what_jpeg_cannot_hold():
    with pytest.raises(ConfigError, match="jpeg_quality needs grey or RGB images"):
        jpeg_round_trip(torch.zeros(4, 8, 8, dtype=torch.uint8), 75)


def test_random_jpeg_quality_sets_how_much_is_lost():
    images = smooth_images(64)
    lost = [
        random_jpeg(images, quality, torch.Generator().manual_seed(0)).float() - images
        for quality in (20, 75, 100)
    ]
    losses = [difference.abs().sum() for difference in lost]
    assert losses[0] > losses[1] > losses[2]


def test_jpeg_quality_in_the_loader_uses_its_own_draws_before_crop_and_flip():
    """Batch b of epoch e is JPEG'd with the draws of seeded_generator(seed, e, b, 1), then
    cropped and flipped with those of (seed, e, b, 0), so runs without JPEG keep their draws."""
    split = Split(smooth_images(40, size=16), torch.arange(40))
    loader = loader_for(split, batch_size=16, shuffle=True, augment=True, jpeg_quality=60, seed=7)
    loader.set_epoch(2)
    order = torch.randperm(40, generator=seeded_generator(7, 2))
    for batch, (x, y) in enumerate(loader):
        index = order[batch * 16 : (batch + 1) * 16]
        jpeg = random_jpeg(split.images[index], 60, seeded_generator(7, 2, batch, 1))
        expected = loader.normalise(augment_batch(jpeg, seeded_generator(7, 2, batch, 0)))
        assert torch.equal(x, expected) and torch.equal(y, index)
    plain = loader_for(split, batch_size=16, shuffle=True, augment=True, seed=7)
    assert not torch.equal(collect(plain)[0][0], collect(loader)[0][0])


def test_the_loader_codes_each_image_once_and_its_copies_are_what_coding_again_gives(
    monkeypatch,
):
    """In-memory data: an image's JPEG copy is kept by its place in the data set, so later
    epochs code only the images never chosen before, and every batch is what a loader coding
    each chosen image afresh gives."""
    from cnnlab.data import augment

    coded = []
    real = augment.jpeg_round_trip
    monkeypatch.setattr(
        augment, "jpeg_round_trip", lambda image, quality: coded.append(1) or real(image, quality)
    )
    split = Split(smooth_images(40, size=16), torch.arange(40))
    batches, calls = {}, {}
    for keep in (False, True):
        coded.clear()
        loader = loader_for(
            split, batch_size=16, shuffle=True, augment=True, jpeg_quality=60, seed=7
        )
        if not keep:
            loader.jpeg_copies = None
        batches[keep] = []
        for epoch in range(3):
            loader.set_epoch(epoch)
            batches[keep] += collect(loader)
        calls[keep] = len(coded)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches[False], batches[True], strict=True))
    made = loader.jpeg_copies.made
    assert calls[True] == int(made.sum()) <= 40 < calls[False]  # each image coded once at most
    expected = torch.stack([pillow_jpeg(image, 60) for image in split.images[made]])
    assert torch.equal(loader.jpeg_copies.store[made], expected)


def test_random_jpeg_takes_copies_and_indices_together():
    from cnnlab.data.augment import JpegCopies

    images, draws = smooth_images(4), torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="copies and indices together, or neither"):
        random_jpeg(images, 50, draws, copies=JpegCopies(images, 50))
    with pytest.raises(ValueError, match="copies and indices together, or neither"):
        random_jpeg(images, 50, draws, indices=torch.arange(4))


def test_augmented_batches_keep_shape_and_change_images():
    split = fake_split(n=32, size=32)
    plain = collect(loader_for(split, batch_size=32))
    augmented = collect(loader_for(split, batch_size=32, augment=True))
    assert augmented[0][0].shape == plain[0][0].shape and augmented[0][0].dtype == torch.float32
    assert not torch.equal(augmented[0][0], plain[0][0])
    assert torch.equal(augmented[0][1], plain[0][1])
    assert augment_padding(32) == 4 and augment_padding(28) == 3


def test_image_data_num_classes():
    split = fake_split(n=4)
    data = ImageData("x", ["a", "b"], MEAN, STD, (3, 8, 8), split, split, "here")
    assert data.num_classes == 2 and len(split) == 4


def test_make_loader_names_a_missing_validation_split_and_an_unknown_split():
    split = fake_split(n=4)
    data = ImageData("x", ["a", "b"], MEAN, STD, (3, 8, 8), split, split, "here")
    with pytest.raises(ConfigError) as missing:
        make_loader(data, "val", batch_size=2)
    assert str(missing.value) == "x has no validation split here; hold one out first"
    with pytest.raises(ConfigError) as unknown:
        make_loader(data, "dev", batch_size=2)
    assert str(unknown.value) == "split must be 'train', 'val' or 'test', got 'dev'"
