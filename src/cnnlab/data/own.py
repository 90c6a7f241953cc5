"""Your own data from Python: a torch Dataset, or images and labels in memory, as ImageData.

    cnnlab.train(model=MyNet, train_data=my_train_set, test_data=my_test_set)
    cnnlab.train(train_data=(images, labels), test_data=(test_images, test_labels))

A Dataset's item is (image, label), as seed 004's `__getitem__` gives it: the image a tensor or
array, (C, H, W) or (H, W), or a PIL image; the label an int. Images are pixels: uint8, or
floats in [0, 1] (what ToTensor gives), which are exactly k/255 for 8-bit images and so become
uint8 again without loss. cnnlab scales them itself, with the training split's mean and std, so
data that is already normalised (outside [0, 1]) is refused, saying so.

A data set that fits in memory (MEMORY_SHARE of it) is read once into uint8 tensors and takes
the fast in-memory path (TensorLoader); a larger one stays a Dataset, read batch by batch by a
DataLoader (FolderLoader), as image folders are. Either way the run records what it was given
(`ImageData.name` is "python:<class>"), and a resumed run or an evaluation must be given the
same data again: it cannot be read from a file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from cnnlab.data.loader import default_num_workers
from cnnlab.data.types import ImageData, Split, channel_histogram, stats_from_histogram
from cnnlab.errors import ConfigError, DataFormatError

PREFIX = "python"  # data set names "python:<class>": data given in Python, not on disk
MEMORY_SHARE = 0.25  # an in-memory copy may take this share of the machine's memory
WORKERS_FROM = 5000  # items: below this, reading in this process beats starting workers
GIVEN = "tensors"  # the class part of the name for (images, labels) given in memory
STATS_SAMPLE = 2000  # mean/std of a Dataset read batch by batch: from this many images


def own_data(train: Any, test: Any, *, class_names: Sequence[str] | None = None) -> ImageData:
    """ImageData from a Dataset or (images, labels) per split (see the module docstring);
    `class_names` default to the Dataset's `classes` (torchvision's convention), else "0".."K-1".
    `train` may be None where only a test split is needed (evaluation: the checkpoint has the
    mean and std)."""
    if test is None:
        raise ConfigError(
            "give test_data too: a Dataset or (images, labels) to measure the model on "
            "(torch.utils.data.random_split splits one Dataset in two)"
        )
    splits = {"train": train, "test": test}
    parts = {key: _split(value, key) for key, value in splits.items() if value is not None}
    shapes = {key: _image_shape(part) for key, part in parts.items()}
    if len(set(shapes.values())) > 1:
        raise DataFormatError(
            f"train images are {_dims(shapes['train'])} but test images are "
            f"{_dims(shapes['test'])}: give both splits images of one size"
        )
    labels = [_labels(part) for part in parts.values()]
    highest = max(int(values.max()) for values in labels if len(values))
    names = _class_names(class_names, train if train is not None else test, highest)
    mean, std = stats_from_histogram(_histogram(parts.get("train", parts["test"])))
    source = train if train is not None else test
    name = f"{PREFIX}:{type(source).__name__ if _is_dataset(source) else GIVEN}"
    sizes = ", ".join(f"{len(part):,} {key}" for key, part in parts.items())
    return ImageData(
        name=name, class_names=names, mean=mean, std=std, input_shape=shapes["test"],
        train=parts.get("train") or _no_images(shapes["test"]), test=parts["test"],
        location=f"given in Python ({_kind(source)}: {sizes} images)",
    )  # fmt: skip


def _no_images(shape: tuple[int, int, int]) -> Split:
    return Split(torch.empty((0, *shape), dtype=torch.uint8), torch.empty(0, dtype=torch.int64))


def given_in_python(name: str) -> bool:
    return name.startswith(f"{PREFIX}:")


def not_on_disk(name: str) -> ConfigError:
    """The error for reading "python:..." data from disk: it was given in Python."""
    return ConfigError(
        f"data set {name} was given to cnnlab.train in Python and cannot be read from a file; "
        "give the same data again: cnnlab.train(resume=RUN, train_data=..., test_data=...), "
        "cnnlab.evaluate_checkpoint(RUN, test_data=...)"
    )


class PixelItems(Dataset):
    """A user's Dataset whose items come out as cnnlab's: (uint8 (C, H, W), int label)."""

    def __init__(self, dataset: Dataset, split: str) -> None:
        self.dataset, self.split = dataset, split

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataFormatError(
                f"{self.split} item {index} is {type(item).__name__}, not (image, label); "
                "__getitem__ must return the image and its class index"
            )
        image = pixels(item[0], f"{self.split} image {index}", one=True)
        return image[0], _label(item[1], f"{self.split} label {index}")

    @property
    def targets(self) -> list[int]:
        """Every label: the Dataset's own `targets` (torchvision's convention) when it has
        them, else read item by item."""
        given = getattr(self.dataset, "targets", None)
        if given is not None and len(given) == len(self):
            return [_label(value, f"{self.split} label {i}") for i, value in enumerate(given)]
        return [int(label) for _, labels in _all_batches(self) for label in labels]


def pixels(images: Any, what: str, *, one: bool = False) -> torch.Tensor:
    """uint8 (N, C, H, W) from images given as uint8, integers in 0..255 or floats in [0, 1]:
    (N, C, H, W) or grey (N, H, W); with `one`, a single image, (C, H, W), (H, W) or a PIL
    image, as N = 1."""
    if hasattr(images, "getbands"):  # a PIL image
        from torchvision.transforms.functional import pil_to_tensor

        images = pil_to_tensor(images)
    tensor = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
    if one and tensor.ndim in (2, 3):
        tensor = tensor[None]
    if tensor.ndim == 3:  # grey images without a channel axis
        tensor = tensor[:, None]
    if tensor.ndim != 4:
        raise DataFormatError(f"{what} has shape {tuple(tensor.shape)}; give (N, C, H, W) images")
    if tensor.shape[1] not in (1, 3) and tensor.shape[-1] in (1, 3):
        raise DataFormatError(
            f"{what} has shape {tuple(tensor.shape)}, channels last; give channels first, "
            "(N, C, H, W): images.permute(0, 3, 1, 2)"
        )
    return _as_uint8(tensor.detach().cpu(), what)


def _as_uint8(tensor: torch.Tensor, what: str) -> torch.Tensor:
    if tensor.dtype == torch.uint8:
        return tensor.contiguous()
    if tensor.dtype == torch.bool or tensor.numel() == 0:
        return tensor.to(torch.uint8) * (255 if tensor.dtype == torch.bool else 1)
    low, high = float(tensor.min()), float(tensor.max())
    if tensor.is_floating_point():
        if low < -1e-6 or high > 1 + 1e-6:
            raise DataFormatError(
                f"{what} holds floats from {low:.3g} to {high:.3g}, not pixels in [0, 1]; "
                "cnnlab normalises images itself (the training split's mean and std): give "
                "ToTensor's pixels without Normalize, or uint8"
            )
        return (tensor.float() * 255).round_().clamp_(0, 255).to(torch.uint8)
    if low < 0 or high > 255:
        raise DataFormatError(f"{what} holds integers from {low:g} to {high:g}, not 0..255 pixels")
    return tensor.to(torch.uint8)


def _label(value: Any, what: str) -> int:
    if (torch.is_tensor(value) or isinstance(value, np.ndarray)) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, float)) or not isinstance(value, (int, np.integer)):
        raise DataFormatError(f"{what} is {value!r}; a label is a class index, an int")
    if value < 0:
        raise DataFormatError(f"{what} is {value}; class indices start at 0")
    return int(value)


def _split(value: Any, split: str) -> Split | PixelItems:
    if _is_dataset(value):
        items = PixelItems(value, split)
        if len(items) == 0:
            raise DataFormatError(f"{split}_data is empty; give it some images")
        if _bytes_estimate(items) <= memory_budget():
            return _read_all(items)
        return items
    if isinstance(value, (tuple, list)) and len(value) == 2:
        images = pixels(value[0], f"{split}_data's images")
        labels = torch.as_tensor(value[1])
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataFormatError(
                f"{split}_data has {len(images)} images and labels of shape "
                f"{tuple(labels.shape)}; give one class index per image"
            )
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise DataFormatError(f"{split}_data's labels are {labels.dtype}; give class indices")
        if len(labels) and int(labels.min()) < 0:
            raise DataFormatError(f"{split}_data has a negative label; class indices start at 0")
        return Split(images, labels.to(torch.int64).contiguous())
    raise ConfigError(
        f"{split}_data is {type(value).__name__}; give a torch Dataset of (image, label) items "
        "or a pair (images, labels)"
    )


def _is_dataset(value: Any) -> bool:
    return (
        hasattr(value, "__getitem__")
        and hasattr(value, "__len__")
        and not isinstance(value, (tuple, list, str, bytes, dict, torch.Tensor, np.ndarray))
    )


def _read_all(items: PixelItems) -> Split:
    """Every item once, into one uint8 tensor."""
    batches = _all_batches(items)
    images = torch.cat([images for images, _ in batches]).contiguous()
    return Split(images, torch.cat([labels for _, labels in batches]).to(torch.int64))


def _all_batches(items: PixelItems) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every item once, in batches read by worker processes when many; the first bad item
    stops the reading with its error in one line."""
    batches, failed = [], None
    for batch in _batches(items):
        if isinstance(batch, _Failed):
            failed = batch
            break
        batches.append(batch)
    # raised after the loop let go of the DataLoader's iterator, so its worker processes are
    # shut down at once (one that raised through it stays in a reference cycle, and its workers
    # hold the next garbage collection for 5 s each)
    if failed is not None:
        raise DataFormatError(failed.message)
    return batches


