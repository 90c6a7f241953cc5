"""Data sets as uint8 tensors (N, C, H, W) + int64 labels, and loaders that batch them.

    data = load_dataset("fashion-mnist")            # found on disk, or downloaded once
    loader = make_loader(data, "train", batch_size=256, shuffle=True, device="cuda")
    for x, y in loader: ...                          # float32 (B, C, H, W) normalised, int64 (B,)

Modules: locate (where files are), formats (IDX, CIFAR, npz readers), cache (decode once),
builtin (mnist, fashion-mnist, cifar10, cifar2), folder (folder:PATH), load (load_dataset),
loader (TensorLoader, FolderLoader), augment (batched random crop and flip).
"""

from cnnlab.data.builtin import BUILTIN_DATASETS, DatasetSpec
from cnnlab.data.load import find_dataset, list_datasets, load_dataset
from cnnlab.data.loader import FolderLoader, TensorLoader, make_loader
from cnnlab.data.locate import search_dirs
from cnnlab.data.types import ImageData, Split

__all__ = [
    "BUILTIN_DATASETS",
    "DatasetSpec",
    "FolderLoader",
    "ImageData",
    "Split",
    "TensorLoader",
    "find_dataset",
    "list_datasets",
    "load_dataset",
    "make_loader",
    "search_dirs",
]
