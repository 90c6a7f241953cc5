"""The loaders' numbers pinned against plain torch / hashlib written out here: the seeds, the
epoch order, the augmentation draws, each process's rows, the normalisation, and that
FolderLoader and make_loader pass every option on."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, get_worker_info

from cnnlab.data import FolderLoader, ImageData, Split, TensorLoader, make_loader
from cnnlab.data.loader import default_num_workers, derive_seed
from helpers import collect

MEAN, STD = (0.485, 0.456, 0.406), (0.3, 0.224, 0.3081)  # float32 would round these apart
SEED_PARTS = [(0,), (0, 0), (1, 2, 3), (3, 2, 1), (12, 3), (1, 23), (2**40, 7, 0), (5, 9, 4, 0)]


def reference_seed(*parts: int) -> int:
    """The documented seed: blake2b-64 of "a,b,c" read little-endian, shifted right by one."""
    digest = hashlib.blake2b(",".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") // 2


def reference_generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(reference_seed(*parts))


def images_and_labels(n: int, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, 3, size, size) noise; label i marks sample i."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    return images, torch.arange(n)


def normalised(images: torch.Tensor) -> torch.Tensor:
    """(p / 255 - mean) / std in float64, the value the loaders approximate in float32."""
    mean = torch.tensor(MEAN, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(STD, dtype=torch.float64).view(1, -1, 1, 1)
    return (images.double() / 255 - mean) / std


def reference_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Crop (padding H // 8, one offset pair per sample) then flip (p = 0.5), sample by sample."""
    batch, _, height, width = images.shape
    padding = max(1, height // 8)
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator)
    flips = torch.rand(batch, generator=generator) < 0.5
    out = torch.empty_like(images)
    for i in range(batch):
        padded = F.pad(images[i], (padding,) * 4)
        top, left = int(offsets[0, i]), int(offsets[1, i])
        window = padded[:, top : top + height, left : left + width]
        out[i] = window.flip(2) if flips[i] else window
    return out


class TinyImages(Dataset):
    """An in-memory image Dataset as ImageFolder yields it: (uint8 (C, H, W), label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, label_dtype=None):
        self.images, self.labels, self.label_dtype = images, labels, label_dtype

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        label = int(self.labels[index])
        if self.label_dtype is not None:
            return self.images[index], torch.tensor(label, dtype=self.label_dtype)
        return self.images[index], label


def tensor_loader(images, labels, **kwargs) -> TensorLoader:
    return TensorLoader(images, labels, mean=MEAN, std=STD, **kwargs)


def folder_loader(images, labels, **kwargs) -> FolderLoader:
    kwargs.setdefault("num_workers", 0)
    return FolderLoader(TinyImages(images, labels), mean=MEAN, std=STD, **kwargs)


def assert_same_batches(got, expected) -> None:
    assert len(got) == len(expected)
    for (x, y), (x_ref, y_ref) in zip(got, expected, strict=True):
        assert torch.equal(y, y_ref) and y.dtype == torch.int64
        assert torch.equal(x, x_ref) and x.dtype == torch.float32


# ---- seeds and order -------------------------------------------------------------------


def test_derive_seed_is_blake2b_of_the_comma_joined_parts():
    """Saved runs resume with the same data order only if the seed formula never changes."""
    for parts in SEED_PARTS:
        seed = derive_seed(*parts)
        assert seed == reference_seed(*parts), parts
        assert 0 <= seed < 2**63
    assert derive_seed(12, 3) != derive_seed(1, 23) and derive_seed(1, 2) != derive_seed(2, 1)


def test_shuffled_order_is_randperm_of_the_seed_and_epoch():
    """An epoch's order is torch.randperm from a CPU generator seeded with (seed, epoch); the
    default seed is 0 and a fresh loader uses epoch 0."""
    images, labels = images_and_labels(23)
    for kwargs, epoch in [({"seed": 7}, 3), ({}, 0), ({"seed": 7}, 0)]:
        seed = kwargs.get("seed", 0)
        expected = torch.randperm(23, generator=reference_generator(seed, epoch))
        loader = tensor_loader(images, labels, batch_size=5, shuffle=True, **kwargs)
        if epoch:
            loader.set_epoch(epoch)
        assert torch.cat([y for _, y in loader]).tolist() == expected.tolist()


def test_augmentation_draws_come_from_seed_epoch_batch_and_a_trailing_zero():
    """Batch b of epoch e is augmented with the draws of the generator seeded with
    (seed, e, b, 0) made for the whole batch; a process keeps its rows of them."""
    images, labels = images_and_labels(11, size=16)
    seed, epoch, batch_size = 5, 2, 4
    expected = []
    for batch, start in enumerate(range(0, 11, batch_size)):
        part = images[start : start + batch_size]
        augmented = reference_augment(part, reference_generator(seed, epoch, batch, 0))
        expected.append(normalised(augmented))
    whole = tensor_loader(images, labels, batch_size=batch_size, augment=True, seed=seed)
    whole.set_epoch(epoch)
    for (x, y), ref in zip(whole, expected, strict=True):
        torch.testing.assert_close(x.double(), ref, rtol=0, atol=2e-5)
        assert len(y) == len(ref)
    shard = tensor_loader(
        images, labels, batch_size=batch_size, augment=True, seed=seed, rank=1, world_size=2
    )
    shard.set_epoch(epoch, start_batch=1)  # a resumed epoch: batches 1 and 2, rows [2:4], [2:3]
    parts = [(x, ref[2:4]) for (x, _), ref in zip(shard, expected[1:], strict=True)]
    assert [len(x) for x, _ in parts] == [2, 1]
    for x, ref in parts:
        torch.testing.assert_close(x.double(), ref, rtol=0, atol=2e-5)


@pytest.mark.parametrize(("n", "batch_size", "world_size"), [(23, 5, 3), (10, 4, 4), (7, 2, 3)])
def test_each_rank_gets_the_rows_tensor_split_gives_it(n, batch_size, world_size):
    """Rank r's part of a batch is torch.tensor_split(batch, world_size)[r] (empty parts when
    the batch is smaller than the world), and batch_total the whole batch's size."""
    images, labels = images_and_labels(n)
    batches = torch.arange(n).split(batch_size)
    for rank in range(world_size):
        loader = tensor_loader(
            images, labels, batch_size=batch_size, rank=rank, world_size=world_size
        )
        assert loader.batch_total == 0  # nothing yielded yet
        for (x, y), whole in zip(loader, batches, strict=True):
            part = torch.tensor_split(whole, world_size)[rank]
            assert y.tolist() == part.tolist()
            assert x.shape == (len(part), 3, 8, 8)
            assert loader.batch_total == len(whole)


