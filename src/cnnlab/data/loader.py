"""Loaders that yield normalised (x, y) batches on a device, reproducible to the batch.

TensorLoader (airbench style) keeps a whole split as one uint8 tensor on the device and slices
batches out of it; FolderLoader wraps a torch DataLoader over image files. Both behave the same:

    loader.set_epoch(epoch, start_batch=k)  # the order of an epoch depends on (seed, epoch) only
    for x, y in loader: ...                 # x float32 (B, C, H, W) normalised, y int64 (B,)

Augmentation randomness comes from (seed, epoch, batch index, rank), so starting an epoch at
batch k yields exactly the batches k.. of an uninterrupted epoch, bit for bit.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from cnnlab.data.augment import (
    Augment,
    JpegCopies,
    alternating_flips,
    augment_batch,
    random_jpeg,
)
from cnnlab.data.types import ImageData, Split
from cnnlab.errors import ConfigError
from cnnlab.process import usable_cores

Batch = tuple[torch.Tensor, torch.Tensor]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every part (and their order), stable across runs."""
    text = ",".join(str(int(part)) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded from `parts`: the same draws on every device."""
    return torch.Generator().manual_seed(derive_seed(*parts))


def default_num_workers() -> int:
    """Worker processes for image folders: up to 4, never more than the cores this process
    may use."""
    return min(4, usable_cores())


class _Normalise:
    """uint8 pixels -> (pixel / 255 - mean) / std as one fused op, pixel * scale + shift."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels: int, device):
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} values, got {mean} and {std}")
        std_t = torch.tensor(std, dtype=torch.float64)
        mean_t = torch.tensor(mean, dtype=torch.float64)
        # (C, 1, 1): broadcasts over (B, C, H, W) batches
        self.scale = (1 / (255 * std_t)).float().view(-1, 1, 1).to(device)
        self.shift = (-mean_t / std_t).float().view(-1, 1, 1).to(device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, images.float(), self.scale)


class _EpochBatches:
    """What both loaders share: epoch and resume bookkeeping, shuffling and sharding.

    Sharding (torchrun): a batch means the global batch, the same in every process (one
    permutation per epoch, from the seed alone), and process `rank` of `world_size` takes its
    part of it: the rows torch.tensor_split would give it. So len() and what each batch holds do
    not depend on the world size, and neither does a resume's data order. `batch_total` is the
    size of the whole batch last yielded: each part's gradient is weighed by its share of it.
    """

    def __init__(
        self, num_items: int, batch_size: int, *, shuffle: bool, drop_last: bool,
        seed: int, rank: int, world_size: int, augment: bool | Augment, jpeg_quality: int,
    ) -> None:  # fmt: skip
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size-1, got rank {rank} of {world_size}")
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.augment = Augment() if augment is True else augment or None  # None: off
        self.flip_coins = None  # (N,) bool: --flip alternate's one coin per image
        if self.augment is not None and self.augment.flip == "alternate":
            self.flip_coins = torch.rand(num_items, generator=seeded_generator(seed, 2)) < 0.5
        self.jpeg_quality = jpeg_quality  # 0: off
        self.jpeg_copies: JpegCopies | None = None  # in-memory data: each image coded once
        self.num_items = num_items
        self.batch_total = 0  # rows of the whole batch last yielded, every process's together
        self.epoch = 0
        self._start_batch = 0
        self.normalise: _Normalise  # set by each loader, which knows its device

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_items // self.batch_size
        return math.ceil(self.num_items / self.batch_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Use the order of `epoch`; the next iteration starts at batch `start_batch`."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch must be in 0..{len(self)}, got {start_batch}")
        self.epoch, self._start_batch = int(epoch), int(start_batch)

    def _begin(self) -> tuple[int, int]:
        """(epoch, first batch) for a new iteration; a start_batch only applies once."""
        start, self._start_batch = self._start_batch, 0
        return self.epoch, start

    def _order(self, epoch: int) -> torch.Tensor | None:
        """The sample indices of `epoch` in order (CPU int64), or None for 0..N-1."""
        if self.shuffle:
            return torch.randperm(self.num_items, generator=seeded_generator(self.seed, epoch))
        return None

    def _rows(self, batch: int) -> tuple[int, int, int]:
        """(first, stop, total): this process's rows of batch `batch` as positions in the
        epoch's order, and the size of the whole batch."""
        start = batch * self.batch_size
        total = min(self.batch_size, self.num_items - start)
        base, extra = divmod(total, self.world_size)
        first = start + self.rank * base + min(self.rank, extra)
        return first, first + base + (self.rank < extra), total

    def _finish(
        self, images: torch.Tensor, labels: torch.Tensor, epoch: int, batch: int,
        rows: tuple[int, int, int], indices: torch.Tensor,
    ) -> Batch:  # fmt: skip
        """The common ending of both loaders: augment uint8 images, then normalise.
        `indices`: the images' places in the data set (an alternating flip follows them)."""
        first, stop, total = rows
        self.batch_total = total
        start = batch * self.batch_size
        part = (first - start, stop - start, total)
        if self.jpeg_quality:
            # first, as the JPEG test images were saved whole; draws of their own (trailing 1)
            jpeg_draws = seeded_generator(self.seed, epoch, batch, 1)
            copies = self.jpeg_copies
            images = random_jpeg(
                images, self.jpeg_quality, jpeg_draws, part, copies=copies,
                indices=None if copies is None else indices,
            )  # fmt: skip
        if self.augment is not None:
            # the trailing 0 keeps the draws of runs saved before sharding by batch part
            draws = seeded_generator(self.seed, epoch, batch, 0)
            flips = None
            if self.flip_coins is not None:
                flips = alternating_flips(self.flip_coins, indices, epoch)
            images = augment_batch(images, draws, part, self.augment, flips)
        return self.normalise(images), labels


