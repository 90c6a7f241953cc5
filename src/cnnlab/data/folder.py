"""Your own images in folders: `folder:PATH`, in torchvision's ImageFolder convention.

    PATH/train/<class>/*.png and PATH/test/<class>/*.png   (a given split), or
    PATH/<class>/*.png                                     (split here: test_fraction to test)

Everything is checked up front, so a bad file fails before training, not in epoch 3: class
folders, file extensions, and that every image opens. Images are decoded on the fly by
DataLoader workers (see FolderLoader) through torchvision transforms, to uint8 tensors that
FolderLoader augments and normalises on the device, as TensorLoader does.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.datasets.folder import IMG_EXTENSIONS

from cnnlab.config import TrainConfig
from cnnlab.data.holdout import held_out
from cnnlab.data.loader import default_num_workers
from cnnlab.data.types import ImageData, channel_histogram, stats_from_histogram
from cnnlab.errors import ConfigError, DataFormatError, DataNotFoundError

Sample = tuple[str, int]  # (image path, label)

GRAY_MODES = ("1", "L", "LA")  # a first image in one of these makes the data set 1-channel
STATS_SAMPLE = 2000  # mean/std from at most this many training images: enough for 3 decimals


class ImageFiles(Dataset):
    """Image files decoded on demand: item i is (uint8 (C, *size) image, label)."""

    def __init__(self, samples: list[Sample], mode: str, size: tuple[int, int]) -> None:
        self.samples = samples
        self.targets = [label for _, label in samples]  # as in torchvision's ImageFolder
        self.mode = mode  # "L" or "RGB": every image is converted to it
        self.transform = transforms.Compose([transforms.Resize(size), transforms.PILToTensor()])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as image:
            image = image.convert(self.mode)
        return self.transform(image), label


def _image_files(class_dir: Path) -> list[Path]:
    """Every image under a class folder (recursively, sorted); other files are an error."""
    files, walked = [], {}  # each folder read: its real path → the path it was read under
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in walked:  # a link back up would be followed ~40 deep, each image many times
            raise DataFormatError(
                f"{dirpath} and {walked[real]} are the same folder through a link, so its "
                "images would count twice; remove the link"
            )
        walked[real] = dirpath
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):  # .DS_Store and friends
                continue
            path = Path(dirpath) / name
            if not name.lower().endswith(IMG_EXTENSIONS):
                raise DataFormatError(
                    f"{path} is not an image file (not one of {', '.join(IMG_EXTENSIONS)}); "
                    "move it out of the class folder"
                )
            files.append(path)
    if not files:
        raise DataFormatError(f"class folder {class_dir} has no images; add some or remove it")
    return files


def scan(root: Path, class_names: list[str] | None = None) -> tuple[list[Sample], list[str]]:
    """The (path, label) samples under `root`/<class>/, and the class names (sorted folder
    names, or the given ones, which the folders must be among)."""
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataFormatError(
            f"{root} has no class folders; put the images in {root}/<class name>/ "
            "(one folder per class)"
        )
    if class_names is None:
        class_names = folders
    unknown = [name for name in folders if name not in class_names]
    if unknown:
        raise DataFormatError(
            f"{root / unknown[0]} is a class the training folder does not have; "
            "give train/ and test/ the same class folders"
        )
    label = {name: index for index, name in enumerate(class_names)}
    samples = [(str(path), label[name]) for name in folders for path in _image_files(root / name)]
    return samples, class_names


def split_samples(
    samples: list[Sample], test_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """A seeded stratified split: `test_fraction` of every class goes to test (each class
    keeps at least one training image); both parts stay in file order."""
    test = held_out(torch.tensor([label for _, label in samples]), test_fraction, seed).tolist()
    return (
        [sample for sample, tested in zip(samples, test, strict=True) if not tested],
        [sample for sample, tested in zip(samples, test, strict=True) if tested],
    )


def verify_images(samples: list[Sample]) -> None:
    """Open and verify every image (headers and checksums, no full decode)."""
    for path, _ in samples:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as e:  # PIL raises many kinds for broken files
            raise DataFormatError(
                f"{path} is not a readable image ({type(e).__name__}: {e}); fix or remove it"
            ) from None


def folder_stats(
    samples: list[Sample], mode: str, size: tuple[int, int], seed: int, num_workers: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std (in [0, 1] pixel units) of up to STATS_SAMPLE resized images."""
    picked = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed))
    subset = [samples[i] for i in sorted(picked[:STATS_SAMPLE].tolist())]
    loader = DataLoader(
        ImageFiles(subset, mode, size),
        batch_size=64,
        num_workers=min(num_workers, (len(subset) + 63) // 64),
    )
    counts = sum(channel_histogram(images) for images, _ in loader)  # (C, 256)
    return stats_from_histogram(counts)


def _read_splits(root: Path, test_fraction: float, seed: int):
    """Train and test samples and class names, from train/ + test/ or split here."""
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train and has_test:
        train, class_names = scan(root / "train")
        test, _ = scan(root / "test", class_names)
        return train, test, class_names
    if has_train or has_test:
        present, absent = ("train", "test") if has_train else ("test", "train")
        raise DataFormatError(
            f"{root} has {present}/ but no {absent}/; add {root / absent}/ with the same class "
            f"folders, or put the class folders directly in {root}"
        )
    samples, class_names = scan(root)
    train, test = split_samples(samples, test_fraction, seed)
    return train, test, class_names


def load_folder(
    path: str | Path,
    *,
    image_size: int | None = None,
    test_fraction: float = TrainConfig.test_fraction,
    seed: int = TrainConfig.seed,
    num_workers: int | None = None,
    stats: bool = True,
) -> ImageData:
    """An image folder as ImageData whose splits are ImageFiles datasets.

    `stats=False` skips measuring mean/std (mean and std are then empty: the caller scales).
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise DataNotFoundError(
            f"folder {root} does not exist; give folder:PATH with PATH holding one folder of "
            "images per class (or train/ and test/ with such folders)"
        )
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}")
    train, test, class_names = _read_splits(root, test_fraction, seed)
    verify_images(train + test)
    with Image.open(train[0][0]) as first:
        mode = "L" if first.mode in GRAY_MODES else "RGB"
        width, height = first.size
    size = (image_size, image_size) if image_size else (height, width)
    if num_workers is None:
        num_workers = default_num_workers()
    mean, std = folder_stats(train, mode, size, seed, num_workers) if stats else ((), ())
    return ImageData(
        name=f"folder:{root}",
        class_names=class_names,
        mean=mean,
        std=std,
        input_shape=(1 if mode == "L" else 3, *size),
        train=ImageFiles(train, mode, size),
        test=ImageFiles(test, mode, size),
        location=str(root),
    )
