"""Held-out splits: a seeded share of every class, taken from a training set.

The validation split (`--val-fraction`, any data set) comes from the training images, so the
test split is never what picks a model; a folder of class folders with no train/ and test/
gets its test split the same way (folder.py). Each class keeps at least one image on the
training side, and both sides keep the images' order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset, Subset

from cnnlab.config.fields import FieldError
from cnnlab.data.types import ImageData, Split
from cnnlab.errors import ConfigError


def held_out(
    labels: torch.Tensor, fraction: float, seed: int, *, at_least: int = 0
) -> torch.Tensor:
    """A bool mask over `labels`: round(fraction × its size) of every class's items, or
    `at_least`, and at most all but one, drawn with `seed`. Classes are drawn in label order
    from one generator, so the mask depends on the labels, the fraction and the seed alone."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"a held-out share must be in [0, 1), got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        count = min(max(round(len(members) * fraction), at_least), len(members) - 1)
        picked = torch.randperm(len(members), generator=generator)[:count]
        mask[members[picked]] = True
    return mask


class Items(Subset):
    """torch's Subset with the items' labels as `targets` (as ImageFiles and PixelItems have
    them), so it can be split again and counted without reading an image."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], targets: Sequence[int]):
        super().__init__(dataset, list(indices))
        self.targets = list(targets)


def labels_of(part: Split | Dataset) -> torch.Tensor:
    """Every label of a split: in memory, or a Dataset's `targets`."""
    if isinstance(part, Split):
        return part.labels
    return torch.as_tensor(list(part.targets), dtype=torch.int64)


def take(part: Split | Dataset, mask: torch.Tensor, labels: torch.Tensor) -> Split | Items:
    """The items of `part` (whose labels are `labels`) where `mask` is true, in order."""
    if isinstance(part, Split):
        return part.subset(mask)
    return Items(part, torch.nonzero(mask).flatten().tolist(), labels[mask].tolist())


def with_validation(data: ImageData, fraction: float, seed: int) -> ImageData:
    """A copy of `data` whose `val` split is `fraction` of every class of its training set,
    drawn with `seed` (one at least, of a class with two or more: a small data set still
    gets a validation split), and whose `train` is the rest. Fraction 0: no validation split."""
    if fraction == 0:
        return dataclasses.replace(data, val=None)
    labels = labels_of(data.train)  # once: a Dataset without `targets` is read for them
    mask = held_out(labels, fraction, seed, at_least=1)
    if not mask.any():
        name = data.name.replace("{", "{{").replace("}", "}}")  # a template: braces doubled
        raise FieldError(
            "val_fraction",
            f"no validation image can be held out of {name}'s {len(data.train)} training "
            "images (one per class); give it more images, or {val_fraction} 0",
        )
    train, val = (take(data.train, keep, labels) for keep in (~mask, mask))
    return dataclasses.replace(data, train=train, val=val)
