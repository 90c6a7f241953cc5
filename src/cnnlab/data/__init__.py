"""Data sets as uint8 tensors (N, C, H, W) + int64 labels, and loaders that batch them.

    data = load_dataset("fashion-mnist")            # found on disk, or downloaded once
    loader = make_loader(data, "train", batch_size=256, shuffle=True, device="cuda")
    for x, y in loader: ...                          # float32 (B, C, H, W) normalised, int64 (B,)

Modules: specs (what the built-ins are, reading a data set name), locate (where files are),
formats (IDX, CIFAR, npz readers), cache (decode once), builtin, npz, folder (the three kinds of
data set on disk), own (a Dataset or tensors given in Python), datasets (load_dataset), loader
(TensorLoader, FolderLoader), augment (batched random crop and flip). Names are imported on
first use, so `cnnlab datasets` never waits for torch.
"""

from __future__ import annotations

from cnnlab.lazy import lazy_exports

_WHERE = {
    "BUILTIN_DATASETS": "specs",
    "DatasetSpec": "specs",
    "list_datasets": "specs",
    "parse_dataset_name": "specs",
    "search_dirs": "locate",
    "find_dataset": "locate",
    "load_dataset": "datasets",
    "FolderLoader": "loader",
    "TensorLoader": "loader",
    "make_loader": "loader",
    "ImageData": "types",
    "Split": "types",
}
__all__ = sorted(_WHERE)

__getattr__ = lazy_exports(__name__, _WHERE)