class TensorLoader(_EpochBatches):
    """Batches sliced from uint8 (N, C, H, W) images held on `device`, normalised there."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
        mean: Sequence[float], std: Sequence[float], shuffle: bool = False,
        drop_last: bool = False, seed: int = 0, device: str | torch.device = "cpu",
        augment: bool | Augment = False, jpeg_quality: int = 0, rank: int = 0,
        world_size: int = 1,
    ) -> None:  # fmt: skip
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(
                f"TensorLoader wants uint8 (N, C, H, W) images and N labels, got "
                f"{images.dtype} {tuple(images.shape)} and {tuple(labels.shape)}"
            )
        super().__init__(
            len(images), batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
            rank=rank, world_size=world_size, augment=augment, jpeg_quality=jpeg_quality,
        )  # fmt: skip
        self.device = torch.device(device)
        self.normalise = _Normalise(mean, std, images.shape[1], self.device)
        self.images = images.to(self.device).contiguous()  # (N, C, H, W) uint8, moved once
        self.jpeg_copies = JpegCopies(self.images, jpeg_quality) if jpeg_quality else None
        self.labels = labels.to(self.device, torch.int64)  # (N,)

    def __iter__(self) -> Iterator[Batch]:
        epoch, start = self._begin()  # taken now, not at the first next()
        return self._batches(epoch, start)

    def _batches(self, epoch: int, start: int) -> Iterator[Batch]:
        order = self._order(epoch)
        if order is not None:
            order = order.to(self.device)
        for batch in range(start, len(self)):
            rows = self._rows(batch)
            first, stop, _ = rows
            if order is None:  # in order: a view, no copy
                index = torch.arange(first, stop)
                images, labels = self.images[first:stop], self.labels[first:stop]
            else:
                index = order[first:stop]
                images = self.images.index_select(0, index)  # (B, C, H, W) uint8
                labels = self.labels.index_select(0, index)
            yield self._finish(images, labels, epoch, batch, rows, index)


class FolderLoader(_EpochBatches):
    """A torch DataLoader over an image Dataset of uint8 (C, H, W) images, driven by the same
    per-epoch order as TensorLoader (skipped batches are never loaded); batches are augmented
    and normalised on the device as TensorLoader's are."""

    def __init__(
        self, dataset: Dataset, *, batch_size: int, mean: Sequence[float],
        std: Sequence[float], shuffle: bool = False, drop_last: bool = False, seed: int = 0,
        device: str | torch.device = "cpu", augment: bool | Augment = False,
        jpeg_quality: int = 0, rank: int = 0, world_size: int = 1,
        num_workers: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__(
            len(dataset), batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
            rank=rank, world_size=world_size, augment=augment, jpeg_quality=jpeg_quality,
        )  # fmt: skip
        self.dataset = dataset
        self.device = torch.device(device)
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.normalise = _Normalise(mean, std, len(mean), self.device)

    def __iter__(self) -> Iterator[Batch]:
        epoch, start = self._begin()
        order = self._order(epoch)
        indices = list(range(self.num_items)) if order is None else order.tolist()
        rows = [self._rows(batch) for batch in range(start, len(self))]
        # a process whose part of a last, small batch is empty loads nothing for it
        batches = [indices[first:stop] for first, stop, _ in rows if stop > first]
        loader = DataLoader(
            self.dataset,
            batch_sampler=batches,
            num_workers=min(self.num_workers, len(batches)),
            pin_memory=self.device.type == "cuda",
        )
        return self._batches(iter(loader), epoch, start, rows, indices)

    def _batches(
        self, loaded: Iterator, epoch: int, start: int, rows: list[tuple[int, int, int]],
        indices: list[int],
    ) -> Iterator[Batch]:  # fmt: skip
        for batch, part in enumerate(rows, start):
            index = torch.tensor(indices[part[0] : part[1]], dtype=torch.int64)
            if part[1] > part[0]:
                images, labels = next(loaded)
            else:
                images, labels = self._empty_batch()
            images = images.to(self.device, non_blocking=True)  # (B, C, H, W) uint8
            labels = labels.to(self.device, torch.int64, non_blocking=True)
            yield self._finish(images, labels, epoch, batch, part, index)

    def _empty_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """No rows, with the images' shape (C, H, W): a process still joins every step."""
        shape = self.dataset[0][0].shape
        return torch.zeros((0, *shape), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)


def make_loader(
    data: ImageData, split: str, *, batch_size: int, shuffle: bool = False,
    device: str | torch.device = "cpu", seed: int = 0, augment: bool | Augment = False,
    jpeg_quality: int = 0, drop_last: bool = False, rank: int = 0, world_size: int = 1,
    num_workers: int | None = None,
) -> TensorLoader | FolderLoader:  # fmt: skip
    """A loader over `data.train`, `data.val` or `data.test`: TensorLoader for in-memory
    splits, FolderLoader (with `num_workers` processes) for image folders."""
    part = {"train": data.train, "val": data.val, "test": data.test}.get(split)
    if part is None and split == "val":
        raise ConfigError(f"{data.name} has no validation split here; hold one out first")
    if part is None:
        raise ConfigError(f"split must be 'train', 'val' or 'test', got {split!r}")
    common = dict(
        batch_size=batch_size, mean=data.mean, std=data.std, shuffle=shuffle,
        drop_last=drop_last, seed=seed, device=device, augment=augment,
        jpeg_quality=jpeg_quality, rank=rank, world_size=world_size,
    )  # fmt: skip
    if isinstance(part, Split):
        return TensorLoader(part.images, part.labels, **common)
    return FolderLoader(part, num_workers=num_workers, **common)
