"""Test helpers: the one fake-image generator, the files made from it, and file tools.

Tests import these from here (`from helpers import write_idx`); conftest.py builds its fixtures
on them.

    learnable_images     images a tiny CNN can tell apart: a bright block whose place and
                         channel is the class
    write_learnable_npz  a folder for `npz:PATH` (384 train / 128 test, 28x28, 4 classes)
    write_idx, write_mnist_files, write_cifar_batch, write_cifar_files
                         the upstream MNIST (IDX) and CIFAR-10 (pickled batches) formats
    collect              one pass over a loader, copied
    Recording            SGD that keeps each step's gradients (made on first import)
    checksums            sha256 of every file under a folder
    relocate_checkpoint  a checkpoint rewritten to say it was saved on a GPU
    skip_png_encoding    figures made but not encoded as PNG, for tests that read pages as text
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import math
import pickle
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

FAKE_TRAIN, FAKE_TEST = 64, 32  # fake MNIST sizes
PNG_CLASSES = ("ant", "bee", "cat")
NPZ_CLASSES = ("circle", "square", "cross")


def learnable_images(
    n: int, height: int, width: int, channels: int = 1, num_classes: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, H, W) or (n, H, W, C) uint8 and labels (n,) int64 a tiny CNN can tell apart:
    dark noise (0-39) with one bright block (180-255) whose place (and, in colour, channel) is
    the class. The image is cut into a grid of about square cells, one per class (2x2 for up
    to 4 classes, 3x4 for 10), and class k's block is the middle half of cell k. Classes are
    balanced. The single generator of every fake data set in the tests."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)  # balanced classes
    images = rng.integers(0, 40, size=(n, height, width, channels), dtype=np.uint8)
    cols = math.ceil(math.sqrt(num_classes))
    cell_h, cell_w = height // math.ceil(num_classes / cols), width // cols
    pad_h, pad_w = cell_h // 4, cell_w // 4
    for i, label in enumerate(labels):  # fixtures only: a loop is fine here
        top, left = (label // cols) * cell_h + pad_h, (label % cols) * cell_w + pad_w
        block = images[i, top : top + cell_h - 2 * pad_h, left : left + cell_w - 2 * pad_w]
        block[..., label % channels] = rng.integers(180, 256)
    return (images[..., 0] if channels == 1 else images), labels


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
    """A folder for `npz:PATH`: train.npz / test.npz of learnable_images (seeds `seed` and
    `seed + 1`), x (N, size, size) or (N, size, size, channels) uint8, y int64 and
    class_names class0, class1, ...

    Easy enough that a small CNN goes from chance (1/classes) to > 0.8 in a few epochs.
    """
    root.mkdir(parents=True, exist_ok=True)
    names = np.array([f"class{k}" for k in range(classes)])
    for split, n, split_seed in (("train", train, seed), ("test", test, seed + 1)):
        x, y = learnable_images(n, size, size, channels, classes, seed=split_seed)
        np.savez(root / f"{split}.npz", x=x, y=y, class_names=names)
    return root


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


def collect(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every batch of one pass over `loader`, copied (a loader may reuse its buffers)."""
    return [(x.clone(), y.clone()) for x, y in loader]


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


def skip_png_encoding(patch) -> None:
    """Through `patch` (a pytest MonkeyPatch): every figure is still made, from the run and its
    predictions, but not drawn and encoded as a PNG (b"png" instead), two thirds of a report's
    second or two. For tests that read a page or a command's lines as text: the rendered images
    are checked in test_report.py, test_plots.py, test_compare.py and the browser tests."""
    from cnnlab import figures
    from cnnlab.report import compare, plots

    for module in (figures, plots, compare):  # the last two import it by name
        patch.setattr(module, "render_png", lambda figure: b"png")


def hand_predictions(
    labels, predicted, class_names, *, confidence=0.5, p_true=None, images=None,
    image_index=None, split: str = "test", checkpoint: str = "best.pt",
):  # fmt: skip
    """Predictions made by hand, for the report's and plots' tests (no model, no run):
    `confidence` one value or one per image; `p_true` the probability given to the true class
    (default: the confidence where the prediction is right, 0.1 where it is wrong); `images`
    (K, C, H, W) uint8 pixels kept for the images `image_index` (default: every image in
    order), or no pixels kept."""
    from cnnlab.report.predictions import Predictions

    labels, predicted = np.array(labels, np.int64), np.array(predicted, np.int64)
    confidence = np.broadcast_to(np.asarray(confidence, np.float32), labels.shape).copy()
    if p_true is None:
        p_true = np.where(labels == predicted, confidence, np.float32(0.1))
    if images is None:
        images, image_index = np.zeros((0, 1, 2, 2), np.uint8), np.zeros(0, np.int64)
    elif image_index is None:
        image_index = np.arange(len(images), dtype=np.int64)
    return Predictions(
        checkpoint=checkpoint, digest="d" * 64, class_names=list(class_names), labels=labels,
        predicted=predicted, confidence=confidence,
        p_true=np.broadcast_to(np.asarray(p_true, np.float32), labels.shape).copy(),
        image_index=np.asarray(image_index, np.int64), images=images, split=split,
    )  # fmt: skip


def cut_last_row(run: Path) -> Path:
    """metrics.jsonl as a kill while writing its last row leaves it: half that row."""
    text = (run / "metrics.jsonl").read_text()
    last = text.rstrip("\n").rfind("\n") + 1
    (run / "metrics.jsonl").write_text(text[: last + (len(text) - last) // 2])
    return run


@functools.cache
def _recording_class() -> type:
    import torch

    class Recording(torch.optim.SGD):
        """SGD that keeps the gradient it was given at each step (`seen`)."""

        def __init__(self, params, **kwargs):
            super().__init__(params, **kwargs)
            self.seen: list[list[torch.Tensor]] = []

        def step(self, closure=None):
            grads = [p.grad.clone() for group in self.param_groups for p in group["params"]]
            self.seen.append(grads)
            return super().step(closure)

    return Recording


def __getattr__(name: str):
    """`from helpers import Recording` builds the class then, so importing helpers (and
    conftest.py) still does not import torch."""
    if name == "Recording":
        return _recording_class()
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")
