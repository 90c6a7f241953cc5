"""load_dataset: one entry point for built-in names, `npz:PATH` and `folder:PATH`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.config import TrainConfig
from cnnlab.data.builtin import load_builtin
from cnnlab.data.npz import load_npz_dir
from cnnlab.data.own import not_on_disk
from cnnlab.data.specs import parse_dataset_name
from cnnlab.data.types import ImageData, Split
from cnnlab.errors import ConfigError


def resize_split(split: Split, size: int) -> Split:
    """Resize uint8 (N, C, H, W) images to (size, size) with antialiased bilinear filtering."""
    chunks = []
    for start in range(0, len(split), 4096):  # chunks bound the float copy's memory
        images = split.images[start : start + 4096].float()
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        chunks.append(images.round_().clamp_(0, 255).to(torch.uint8))
    shape = (0, split.images.shape[1], size, size)
    images = torch.cat(chunks) if chunks else torch.empty(shape, dtype=torch.uint8)
    return Split(images.contiguous(), split.labels, split.exact)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = TrainConfig.download,
    image_size: int | None = None,
    test_fraction: float = TrainConfig.test_fraction,
    seed: int = TrainConfig.seed,
    normalize: bool = TrainConfig.normalize,
) -> ImageData:
    """Load a data set: a built-in name (`list_datasets()`), `npz:PATH` or `folder:PATH`.

    Built-ins are looked for on disk first (`search_dirs(data_dir)`); when absent and
    `download` is true, torchvision downloads them into the cache. `image_size` resizes
    images to image_size x image_size; `test_fraction` and `seed` split a folder that has no
    train/ and test/ subfolders (its test split). `normalize=False` gives mean 0 and std 1,
    so loaders yield pixels in [0, 1] (what `ToTensor` alone gives, as seeds 001 and 004
    train). The validation split is held out later, by the run (holdout.py).
    """
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image_size must be at least 1, got {image_size}")
    parsed = parse_dataset_name(name)
    if parsed.kind == "python":
        raise not_on_disk(name)
    if parsed.kind == "folder":
        from cnnlab.data.folder import load_folder  # imports torchvision: 2+ s, only for folders

        data = load_folder(
            parsed.path, image_size=image_size, test_fraction=test_fraction, seed=seed,
            stats=normalize,
        )  # fmt: skip
    elif parsed.kind == "npz":
        data = _resized(load_npz_dir(parsed.path), image_size)
    else:
        data = _resized(_builtin_data(parsed.spec, data_dir, download), image_size)
    if not normalize:
        channels = data.input_shape[0]
        data.mean, data.std = (0.0,) * channels, (1.0,) * channels
    return data


def configured(data: ImageData, *, image_size: int | None, normalize: bool) -> ImageData:
    """Data given in Python (own.py), resized and scaled as a run's config says, as
    load_dataset does it for data read from disk; a copy, the given one stays as it is."""
    data = dataclasses.replace(data)
    in_memory = isinstance(data.train, Split) and isinstance(data.test, Split)
    if image_size and data.input_shape[1:] != (image_size, image_size) and not in_memory:
        raise ConfigError(
            f"image_size {image_size}: a Dataset read batch by batch is resized by its own "
            "transform (torchvision's Resize); remove image_size"
        )
    data = _resized(data, image_size)
    if not normalize:
        channels = data.input_shape[0]
        data.mean, data.std = (0.0,) * channels, (1.0,) * channels
    return data


def _builtin_data(spec, data_dir: str | Path | None, download: bool) -> ImageData:
    train, test, source = load_builtin(spec, data_dir, download_ok=download)
    return ImageData(
        name=spec.name,
        class_names=list(spec.class_names),
        mean=spec.mean,
        std=spec.std,
        input_shape=spec.input_shape,
        train=train,
        test=test,
        location=str(source.path),
    )


def _resized(data: ImageData, image_size: int | None) -> ImageData:
    """In-memory splits resized to image_size × image_size (folders resize as they decode)."""
    channels, height, width = data.input_shape
    if image_size and (height, width) != (image_size, image_size):
        data.train = resize_split(data.train, image_size)
        data.test = resize_split(data.test, image_size)
        data.input_shape = (channels, image_size, image_size)
    return data
