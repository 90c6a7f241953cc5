"""The built-in data sets: what each is, and loading it (find, decode once and cache, download)."""

from __future__ import annotations

import contextlib
import io
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data import cache, formats
from cnnlab.data.locate import Source, cache_dir, locate, search_dirs
from cnnlab.data.types import Split, split_from_numpy
from cnnlab.errors import DataFormatError, DataNotFoundError

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# the usual CIFAR-10 training statistics, as in seed 000's Normalize
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class DatasetSpec:
    """What a built-in data set is and where its files live."""

    name: str
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, [0, 1] pixel units
    std: tuple[float, ...]
    input_shape: tuple[int, int, int]  # (C, H, W)
    format: str  # "idx" or "cifar": the upstream file format
    folder: str  # found as <root>/<folder>/
    torchvision_dir: str  # ... or in torchvision's layout <root>/<torchvision_dir>/
    torchvision_class: str  # the torchvision.datasets class that downloads it
    source: str | None = None  # made from another built-in's files (cifar2 from cifar10)
    keep_labels: tuple[int, ...] | None = None  # source labels kept; new label = position here
    description: str = ""


BUILTIN_DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist", tuple(str(digit) for digit in range(10)), (0.1307,), (0.3081,), (1, 28, 28),
        "idx", "mnist", "MNIST/raw", "MNIST",
        description="handwritten digits 0-9, 60k train / 10k test, 28x28 gray (seed 003)",
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        # pixel/255 over all 60,000 training images (Debian's train-images-idx3-ubyte.gz):
        # mean 0.286040597, std 0.353024245 (population std over every pixel)
        (0.2860,), (0.3530,), (1, 28, 28),
        "idx", "fashion-mnist", "FashionMNIST/raw", "FashionMNIST",
        description="Zalando clothing, 10 classes, 60k train / 10k test, 28x28 gray (seed 001)",
    ),
    "cifar10": DatasetSpec(
        "cifar10", CIFAR10_CLASSES, CIFAR_MEAN, CIFAR_STD, (3, 32, 32),
        "cifar", "cifar10", "cifar-10-batches-py", "CIFAR10",
        description="10 object classes, 50k train / 10k test, 32x32 RGB (seed 004)",
    ),
    "cifar2": DatasetSpec(
        "cifar2", ("airplane", "bird"), CIFAR_MEAN, CIFAR_STD, (3, 32, 32),
        "cifar", "cifar10", "cifar-10-batches-py", "CIFAR10",
        source="cifar10", keep_labels=(0, 2),  # airplane 0 -> 0, bird 2 -> 1 (seed 000)
        description="CIFAR-10's airplanes and birds only, 10k train / 2k test (seed 000)",
    ),
}  # fmt: skip


def _decode(source: Source) -> dict[str, np.ndarray]:
    """Read a source's files into train/test arrays, images (N, C, H, W) uint8."""
    files = source.files
    if source.format == "idx":
        train = formats.read_idx_split(files[0], files[1])
        test = formats.read_idx_split(files[2], files[3])
    elif source.format == "cifar":
        train = formats.read_cifar_batches(list(files[:5]))
        test = formats.read_cifar_batch(files[5])
    else:
        train = formats.read_npz_split(files[0])[:2]
        test = formats.read_npz_split(files[1])[:2]
    return {"train_x": train[0], "train_y": train[1], "test_x": test[0], "test_y": test[1]}


def decode_cached(spec: DatasetSpec, source: Source) -> dict[str, np.ndarray]:
    """The decoded arrays of `source`, from the cache when a matching file is there."""
    path = cache_dir() / "decoded" / f"{spec.name}-{cache.cache_key(source.files)}.npz"
    arrays = cache.load_arrays(path)
    if arrays is None or set(arrays) != {"train_x", "train_y", "test_x", "test_y"}:
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


def _keep(images: np.ndarray, labels: np.ndarray, keep: tuple[int, ...]) -> Split:
    """Only the samples whose label is in `keep`, relabelled by position in `keep`."""
    new_label = np.full(max(keep) + 1, -1, dtype=np.int64)
    new_label[list(keep)] = np.arange(len(keep))
    mask = np.isin(labels, keep)
    return split_from_numpy(images[mask], new_label[labels[mask]])


def how_to_get(spec: DatasetSpec, download_ok: bool = True) -> str:
    """The one-line advice on making a data set available."""
    example = {
        "idx": f"{spec.folder}/train-images-idx3-ubyte.gz and the other three IDX files",
        "cifar": f"{spec.torchvision_dir}/ (from cifar-10-python.tar.gz)",
    }[spec.format]
    if download_ok:
        last = "run with network access to download it"
    else:
        last = "allow downloading it (download=True, with network access)"
    return (
        f"set CNNLAB_DATA (or data_dir) to a folder holding {example}, "
        f"or {spec.folder}/train.npz + test.npz, or {last}"
    )


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


def not_found_message(
    spec: DatasetSpec, data_dir: str | Path | None, notes: list[str], download_ok: bool
) -> str:
    """One line: the places looked in, any incomplete copy seen, and how to get the data."""
    looked = ", ".join(str(path) for path in search_dirs(data_dir))
    incomplete = f" (incomplete: {'; '.join(notes)})" if notes else ""
    advice = how_to_get(spec, download_ok)
    return f"{spec.name} was not found in {looked}{incomplete}; {advice}"


def load_builtin(
    spec: DatasetSpec, data_dir: str | Path | None, *, download_ok: bool
) -> tuple[Split, Split, Source]:
    """The train and test splits of a built-in, found on disk or downloaded."""
    base = BUILTIN_DATASETS[spec.source] if spec.source else spec
    source, notes = locate(base, data_dir)
    if source is None:
        if not download_ok:
            raise DataNotFoundError(not_found_message(base, data_dir, notes, download_ok))
        download(base)
        source, notes = locate(base, data_dir)
        if source is None:
            raise DataNotFoundError(not_found_message(base, data_dir, notes, download_ok))
    arrays = decode_cached(base, source)
    if spec.keep_labels is not None:
        train = _keep(arrays["train_x"], arrays["train_y"], spec.keep_labels)
        test = _keep(arrays["test_x"], arrays["test_y"], spec.keep_labels)
        return train, test, source
    train = split_from_numpy(arrays["train_x"], arrays["train_y"])
    test = split_from_numpy(arrays["test_x"], arrays["test_y"])
    return train, test, source
