"""Readers for the file formats data sets come in: IDX (MNIST family), CIFAR batches, npz.

Each reader returns numpy arrays, images as uint8 (N, C, H, W) and labels as int64 (N,), and
raises DataFormatError (naming the file) for anything truncated, corrupt or of the wrong shape.
"""

from __future__ import annotations

import codecs
import gzip
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from cnnlab.errors import DataFormatError, DataNotFoundError

REFETCH = "delete it and get the data set again"


def _read_bytes(path: Path) -> bytes:
    """The whole (gunzipped if .gz) content of `path`."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataNotFoundError(f"{path} does not exist; check the path") from None
    except PermissionError:
        raise DataFormatError(
            f"{path} cannot be read (permission denied); fix its permissions"
        ) from None
    except (OSError, EOFError, zlib.error) as e:  # truncated gzip: EOFError; bad gzip: OSError
        raise DataFormatError(
            f"{path} cannot be read ({e}); it is truncated or corrupt: {REFETCH}"
        ) from None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions (magic 0x0000080<ndim>)."""
    raw = _read_bytes(path)
    magic = raw[:4]
    if len(magic) < 4 or magic[:3] != b"\x00\x00\x08" or magic[3] != ndim:
        raise DataFormatError(
            f"{path} is not an IDX file of bytes with {ndim} dimensions (magic "
            f"{magic.hex() or 'none'}, expected 0000080{ndim}); give the upstream MNIST-format file"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path} is truncated inside its header: {REFETCH}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataFormatError(
            f"{path} holds {len(raw) - header} data bytes but its header promises {expected} "
            f"(shape {dims}); it is truncated or corrupt: {REFETCH}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, H, W) and labels (N,) from an IDX image file and its label file."""
    images = read_idx(images_path, 3)  # (N, H, W)
    labels = read_idx(labels_path, 1)  # (N,)
    if len(images) != len(labels):
        raise DataFormatError(
            f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images; "
            "the two files must come from the same split"
        )
    return images[:, None], labels.astype(np.int64)


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The only globals a CIFAR batch pickle may name: what rebuilds a numpy array."""
    try:  # numpy >= 2
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # bytes pickled by Python 3 with protocol 2
    }
    for package in ("numpy.core", "numpy._core"):  # pickles from numpy 1.x and 2.x
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    return allowed


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch and refuses every global beyond numpy's array rebuilders.

    Plain pickle.load runs whatever callable the file names; a file from the internet must not
    get to do that.
    """

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")  # Python 2 str -> str, as torchvision reads it
        self.path = path
        self.allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        raise DataFormatError(
            f"{self.path} asks to run {module}.{name}, which a CIFAR batch never needs; it was "
            "refused as unsafe: get cifar-10-batches-py from the official CIFAR-10 tarball"
        )


def _entry(batch: dict, key: str) -> object:
    # Python 2 pickles read with latin1 have str keys; Python 3 ones keep their bytes keys
    if key in batch:
        return batch[key]
    if key.encode() in batch:
        return batch[key.encode()]
    raise DataFormatError(f"a CIFAR batch has no '{key}' entry")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) and labels (N,) from one python-pickle CIFAR-10 batch file."""
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, path).load()
    except DataFormatError:
        raise
    except FileNotFoundError:
        raise DataNotFoundError(f"{path} does not exist; check the path") from None
    except Exception as e:  # truncated or corrupt pickles raise many kinds of errors
        raise DataFormatError(
            f"{path} is not a readable CIFAR batch ({type(e).__name__}: {e}): {REFETCH}"
        ) from None
    if not isinstance(batch, dict):
        raise DataFormatError(f"{path} does not hold a CIFAR batch dict: {REFETCH}")
    try:
        data, labels = _entry(batch, "data"), _entry(batch, "labels")
    except DataFormatError as e:
        raise DataFormatError(f"{path}: {e}: {REFETCH}") from None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise DataFormatError(f"{path}: 'data' is not a uint8 (N, 3072) array: {REFETCH}")
    if data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataFormatError(
            f"{path}: 'data' has shape {data.shape} and there are {len(labels)} labels; expected "
            f"(N, 3072) and N labels: {REFETCH}"
        )
    # each row is 1024 red, then 1024 green, then 1024 blue values, row-major: already CHW
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def read_cifar_batches(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Several CIFAR batches concatenated in the given order."""
    parts = [read_cifar_batch(path) for path in paths]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _to_nchw(x: np.ndarray, path: Path) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 -> contiguous (N, C, H, W)."""
    if x.dtype != np.uint8:
        raise DataFormatError(
            f"{path}: x is {x.dtype}, not uint8; store pixels 0-255 as np.uint8 "
            "(e.g. (x * 255).round().astype(np.uint8))"
        )
    if x.ndim == 3:
        return np.ascontiguousarray(x[:, None])
    if x.ndim == 4 and x.shape[3] <= 4:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.ndim == 4:
        raise DataFormatError(
            f"{path}: x has shape {x.shape}, which looks channels-first; store images as "
            "(N, H, W, C) with C <= 4, or (N, H, W) for grayscale"
        )
    raise DataFormatError(
        f"{path}: x has {x.ndim} dimensions (shape {x.shape}); store images as (N, H, W) or "
        "(N, H, W, C)"
    )


def read_npz_split(
    path: Path,
) -> tuple[np.ndarray, np.ndarray, list[str] | None, np.ndarray | None]:
    """Images (N, C, H, W), labels (N,), the optional class names and the optional marks of
    exact images (`exact`, bool (N,): the originals, where the others are lossy copies) from a
    .npz with x and y."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [key for key in ("x", "y") if key not in arrays.files]
            if missing:
                raise DataFormatError(
                    f"{path} has no array {' or '.join(map(repr, missing))} (it has "
                    f"{sorted(arrays.files)}); save it with np.savez(path, x=images, y=labels)"
                )
            x, y = arrays["x"], arrays["y"]
            names = arrays["class_names"] if "class_names" in arrays.files else None
            exact = arrays["exact"] if "exact" in arrays.files else None
    except (DataFormatError, DataNotFoundError):
        raise
    except FileNotFoundError:
        raise DataNotFoundError(f"{path} does not exist; check the path") from None
    except ValueError as e:  # an object array: it would need pickle, which is never allowed
        raise DataFormatError(
            f"{path} needs pickle to load ({e}); save x, y and class_names as plain arrays"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataFormatError(f"{path} is not a readable .npz file ({e}): write it again") from None
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
        raise DataFormatError(
            f"{path}: y must be integer labels of shape ({len(x)},), got {y.dtype} {y.shape}"
        )
    if len(y) and y.min() < 0:
        raise DataFormatError(f"{path}: y has negative labels; use 0 .. num_classes - 1")
    if exact is not None and (exact.dtype != np.bool_ or exact.shape != y.shape):
        raise DataFormatError(
            f"{path}: exact must mark each image true or false, a bool array of shape "
            f"({len(y)},), got {exact.dtype} {exact.shape}; save it as np.array(marks, dtype=bool)"
        )
    names = None if names is None else names.tolist()
    return _to_nchw(x, path), y.astype(np.int64), names, exact