def _batches(items: PixelItems) -> DataLoader:
    workers = default_num_workers() if len(items) >= WORKERS_FROM else 0
    # a generator of its own: an iteration draws its workers' seed from it, and from torch's
    # global one without it, which a run reading its labels here would then start from
    generator = torch.Generator().manual_seed(0)
    caught = _Caught(items)
    return DataLoader(
        caught, batch_size=512, num_workers=workers, generator=generator,
        collate_fn=caught.collate,
    )  # fmt: skip


class _Failed:
    """A bad item's error in one line, passed back as a batch instead of raised through the
    DataLoader."""

    def __init__(self, err: Exception, split: str):
        if isinstance(err, DataFormatError):
            self.message = str(err)
        elif "stack expects each tensor to be equal size" in str(err):
            self.message = (
                f"{split}_data's images differ in shape; give images of one size (a Resize "
                "transform)"
            )
        else:
            first = "".join(str(err).strip().splitlines()[:1])[:200]
            self.message = f"reading {split}_data failed: {type(err).__name__}: {first}"


class _Caught(Dataset):
    """The items, where the user's __getitem__ failing gives a _Failed item, and a batch with
    one (or items that do not stack) a _Failed batch."""

    def __init__(self, items: PixelItems):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | _Failed:
        try:
            return self.items[index]
        except Exception as err:  # the user's code: anything
            return _Failed(err, self.items.split)

    def collate(self, batch: list) -> tuple[torch.Tensor, torch.Tensor] | _Failed:
        failed = next((item for item in batch if isinstance(item, _Failed)), None)
        if failed is not None:
            return failed
        try:
            return default_collate(batch)
        except Exception as err:  # items of two shapes
            return _Failed(err, self.items.split)


