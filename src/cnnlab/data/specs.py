"""What the built-in data sets are, and how a data set name reads (no torch, no numpy here).

A data set name is a built-in (`mnist`, `fashion-mnist`, `cifar10`, `cifar2`; case and `_` vs
`-` do not matter), `npz:PATH` (train.npz + test.npz) or `folder:PATH` (class folders of images).
`parse_dataset_name` is the one place that reads those prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import ConfigError

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


ALIASES = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-2": "cifar2"}
# your own data: npz:PATH, folder:PATH; python:NAME was given to cnnlab.train in Python (own.py)
PREFIXES = ("npz", "folder", "python")


def list_datasets() -> list[str]:
    """The built-in data set names (besides them, `npz:PATH` and `folder:PATH` load your own)."""
    return list(BUILTIN_DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The DatasetSpec of a built-in name (case and '_' vs '-' do not matter)."""
    key = name.strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in BUILTIN_DATASETS:
        raise ConfigError(
            f"unknown data set {name!r}; use one of {', '.join(BUILTIN_DATASETS)}, or "
            "npz:PATH (a folder with train.npz and test.npz) or folder:PATH (a folder of "
            "class folders of images)"
        )
    return BUILTIN_DATASETS[key]


@dataclass(frozen=True)
class DatasetName:
    """A data set name, read: `kind` is "builtin", "npz" or "folder"."""

    kind: str
    spec: DatasetSpec | None = None  # for a built-in
    path: Path | None = None  # for npz: and folder: (user-expanded, not resolved)

    @property
    def short(self) -> str:
        """A short name for run folders: the built-in's name or the folder's last part."""
        return self.spec.name if self.spec else (self.path.name or "data")


def parse_dataset_name(name: str) -> DatasetName:
    """Read `name`; an unknown built-in is a ConfigError that lists the known ones."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix in PREFIXES:
        return DatasetName(prefix, path=Path(rest).expanduser())
    return DatasetName("builtin", spec=get_spec(name))