def test_batch_size_one_and_a_start_at_the_end_of_the_epoch():
    """batch_size 1 is allowed; set_epoch(e, start_batch=len(loader)) (a run saved after the
    last batch of an epoch) is allowed and yields nothing."""
    images, labels = images_and_labels(3)
    loader = tensor_loader(images, labels, batch_size=1)
    assert [y.tolist() for _, y in loader] == [[0], [1], [2]]
    loader.set_epoch(1, start_batch=3)
    assert list(loader) == []
    assert len(list(loader)) == 3  # the start applies once


# ---- normalisation and argument checks -------------------------------------------------


def test_normalise_rounds_scale_and_shift_once_from_double_precision():
    """pixel * float32(1 / (255 std)) + float32(-mean / std), both computed in double: with
    these mean/std a float32 computation would round differently."""
    images, labels = images_and_labels(6)
    ((x, _),) = list(tensor_loader(images, labels, batch_size=6))
    scale = torch.tensor([1 / (255 * s) for s in STD]).view(1, 3, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(MEAN, STD, strict=True)]).view(1, 3, 1, 1)
    assert torch.equal(x, torch.addcmul(shift, images.float(), scale))
    torch.testing.assert_close(x.double(), normalised(images), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("mean", "std"), [((0.5,), STD), (MEAN, (0.5,))])
def test_a_mean_or_std_of_the_wrong_length_is_refused(mean, std):
    """Each of mean and std needs one value per channel, and the message says so."""
    images, labels = images_and_labels(4)
    with pytest.raises(ValueError, match=r"mean and std need 3 values"):
        TensorLoader(images, labels, batch_size=2, mean=mean, std=std)


def test_tensor_loader_refuses_images_that_are_not_n_c_h_w_or_labels_that_do_not_match():
    """uint8 images must have 4 dimensions and one label each; either fault alone is refused."""
    images, labels = images_and_labels(4)
    with pytest.raises(ValueError, match="TensorLoader wants"):
        tensor_loader(images[:, 0], labels, batch_size=2)  # uint8 (N, H, W)
    with pytest.raises(ValueError, match="TensorLoader wants"):
        tensor_loader(images, labels[:3], batch_size=2)


