"""Your own arrays: `npz:PATH`, a folder with train.npz and test.npz."""

from __future__ import annotations

from pathlib import Path

from cnnlab.data.formats import read_npz_split
from cnnlab.data.types import ImageData, channel_stats, split_from_numpy
from cnnlab.errors import DataFormatError, DataNotFoundError


def load_npz_dir(path: str | Path) -> ImageData:
    """`npz:PATH`: PATH/train.npz and PATH/test.npz with x (images), y and maybe class_names."""
    root = Path(path).expanduser().resolve()
    for name in ("train.npz", "test.npz"):
        if not (root / name).is_file():
            raise DataNotFoundError(
                f"{root / name} does not exist; npz:PATH needs PATH/train.npz and PATH/test.npz,"
                " each with arrays x (uint8 images) and y (integer labels)"
            )
    train_x, train_y, names, _ = read_npz_split(root / "train.npz")
    test_x, test_y, test_names, test_exact = read_npz_split(root / "test.npz")
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
        test=split_from_numpy(test_x, test_y, test_exact),
        location=str(root),
    )
