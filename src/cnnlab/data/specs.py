"""What the built-in data sets are, and how a data set name reads (no torch, no numpy here).

A data set name is a built-in (`mnist`, `fashion-mnist`, `cifar10`, `cifar2`; case and `_` vs
`-` do not matter), `npz:PATH` (train.npz + test.npz) or `folder:PATH` (class folders of images).
`parse_dataset_name` is the one place that reads those prefixes; `check_dataset_name` also
checks what can be known without reading the data (the command line asks before importing torch).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import ConfigError, DataNotFoundError

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
NPZ_NEEDS = (
    "npz:PATH needs PATH/train.npz and PATH/test.npz, each with arrays x (uint8 images) and y "
    "(integer labels)"
)
FOLDER_NEEDS = (
    "give folder:PATH with PATH holding one folder of images per class (or train/ and test/ "
    "with such folders)"
)


def files_of(spec: DatasetSpec) -> DatasetSpec:
    """The built-in whose files `spec` is read from (cifar2: cifar10's)."""
    return BUILTIN_DATASETS[spec.source] if spec.source else spec


def files_wanted(spec: DatasetSpec) -> str:
    """What a data folder must hold for a built-in to be found in it."""
    example = {
        "idx": f"{spec.folder}/train-images-idx3-ubyte.gz and the other three IDX files",
        "cifar": f"{spec.torchvision_dir}/ (from cifar-10-python.tar.gz)",
    }[spec.format]
    return f"{example}, or {spec.folder}/train.npz + test.npz"


def list_datasets() -> list[str]:
    """The built-in data set names (besides them, `npz:PATH` and `folder:PATH` load your own)."""
    return list(BUILTIN_DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The DatasetSpec of a built-in name (case and '_' vs '-' do not matter)."""
    key = _key(name)
    if key not in BUILTIN_DATASETS:
        close = close_names(name)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ConfigError(
            f"unknown data set {name!r}; {hint}use one of {', '.join(BUILTIN_DATASETS)}, or "
            "npz:PATH (a folder with train.npz and test.npz) or folder:PATH (a folder of "
            "class folders of images)"
        )
    return BUILTIN_DATASETS[key]


def _key(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    return ALIASES.get(key, key)


def close_names(name: str) -> list[str]:
    """What an unknown data set name may have meant, as the model registry guesses: `cifar` →
    cifar2, cifar10 (contained, shortest first), `cifra` → cifar2, cifar10 (similar), `foldr:x`
    → folder:x, and an existing folder given without its prefix → folder:PATH (npz:PATH when it
    holds train.npz)."""
    folder = Path(name).expanduser()
    if folder.is_dir():  # your own data, without its prefix
        return [f"{'npz' if (folder / 'train.npz').is_file() else 'folder'}:{name}"]
    prefix, colon, rest = name.partition(":")
    if colon:
        typed = difflib.get_close_matches(prefix.lower(), ("npz", "folder"), n=1, cutoff=0.6)
        return [f"{kind}:{rest}" for kind in typed]
    key = _key(name)
    contain = sorted((known for known in BUILTIN_DATASETS if key and key in known), key=len)
    known = {**{known: known for known in BUILTIN_DATASETS}, **ALIASES}
    similar = [known[n] for n in difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)]
    return list(dict.fromkeys(contain or similar))[:3]


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


def check_dataset_name(name: str) -> DatasetName:
    """`parse_dataset_name`, and what else is known before any data is read: npz:PATH needs
    PATH/train.npz and PATH/test.npz, folder:PATH an existing folder, and python:NAME (data
    given in Python) cannot be read from disk. One line each, as the loaders would say it."""
    parsed = parse_dataset_name(name)
    if parsed.kind == "python":
        raise ConfigError(
            f"data set {name} names data given in Python, which cannot be read from disk; give "
            "a built-in name, npz:PATH or folder:PATH"
        )
    if parsed.kind == "npz":
        root = parsed.path.resolve()
        for file in (root / "train.npz", root / "test.npz"):
            if not file.is_file():
                raise DataNotFoundError(f"{file} does not exist; {NPZ_NEEDS}")
    if parsed.kind == "folder" and not parsed.path.resolve().is_dir():
        raise DataNotFoundError(f"folder {parsed.path.resolve()} does not exist; {FOLDER_NEEDS}")
    return parsed