def test_labels_come_out_as_int64():
    """int32 labels (a Split or a Dataset's label tensors) are yielded as int64."""
    images, labels = images_and_labels(5)
    ((_, y),) = list(tensor_loader(images, labels.int(), batch_size=5))
    assert y.dtype == torch.int64 and y.tolist() == list(range(5))
    dataset = TinyImages(images, labels, label_dtype=torch.int32)
    loader = FolderLoader(dataset, batch_size=5, mean=MEAN, std=STD, num_workers=0)
    ((_, y),) = list(loader)
    assert y.dtype == torch.int64 and y.tolist() == list(range(5))


def test_default_num_workers_is_up_to_four_and_never_more_than_the_cpus(monkeypatch):
    """Four workers on a big machine, one per usable core on a small one (the cores this
    process may run on: process.usable_cores, tested in test_core_exact.py)."""
    from cnnlab.data import loader

    for cores, workers in [(16, 4), (5, 4), (4, 4), (3, 3), (2, 2), (1, 1)]:
        monkeypatch.setattr(loader, "usable_cores", lambda cores=cores: cores)
        assert default_num_workers() == workers


# ---- FolderLoader and make_loader pass every option on ---------------------------------


def test_folder_loader_defaults_are_in_order_whole_plain_and_seed_zero():
    """Without options a FolderLoader yields every sample in order, normalised, unaugmented,
    the whole batch (rank 0 of 1), on the CPU; shuffled, its order is that of seed 0."""
    images, labels = images_and_labels(10)
    loader = FolderLoader(TinyImages(images, labels), batch_size=4, mean=MEAN, std=STD)
    assert loader.num_workers == default_num_workers()
    batches = collect(loader)
    assert [y.tolist() for _, y in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    x = torch.cat([x for x, _ in batches])
    assert x.device.type == "cpu"
    torch.testing.assert_close(x.double(), normalised(images), rtol=0, atol=1e-5)
    shuffled = FolderLoader(
        TinyImages(images, labels), batch_size=4, mean=MEAN, std=STD, shuffle=True, num_workers=0
    )
    assert shuffled.num_workers == 0
    expected = torch.randperm(10, generator=reference_generator(0, 0))
    assert torch.cat([y for _, y in shuffled]).tolist() == expected.tolist()


OPTIONS = [
    dict(shuffle=True, seed=3),
    dict(augment=True, seed=4),
    dict(drop_last=True),
    dict(shuffle=True, augment=True, seed=2, rank=1, world_size=3),
    dict(shuffle=True, augment=True, seed=2, rank=2, world_size=3, drop_last=True),
    dict(shuffle=True, augment=True, seed=6, jpeg_quality=40, rank=1, world_size=3),
    dict(shuffle=True, augment=True, seed=6, jpeg_quality=40),
]


def test_jpeg_quality_changes_the_batches_it_is_given_to():
    """So the OPTIONS with jpeg_quality tell a loader that passes it on from one that drops it."""
    images, labels = images_and_labels(14, size=16)
    plain = tensor_loader(images, labels, batch_size=4, shuffle=True, augment=True, seed=6)
    jpeg = tensor_loader(images, labels, batch_size=4, **OPTIONS[-1])
    assert not torch.equal(collect(plain)[0][0], collect(jpeg)[0][0])


@pytest.mark.parametrize("options", OPTIONS)
def test_folder_loader_matches_tensor_loader_for_every_option(options):
    """FolderLoader and TensorLoader promise the same batches for the same options."""
    images, labels = images_and_labels(14, size=16)
    expected = tensor_loader(images, labels, batch_size=4, **options)
    got = folder_loader(images, labels, batch_size=4, **options)
    for loader in (expected, got):
        loader.set_epoch(1, start_batch=1)
    assert len(got) == len(expected)
    assert_same_batches(collect(got), collect(expected))
    assert got.batch_total == expected.batch_total
    for loader in (expected, got):  # another epoch: TensorLoader's kept JPEG copies are used
        loader.set_epoch(2)
    assert_same_batches(collect(got), collect(expected))


class WorkerCount(Dataset):
    """Six blank images whose label is how many worker processes loaded it (0: the caller)."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int):
        info = get_worker_info()
        return torch.zeros((1, 4, 4), dtype=torch.uint8), 0 if info is None else info.num_workers


@pytest.mark.parametrize(("num_workers", "batch_size", "used"), [(0, 2, 0), (2, 2, 2), (2, 6, 1)])
def test_folder_loader_loads_in_the_worker_processes_it_is_given(num_workers, batch_size, used):
    """num_workers processes load the images (no more than there are batches to load)."""
    loader = FolderLoader(
        WorkerCount(), batch_size=batch_size, mean=(0.5,), std=(0.5,), num_workers=num_workers
    )
    assert torch.cat([y for _, y in loader]).tolist() == [used] * 6


def test_folder_loader_empty_part_of_a_one_sample_dataset():
    """A rank with no rows of a batch gets (0, C, H, W) images, even when the data set holds a
    single sample, and still learns the whole batch's size."""
    images, labels = images_and_labels(1)
    loader = folder_loader(images, labels, batch_size=4, rank=1, world_size=2, augment=True)
    ((x, y),) = list(loader)
    assert x.shape == (0, 3, 8, 8) and x.dtype == torch.float32
    assert y.shape == (0,) and y.dtype == torch.int64
    assert loader.batch_total == 1


def image_data(train, test) -> ImageData:
    return ImageData("tiny", ["a", "b"], MEAN, STD, (3, 16, 16), train, test, "here")


@pytest.mark.parametrize("options", OPTIONS)
def test_make_loader_passes_every_option_on(options):
    """make_loader(data, split, **options) is TensorLoader / FolderLoader over that split with
    exactly those options."""
    train_images, train_labels = images_and_labels(14, size=16, seed=1)
    test_images, test_labels = images_and_labels(9, size=16, seed=2)
    data = image_data(Split(train_images, train_labels), Split(test_images, test_labels))
    for split, (images, labels) in [("train", (train_images, train_labels)),
                                    ("test", (test_images, test_labels))]:  # fmt: skip
        expected = tensor_loader(images, labels, batch_size=4, **options)
        got = make_loader(data, split, batch_size=4, **options)
        assert isinstance(got, TensorLoader)
        assert_same_batches(collect(got), collect(expected))
    folders = image_data(
        TinyImages(train_images, train_labels), TinyImages(test_images, test_labels)
    )
    got = make_loader(folders, "train", batch_size=4, num_workers=0, **options)
    assert isinstance(got, FolderLoader) and got.num_workers == 0
    assert_same_batches(
        collect(got), collect(tensor_loader(train_images, train_labels, batch_size=4, **options))
    )


def test_make_loader_defaults_are_in_order_whole_plain_and_seed_zero():
    """Without options make_loader yields the split in order, unaugmented, whole; shuffled, in
    the order of seed 0; over a folder it uses default_num_workers() processes."""
    images, labels = images_and_labels(9, size=16)
    data = image_data(Split(images, labels), Split(images[:3], labels[:3]))
    batches = collect(make_loader(data, "train", batch_size=4))
    assert [y.tolist() for _, y in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    x = torch.cat([x for x, _ in batches])
    torch.testing.assert_close(x.double(), normalised(images), rtol=0, atol=1e-5)
    shuffled = make_loader(data, "train", batch_size=4, shuffle=True)
    expected = torch.randperm(9, generator=reference_generator(0, 0))
    assert torch.cat([y for _, y in shuffled]).tolist() == expected.tolist()
    folders = image_data(TinyImages(images, labels), TinyImages(images, labels))
    assert make_loader(folders, "test", batch_size=4).num_workers == default_num_workers()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_folder_loader_and_make_loader_batches_live_on_the_requested_device():
    """FolderLoader (direct and through make_loader) yields its batches on the device it is
    given, the same numbers as on the CPU."""
    images, labels = images_and_labels(10, size=16)
    options = dict(batch_size=4, shuffle=True, augment=True, seed=1)
    cpu = collect(tensor_loader(images, labels, **options))
    folders = image_data(TinyImages(images, labels), TinyImages(images, labels))
    loaders = [
        folder_loader(images, labels, device="cuda", **options),
        make_loader(folders, "train", device="cuda", num_workers=0, **options),
    ]
    for loader in loaders:
        got = collect(loader)
        assert len(got) == len(cpu)
        for (x, y), (x_cpu, y_cpu) in zip(got, cpu, strict=True):
            assert x.device.type == "cuda" and y.device.type == "cuda" and y.dtype == torch.int64
            torch.testing.assert_close(x.cpu(), x_cpu)
            assert torch.equal(y.cpu(), y_cpu)
