"""Small generated data sets and file helpers shared by the training, CLI and reliability tests."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np


def write_learnable_npz(
    root: Path,
    *,
    classes: int = 4,
    train: int = 384,
    test: int = 128,
    size: int = 28,
    channels: int = 1,
    seed: int = 0,
) -> Path:
    """A folder with train.npz / test.npz where class k is a bright square in place k.

    Easy enough that a small CNN goes from chance (1/classes) to > 0.8 in a few epochs,
    noisy enough that it is not solved by the first step.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    cell = size // 2
    for split, n in (("train", train), ("test", test)):
        y = rng.integers(0, classes, n)
        x = rng.integers(0, 90, (n, size, size, channels), dtype=np.int64)
        for i, label in enumerate(y):
            r, c = divmod(int(label) % 4, 2)
            x[i, r * cell + 2 : (r + 1) * cell - 2, c * cell + 2 : (c + 1) * cell - 2] += 150
        x = np.clip(x, 0, 255).astype(np.uint8)
        if channels == 1:
            x = x[..., 0]
        names = np.array([f"class{k}" for k in range(classes)])
        np.savez(root / f"{split}.npz", x=x, y=y.astype(np.int64), class_names=names)
    return root


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, to prove nothing was changed."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def relocate_checkpoint(src: Path, dst: Path, location: str = "cuda:0") -> None:
    """Rewrite a torch checkpoint so its storages say they were saved on `location`.

    This is byte for byte what torch.save writes for tensors on a GPU, so a machine without
    one can test that such a file loads (torch.load fails on it without map_location).
    """
    old = b"X\x03\x00\x00\x00cpu"
    new = b"X" + len(location).to_bytes(4, "little") + location.encode()
    out = io.BytesIO()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert old in data
                data = data.replace(old, new)
            zout.writestr(item, data)
    dst.write_bytes(out.getvalue())
