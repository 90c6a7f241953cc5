"""Loading a built-in data set: find its files, decode them once (cached), or download them."""

from __future__ import annotations

import contextlib
import io
import socket
import sys
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import cache, formats
from cnnlab.data.locate import Source, cache_dir, how_to_get, locate, on_disk
from cnnlab.data.specs import DatasetSpec, files_of
from cnnlab.data.types import Split, split_from_numpy
from cnnlab.errors import DataFormatError, DataNotFoundError


def _decode(source: Source) -> dict[str, np.ndarray]:
    """Read a source's files into train/test arrays, images (N, C, H, W) uint8."""
    files = source.files
    exact = None  # an npz test split's marks of its exact images
    if source.format == "idx":
        train = formats.read_idx_split(files[0], files[1])
        test = formats.read_idx_split(files[2], files[3])
    elif source.format == "cifar":
        train = formats.read_cifar_batches(list(files[:5]))
        test = formats.read_cifar_batch(files[5])
    else:
        train = formats.read_npz_split(files[0])
        test = formats.read_npz_split(files[1])
        exact = test[3]
    arrays = {"train_x": train[0], "train_y": train[1], "test_x": test[0], "test_y": test[1]}
    return arrays if exact is None else {**arrays, "test_exact": exact}


def decode_cached(spec: DatasetSpec, source: Source) -> dict[str, np.ndarray]:
    """The decoded arrays of `source`, from the cache when a matching file is there."""
    path = cache_dir() / "decoded" / f"{spec.name}-{cache.cache_key(source.files)}.npz"
    arrays = cache.load_arrays(path)
    if arrays is None or set(arrays) - {"test_exact"} != {"train_x", "train_y", "test_x", "test_y"}:
        arrays = _decode(source)
        _check(spec, source, arrays["train_x"], arrays["train_y"])  # only good data is cached
        _check(spec, source, arrays["test_x"], arrays["test_y"])
        cache.save_arrays(path, arrays)
    return arrays


def _check(spec: DatasetSpec, source: Source, images: np.ndarray, labels: np.ndarray) -> None:
    """The decoded split must have the spec's shape and label range."""
    if tuple(images.shape[1:]) != spec.input_shape:
        raise DataFormatError(
            f"{source.path} holds images of shape {tuple(images.shape[1:])}, but {spec.name} "
            f"images are {spec.input_shape} (C, H, W); put the right files there"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(spec.class_names)):
        raise DataFormatError(
            f"{source.path} has labels outside 0..{len(spec.class_names) - 1} for {spec.name}; "
            "put the right files there"
        )


def _keep(split: Split, keep: tuple[int, ...]) -> Split:
    """Only the samples whose label is in `keep`, relabelled by position in `keep`."""
    new_label = torch.full((max(keep) + 1,), -1, dtype=torch.int64)
    new_label[list(keep)] = torch.arange(len(keep))
    part = split.subset(torch.isin(split.labels, torch.tensor(keep)))
    part.labels = new_label[part.labels]
    return part


def download(spec: DatasetSpec) -> None:
    """Fetch a built-in with torchvision into the cache; any failure is a DataNotFoundError."""
    root = cache_dir()
    print(f"cnnlab: downloading {spec.name} into {root} (once)", file=sys.stderr)
    previous_timeout = socket.getdefaulttimeout()
    try:
        import torchvision.datasets

        socket.setdefaulttimeout(60)  # urllib would otherwise wait forever on a dead network
        root.mkdir(parents=True, exist_ok=True)
        dataset_class = getattr(torchvision.datasets, spec.torchvision_class)
        # torchvision prints each mirror it tries; the outcome is reported here instead
        with contextlib.redirect_stdout(io.StringIO()):
            dataset_class(root=str(root), train=True, download=True)
    except Exception as e:  # any failure inside torchvision: one line, no traceback
        reason = " ".join(str(e).split())[:300] or type(e).__name__  # torchvision's, on 1 line
        raise DataNotFoundError(
            f"{spec.name} is not on disk and downloading it into {root} failed ({reason}); "
            f"{how_to_get(spec)}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)


def load_builtin(
    spec: DatasetSpec, data_dir: str | Path | None, *, download_ok: bool
) -> tuple[Split, Split, Source]:
    """The train and test splits of a built-in, found on disk or downloaded."""
    base = files_of(spec)
    source, _ = locate(base, data_dir)
    if source is None and download_ok:
        download(base)
    source = source or on_disk(base, data_dir, download_ok=download_ok)
    arrays = decode_cached(base, source)
    train = split_from_numpy(arrays["train_x"], arrays["train_y"])
    test = split_from_numpy(arrays["test_x"], arrays["test_y"], arrays.get("test_exact"))
    if spec.keep_labels is not None:
        return _keep(train, spec.keep_labels), _keep(test, spec.keep_labels), source
    return train, test, source
