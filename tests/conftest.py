"""Shared fixtures. Data: every test is cut off from the machine's real data sets, and small
fake ones are made on demand in the upstream formats.

    fake_data_root   <root>/mnist/ and <root>/fashion-mnist/: MNIST-format IDX .gz files,
                     64 train / 32 test 28x28 images, 10 learnable classes
    fake_cifar_root  <root>/cifar-10-batches-py/: CIFAR-10 python pickles, 100 train / 40 test
    npz_root         a folder with train.npz (48) and test.npz (24): 16x16 RGB, 3 classes
    png_folder       <root>/train/<class>/*.png and <root>/test/<class>/*.png, 32x32 RGB,
                     3 classes, 8 train / 4 test images each

Helpers (import with `from conftest import write_idx`): write_idx, write_cifar_batch,
learnable_images.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

FAKE_TRAIN, FAKE_TEST = 64, 32  # fake MNIST sizes
PNG_CLASSES = ("ant", "bee", "cat")
NPZ_CLASSES = ("circle", "square", "cross")


def _cut_off_real_data(patch: pytest.MonkeyPatch, cache: Path) -> None:
    from cnnlab.data import locate

    patch.setenv("CNNLAB_CACHE", str(cache))
    patch.delenv("CNNLAB_DATA", raising=False)
    patch.setattr(locate, "SYSTEM_DATA_DIRS", [])


@pytest.fixture(scope="session", autouse=True)
def isolate_data_session(tmp_path_factory: pytest.TempPathFactory):
    """The same isolation for module- and session-scoped fixtures, which run before the
    per-test one."""
    with pytest.MonkeyPatch.context() as patch:
        _cut_off_real_data(patch, tmp_path_factory.mktemp("cnnlab-session-cache"))
        yield


@pytest.fixture(autouse=True)
def isolate_data(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """No test sees the machine's data: an empty cache of its own, no $CNNLAB_DATA, and no
    system folders (cnnlab.data.locate.SYSTEM_DATA_DIRS is [])."""
    _cut_off_real_data(monkeypatch, tmp_path_factory.mktemp("cnnlab-cache"))


def learnable_images(
    n: int, height: int, width: int, channels: int = 1, num_classes: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, H, W) or (n, H, W, C) uint8 and labels (n,) int64 a tiny CNN can tell apart:
    dark noise with one bright block whose place (and, in colour, channel) is the class."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)  # balanced classes
    images = rng.integers(0, 40, size=(n, height, width, channels), dtype=np.uint8)
    block_h, block_w = max(2, height // 4), max(2, width // 4)
    for i, label in enumerate(labels):  # fixtures only: a loop is fine here
        row = (label // 4 % 3) * (height - block_h) // 2
        col = (label % 4) * (width - block_w) // 3
        channel = label % channels
        images[i, row : row + block_h, col : col + block_w, channel] = rng.integers(180, 256)
    return (images[..., 0] if channels == 1 else images), labels


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (gzip'ed when `path` ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


def write_mnist_files(folder: Path, seed: int = 0, gz: bool = True) -> Path:
    """The four upstream MNIST files in `folder`, with learnable fake images."""
    suffix = ".gz" if gz else ""
    for prefix, n, split_seed in (("train", FAKE_TRAIN, seed), ("t10k", FAKE_TEST, seed + 1)):
        images, labels = learnable_images(n, 28, 28, seed=split_seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return folder


def write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """A CIFAR-10 python batch as the upstream files hold it: a pickled dict with b'data'
    (N, 3072) uint8 (all red, then green, then blue) and b'labels' (a list of ints)."""
    batch = {
        b"batch_label": b"fake batch",
        b"labels": [int(label) for label in labels],
        b"data": np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)  # the upstream files are protocol-2 pickles
    return path


def write_cifar_files(folder: Path, per_batch: int = 20, test: int = 40) -> Path:
    """cifar-10-batches-py contents: data_batch_1..5, test_batch and batches.meta."""
    images, labels = learnable_images(5 * per_batch + test, 32, 32, channels=3, seed=7)
    for i in range(5):
        part = slice(i * per_batch, (i + 1) * per_batch)
        write_cifar_batch(folder / f"data_batch_{i + 1}", images[part], labels[part])
    write_cifar_batch(folder / "test_batch", images[5 * per_batch :], labels[5 * per_batch :])
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse"]
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [*names, b"ship", b"truck"]}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return folder


@pytest.fixture
def fake_data_root(tmp_path: Path) -> Path:
    """A data root with fake mnist/ and fashion-mnist/ (IDX .gz, 64 train / 32 test)."""
    root = tmp_path / "fake-data"
    write_mnist_files(root / "mnist", seed=0)
    write_mnist_files(root / "fashion-mnist", seed=10)
    return root


@pytest.fixture
def fake_cifar_root(tmp_path: Path) -> Path:
    """A data root with cifar-10-batches-py/ (100 train / 40 test, 10 per class in train)."""
    root = tmp_path / "fake-cifar"
    write_cifar_files(root / "cifar-10-batches-py")
    return root


@pytest.fixture
def npz_root(tmp_path: Path) -> Path:
    """A folder for `npz:PATH`: train.npz (48) and test.npz (24), x (N, 16, 16, 3) uint8."""
    root = tmp_path / "npz-data"
    root.mkdir()
    for name, n, seed in (("train", 48, 3), ("test", 24, 4)):
        x, y = learnable_images(n, 16, 16, channels=3, num_classes=3, seed=seed)
        np.savez(root / f"{name}.npz", x=x, y=y, class_names=np.array(NPZ_CLASSES))
    return root


@pytest.fixture
def png_folder(tmp_path: Path) -> Path:
    """A folder for `folder:PATH` with train/ and test/, each <class>/NNN.png (32x32 RGB)."""
    from PIL import Image

    root = tmp_path / "png-data"
    for split, per_class, seed in (("train", 8, 5), ("test", 4, 6)):
        x, y = learnable_images(per_class * 3, 32, 32, channels=3, num_classes=3, seed=seed)
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            folder = root / split / PNG_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root
