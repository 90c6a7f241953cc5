"""load_dataset: one entry point for built-in names, `npz:PATH` and `folder:PATH`."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.data.builtin import BUILTIN_DATASETS, DatasetSpec, load_builtin
from cnnlab.data.formats import read_npz_split
from cnnlab.data.locate import locate
from cnnlab.data.types import ImageData, Split, channel_stats, split_from_numpy
from cnnlab.errors import ConfigError, DataFormatError, DataNotFoundError

ALIASES = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-2": "cifar2"}


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


def find_dataset(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The folder a data set would be loaded from, or None (finds files, decodes nothing)."""
    for prefix in ("npz:", "folder:"):
        if name.startswith(prefix):
            path = Path(name[len(prefix) :]).expanduser()
            return path.resolve() if path.is_dir() else None
    spec = get_spec(name)
    source, _ = locate(BUILTIN_DATASETS[spec.source] if spec.source else spec, data_dir)
    return source.path if source else None


def load_npz_dir(path: str | Path) -> ImageData:
    """`npz:PATH`: PATH/train.npz and PATH/test.npz with x (images), y and maybe class_names."""
    root = Path(path).expanduser().resolve()
    for name in ("train.npz", "test.npz"):
        if not (root / name).is_file():
            raise DataNotFoundError(
                f"{root / name} does not exist; npz:PATH needs PATH/train.npz and PATH/test.npz,"
                " each with arrays x (uint8 images) and y (integer labels)"
            )
    train_x, train_y, names = read_npz_split(root / "train.npz")
    test_x, test_y, test_names = read_npz_split(root / "test.npz")
    if len(train_x) == 0:
        raise DataFormatError(f"{root / 'train.npz'} holds no images; add training images")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataFormatError(
            f"{root / 'test.npz'} images are {test_x.shape[1:]} (C, H, W) but train.npz images "
            f"are {train_x.shape[1:]}; both splits need the same image shape"
        )
    names = names if names is not None else test_names
    top = max(int(train_y.max()), int(test_y.max()) if len(test_y) else 0)
    class_names = [str(n) for n in names] if names is not None else [str(i) for i in range(top + 1)]
    for file, labels in (("train.npz", train_y), ("test.npz", test_y)):
        if len(labels) and labels.max() >= len(class_names):
            raise DataFormatError(
                f"{root / file} has label {labels.max()} but class_names has only "
                f"{len(class_names)} names; give one name per class"
            )
    train = split_from_numpy(train_x, train_y)
    mean, std = channel_stats(train.images)
    return ImageData(
        name=f"npz:{root}",
        class_names=class_names,
        mean=mean,
        std=std,
        input_shape=tuple(train_x.shape[1:]),
        train=train,
        test=split_from_numpy(test_x, test_y),
        location=str(root),
    )


def resize_split(split: Split, size: int) -> Split:
    """Resize uint8 (N, C, H, W) images to (size, size) with antialiased bilinear filtering."""
    chunks = []
    for start in range(0, len(split), 4096):  # chunks bound the float copy's memory
        images = split.images[start : start + 4096].float()
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        chunks.append(images.round_().clamp_(0, 255).to(torch.uint8))
    shape = (0, split.images.shape[1], size, size)
    images = torch.cat(chunks) if chunks else torch.empty(shape, dtype=torch.uint8)
    return Split(images.contiguous(), split.labels)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    image_size: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    normalize: bool = True,
) -> ImageData:
    """Load a data set: a built-in name (`list_datasets()`), `npz:PATH` or `folder:PATH`.

    Built-ins are looked for on disk first (`search_dirs(data_dir)`); when absent and
    `download` is true, torchvision downloads them into the cache. `image_size` resizes
    images to image_size x image_size; `val_fraction` and `seed` split a folder that has no
    train/ and test/ subfolders. `normalize=False` gives mean 0 and std 1, so loaders yield
    pixels in [0, 1] (what `ToTensor` alone gives, as seeds 001 and 004 train).
    """
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image_size must be at least 1, got {image_size}")
    if name.startswith("folder:"):
        from cnnlab.data.folder import load_folder  # imports torchvision: 2+ s, only for folders

        return load_folder(
            name[len("folder:") :],
            image_size=image_size,
            val_fraction=val_fraction,
            seed=seed,
            normalize=normalize,
        )
    if name.startswith("npz:"):
        data = load_npz_dir(name[len("npz:") :])
    else:
        spec = get_spec(name)
        train, test, source = load_builtin(spec, data_dir, download_ok=download)
        data = ImageData(
            name=spec.name,
            class_names=list(spec.class_names),
            mean=spec.mean,
            std=spec.std,
            input_shape=spec.input_shape,
            train=train,
            test=test,
            location=str(source.path),
        )
    channels, height, width = data.input_shape
    if image_size and (height, width) != (image_size, image_size):
        data.train = resize_split(data.train, image_size)
        data.test = resize_split(data.test, image_size)
        data.input_shape = (channels, image_size, image_size)
    if not normalize:
        data.mean, data.std = (0.0,) * channels, (1.0,) * channels
    return data