def memory_budget() -> int:
    """Bytes an in-memory copy of the data may take: MEMORY_SHARE of the machine's memory."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(total * MEMORY_SHARE)


def _bytes_estimate(items: PixelItems) -> int:
    return items[0][0].numel() * len(items)


def _image_shape(part: Split | PixelItems) -> tuple[int, int, int]:
    channels, height, width = (part.images[0] if isinstance(part, Split) else part[0][0]).shape
    return int(channels), int(height), int(width)


def _labels(part: Split | PixelItems) -> torch.Tensor:
    if isinstance(part, Split):
        return part.labels
    return torch.tensor(part.targets, dtype=torch.int64)


def _histogram(part: Split | PixelItems) -> torch.Tensor:
    """(C, 256) pixel counts: every training image in memory, else a seeded sample of
    STATS_SAMPLE, as image folders do."""
    if isinstance(part, Split):
        return channel_histogram(part.images)
    count = min(len(part), STATS_SAMPLE)
    picks = torch.randperm(len(part), generator=torch.Generator().manual_seed(0))[:count]
    return sum(channel_histogram(part[int(i)][0][None]) for i in picks)  # type: ignore[return-value]


def _class_names(given: Sequence[str] | None, source: Any, highest: int) -> list[str]:
    names = list(given) if given is not None else getattr(source, "classes", None)
    if names is None:
        return [str(k) for k in range(highest + 1)]
    names = [str(name) for name in names]
    if len(names) <= highest:
        raise DataFormatError(
            f"a label is {highest} but there are {len(names)} class names; give one name per "
            "class, in label order"
        )
    return names


def _kind(source: Any) -> str:
    cls = type(source)
    return f"{cls.__module__}.{cls.__qualname__}" if _is_dataset(source) else "tensors"


def _dims(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))
