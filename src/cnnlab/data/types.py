"""What a loaded data set is: uint8 images (N, C, H, W), int64 labels, class names, mean/std."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass
class Split:
    """One split held in memory: `images` uint8 (N, C, H, W) contiguous, `labels` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    # bool (N,): which images come from a lossless original, where the data set marks them (a
    # test.npz's `exact` array: ../shared/data's CIFAR-10 test images after the first 1,017 are
    # JPEG-decoded copies); None: unmarked
    exact: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, mask: torch.Tensor) -> Split:
        """The images where the bool `mask` is true, in order, with their labels and marks."""
        exact = None if self.exact is None else self.exact[mask]
        return Split(self.images[mask], self.labels[mask], exact)


@dataclass
class ImageData:
    """A data set ready for `make_loader`: its splits plus what a model and a report need.
    `val`, when there is one, was held out of the training set (holdout.py)."""

    name: str  # "fashion-mnist", "npz:/path", "folder:/path"
    class_names: list[str]
    mean: tuple[float, ...]  # per channel, in [0, 1] pixel units
    std: tuple[float, ...]
    input_shape: tuple[int, int, int]  # (C, H, W)
    train: Split | Dataset  # a Dataset only for folder: data (images decoded on the fly)
    test: Split | Dataset
    location: str  # where it was found, for messages and the run's config.json
    val: Split | Dataset | None = None  # the validation split: what chooses a model

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def split_from_numpy(
    images: np.ndarray, labels: np.ndarray, exact: np.ndarray | None = None
) -> Split:
    """Wrap (N, C, H, W) uint8 and (N,) integer arrays (and the optional (N,) bool marks of
    exact images) as a Split, copying only when needed."""
    images = np.ascontiguousarray(images)
    if not images.flags.writeable:  # torch.from_numpy warns on read-only memory
        images = images.copy()
    labels = np.asarray(labels, dtype=np.int64)
    if not labels.flags.writeable:
        labels = labels.copy()
    marks = None if exact is None else torch.from_numpy(np.array(exact, dtype=bool))
    return Split(torch.from_numpy(images), torch.from_numpy(labels), marks)


def channel_histogram(images: torch.Tensor) -> torch.Tensor:
    """How often each value 0..255 occurs per channel of uint8 (N, C, H, W) images: (C, 256)."""
    return torch.stack(
        [torch.bincount(images[:, c].reshape(-1), minlength=256) for c in range(images.shape[1])]
    )


def stats_from_histogram(counts: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] pixel units from (C, 256) value counts."""
    counts = counts.double()
    values = torch.arange(256, dtype=torch.float64) / 255
    total = counts.sum(dim=1).clamp(min=1)  # (C,)
    mean = (counts * values).sum(dim=1) / total
    var = (counts * (values - mean[:, None]) ** 2).sum(dim=1) / total
    std = var.sqrt().clamp(min=1e-6)  # a constant channel must not divide by zero
    return tuple(mean.tolist()), tuple(std.tolist())


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images, in [0, 1] pixel units.

    Exact sums from a 256-bin histogram per channel, without a float copy of the data.
    """
    return stats_from_histogram(channel_histogram(images))
