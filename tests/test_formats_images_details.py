"""The upstream file readers (data/formats.py: IDX, CIFAR pickles) and the one-image reader
(data/images.py) in detail: the near misses each must tell apart (an IDX header of another
element type or dimension count, an empty or header-only file, a CIFAR batch pickled by
Python 2 or with protocol 5, data of another dtype) and the exact one-line messages of their
refusals.

Each file is a few bytes written here in tmp_path, and the readers are called directly, so
the whole module takes milliseconds. The tests exist because docs/TESTING.md's mutation run
showed these paths untested (survivors of `mutmut run "cnnlab.data*"`).
"""

from __future__ import annotations

import pickle
import struct
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.formats import read_cifar_batch, read_idx, read_idx_split
from cnnlab.data.images import _has_transparency, normalize, read_image
from cnnlab.errors import DataFormatError, DataNotFoundError
from helpers import write_cifar_batch, write_idx

REFETCH = "delete it and get the data set again"


def cifar_images(n: int) -> np.ndarray:
    """n (32, 32, 3) uint8 images using all 256 values, as write_cifar_batch takes them."""
    return (np.arange(n * 32 * 32 * 3) % 251).astype(np.uint8).reshape(n, 32, 32, 3)


def as_chw(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2)


def dump(path: Path, obj: object, protocol: int = 2) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


# ---- IDX -------------------------------------------------------------------------------------


def test_a_missing_file_is_not_found_and_named(tmp_path):
    missing = tmp_path / "train-labels-idx1-ubyte"
    with pytest.raises(DataNotFoundError) as info:
        read_idx(missing, 1)
    assert str(info.value) == f"{missing} does not exist; check the path"
    with pytest.raises(DataNotFoundError) as info:
        read_cifar_batch(tmp_path / "data_batch_1")
    assert str(info.value) == f"{tmp_path / 'data_batch_1'} does not exist; check the path"


def test_a_file_it_may_not_read_says_to_fix_its_permissions(tmp_path, monkeypatch):
    # chmod cannot refuse root (the tests may run as root): refuse the read itself
    def refused(self):
        raise PermissionError(13, "Permission denied")

    path = write_idx(tmp_path / "labels-idx1-ubyte", np.zeros(3, np.uint8))
    monkeypatch.setattr(Path, "read_bytes", refused)
    with pytest.raises(DataFormatError) as info:
        read_idx(path, 1)
    assert str(info.value) == f"{path} cannot be read (permission denied); fix its permissions"


def not_idx(path: Path, ndim: int, magic: str) -> str:
    return (
        f"{path} is not an IDX file of bytes with {ndim} dimensions (magic {magic}, expected "
        f"0000080{ndim}); give the upstream MNIST-format file"
    )


@pytest.mark.parametrize(
    "content, magic",
    [
        (b"", "none"),  # an empty file
        (b"\x00\x00\x08", "000008"),  # the start of a magic number, cut off
        (struct.pack(">BBBBII", 0, 0, 8, 2, 1, 1) + b"\x07", "00000802"),  # 2-d, not 3-d
        # the right dimension count but int32 elements (type 0x0C), not unsigned bytes
        (struct.pack(">BBBBIII", 0, 0, 0x0C, 3, 1, 1, 1) + b"\x00" * 4, "00000c03"),
    ],
    ids=["empty", "cut-magic", "wrong-ndim", "int32-elements"],
)
def test_only_the_byte_idx_magic_of_the_right_dimension_count_is_read(tmp_path, content, magic):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataFormatError) as info:
        read_idx(path, 3)
    # the message shows exactly the file's four magic bytes (or says there are none)
    assert str(info.value) == not_idx(path, 3, magic)


def test_a_header_cut_off_before_its_sizes_is_truncated(tmp_path):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 3, 2))  # two of its three sizes missing
    with pytest.raises(DataFormatError) as info:
        read_idx(path, 3)
    assert str(info.value) == f"{path} is truncated inside its header: {REFETCH}"


def test_an_idx_file_of_no_items_is_only_a_header_and_reads_empty(tmp_path):
    labels = read_idx(write_idx(tmp_path / "labels-idx1-ubyte", np.zeros(0, np.uint8)), 1)
    assert labels.shape == (0,)
    images = read_idx(write_idx(tmp_path / "images-idx3-ubyte", np.zeros((0, 4, 6))), 3)
    assert images.shape == (0, 4, 6)


def test_a_truncated_idx_file_says_how_many_bytes_it_holds_and_promises(tmp_path):
    path = write_idx(tmp_path / "images-idx3-ubyte", np.ones((4, 5, 5), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataFormatError) as info:
        read_idx(path, 3)
    assert str(info.value) == (
        f"{path} holds 90 data bytes but its header promises 100 (shape (4, 5, 5)); it is "
        f"truncated or corrupt: {REFETCH}"
    )


def test_an_idx_split_gives_channel_first_images_and_int64_labels(tmp_path):
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    images_path = write_idx(tmp_path / "images-idx3-ubyte", pixels)
    labels_path = write_idx(tmp_path / "labels-idx1-ubyte", np.array([7, 2], np.uint8))
    images, labels = read_idx_split(images_path, labels_path)
    assert images.shape == (2, 1, 3, 4) and np.array_equal(images[:, 0], pixels)
    # int64, what cross-entropy wants, not the file's uint8 (nor numpy's default float)
    assert labels.dtype == np.int64 and labels.tolist() == [7, 2]

    write_idx(labels_path, np.array([7], np.uint8))
    with pytest.raises(DataFormatError) as info:
        read_idx_split(images_path, labels_path)
    assert str(info.value) == (
        f"{labels_path} has 1 labels but {images_path} has 2 images; "
        "the two files must come from the same split"
    )


# ---- CIFAR batches ---------------------------------------------------------------------------


class Python2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 pickled its str (SHORT_BINSTRING / BINSTRING), as the upstream
    cifar-10-batches-py files hold their keys and an array's raw pixels."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def test_an_upstream_python2_batch_reads_with_its_pixels(tmp_path):
    images, labels = cifar_images(3), [9, 0, 4]
    path = write_cifar_batch(tmp_path / "data_batch_1", images, np.array(labels))
    batch = pickle.loads(path.read_bytes())
    with open(path, "wb") as f:
        Python2Pickler(f, protocol=2).dump(batch)
    # numpy 1.x (which wrote the upstream files in 2009) names numpy.core, not numpy._core
    path.write_bytes(path.read_bytes().replace(b"numpy._core.", b"numpy.core."))
    raw = path.read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"_codecs" not in raw
    # pixel bytes >= 128 in a Python 2 str: only latin1 gives them back unchanged
    data, got = read_cifar_batch(path)
    assert np.array_equal(data, as_chw(images)) and got.tolist() == labels


def test_a_protocol5_batch_reads(tmp_path):
    # numpy pickles arrays with protocol 5 through numpy._core.numeric._frombuffer
    images = cifar_images(2)
    data = np.ascontiguousarray(as_chw(images)).reshape(2, -1)
    path = dump(tmp_path / "data_batch_1", {"data": data, "labels": [1, 3]}, protocol=5)
    assert b"_frombuffer" in path.read_bytes()
    data, labels = read_cifar_batch(path)
    assert np.array_equal(data, as_chw(images)) and labels.tolist() == [1, 3]


def test_labels_stored_as_a_small_int_array_come_back_int64(tmp_path):
    images = cifar_images(2)
    path = write_cifar_batch(tmp_path / "data_batch_1", images, np.zeros(2))
    batch = pickle.loads(path.read_bytes())
    batch[b"labels"] = np.array([5, 6], np.uint8)
    _, labels = read_cifar_batch(dump(path, batch))
    assert labels.dtype == np.int64 and labels.tolist() == [5, 6]


def test_a_refused_global_names_the_file_and_where_to_get_the_data(tmp_path):
    path = dump(tmp_path / "data_batch_1", {b"data": Counter(), b"labels": []})
    with pytest.raises(DataFormatError) as info:
        read_cifar_batch(path)
    assert str(info.value) == (
        f"{path} asks to run collections.Counter, which a CIFAR batch never needs; it was refused "
        "as unsafe: get cifar-10-batches-py from the official CIFAR-10 tarball"
    )


@pytest.mark.parametrize(
    "batch, reason",
    [
        ({b"data": np.zeros((2, 3072), np.uint8)}, "a CIFAR batch has no 'labels' entry"),
        (
            {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},  # the right shape
            "'data' is not a uint8 (N, 3072) array",
        ),
        ({b"data": [[0] * 3072], b"labels": [0]}, "'data' is not a uint8 (N, 3072) array"),
    ],
    ids=["no-labels", "float-data", "list-data"],
)
def test_a_batch_with_wrong_entries_is_refused_in_one_line(tmp_path, batch, reason):
    path = dump(tmp_path / "test_batch", batch)
    with pytest.raises(DataFormatError) as info:
        read_cifar_batch(path)
    assert str(info.value) == f"{path}: {reason}: {REFETCH}"


def test_a_batch_that_is_not_a_dict_is_refused(tmp_path):
    path = dump(tmp_path / "test_batch", [np.zeros((2, 3072), np.uint8), [0, 1]])
    with pytest.raises(DataFormatError) as info:
        read_cifar_batch(path)
    assert str(info.value) == f"{path} does not hold a CIFAR batch dict: {REFETCH}"


def test_a_truncated_batch_names_what_pickle_raised(tmp_path):
    path = write_cifar_batch(tmp_path / "test_batch", cifar_images(2), np.zeros(2))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataFormatError) as info:
        read_cifar_batch(path)
    assert str(info.value) == (
        f"{path} is not a readable CIFAR batch (UnpicklingError: pickle data was truncated): "
        f"{REFETCH}"
    )


# ---- one image file --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array, name, kind, mode",
    [
        (np.zeros((2, 2), np.float32), "float.tiff", "32-bit float", "F"),
        (np.zeros((2, 2), np.int32), "int.tiff", "32-bit integer", "I"),
        (np.full((2, 2), 300, np.uint16), "wide.png", "16-bit", "I;16"),
    ],
    ids=["F", "I", "I;16"],
)
def test_a_wide_image_says_its_pixel_kind_and_how_to_fix_it(tmp_path, array, name, kind, mode):
    path = tmp_path / name
    Image.fromarray(array).save(path)
    with pytest.raises(DataFormatError) as info:
        read_image(path, 1, 2)
    assert str(info.value) == (
        f"{path} has {kind} pixels (PIL mode {mode}); the model takes 8-bit images, and PIL "
        "would clip these at 255: save it as an 8-bit PNG or JPEG first"
    )


def test_a_transparent_key_colour_counts_only_where_it_is_used(tmp_path):
    # a grey PNG marks one grey level transparent (a tRNS chunk), with no alpha channel
    grey = np.array([[10, 20], [30, 40]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "used.png", transparency=20)
    Image.fromarray(grey).save(tmp_path / "unused.png", transparency=99)
    with pytest.raises(DataFormatError, match=r"used\.png has transparent pixels \(PIL mode L\)"):
        read_image(tmp_path / "used.png", 1, 2)
    assert torch.equal(read_image(tmp_path / "unused.png", 1, 2)[0], torch.from_numpy(grey))


def test_a_palette_with_a_transparent_colour_is_refused(tmp_path):
    # a paletted TGA keeps alpha in its palette (no "transparency" in image.info)
    image = Image.new("P", (2, 2))
    image.putdata([0, 1, 1, 0])
    image.putpalette([255, 0, 0, 255, 0, 0, 255, 0], "RGBA")  # colour 1 is transparent
    image.save(tmp_path / "sprite.tga")
    with pytest.raises(DataFormatError, match=r"sprite\.tga has transparent pixels"):
        read_image(tmp_path / "sprite.tga", 3, 2)


@pytest.mark.parametrize(
    "mode, info, expected",
    [
        ("RGBA", {}, True),
        ("LA", {}, True),
        ("PA", {}, True),
        ("RGBa", {}, True),
        ("La", {}, True),
        ("L", {"transparency": 5}, True),
        ("RGB", {}, False),
        ("P", {}, False),
    ],
)
def test_without_has_transparency_data_the_mode_and_info_decide(mode, info, expected):
    # Pillow before 10.1 has no Image.has_transparency_data: an image with only mode and info
    image = Image.new(mode, (1, 1))
    image.info.update(info)
    assert image.has_transparency_data is expected  # what newer Pillow says
    assert _has_transparency(SimpleNamespace(mode=mode, info=image.info)) is expected


def test_an_undecodable_image_names_the_error_type(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataFormatError) as info:
        read_image(path, 1, 4)
    assert str(info.value) == (
        f"{path} is not a readable image (OSError: image file is truncated); fix or replace it"
    )


def test_a_transparent_image_is_told_how_to_fix_it_in_one_line(tmp_path):
    path = tmp_path / "glass.png"
    image = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    image.putpixel((1, 1), (10, 20, 30, 0))
    image.save(path)
    with pytest.raises(DataFormatError) as caught:
        read_image(path, 3, 4)
    assert str(caught.value) == (
        f"{path} has transparent pixels (PIL mode RGBA); the model takes RGB images without "
        "transparency: flatten it onto a background first"
    )


def test_normalize_refuses_images_that_are_not_one_or_a_batch():
    with pytest.raises(ValueError) as caught:
        normalize(torch.zeros(4, 4, dtype=torch.uint8), [0.5], [0.25])
    assert str(caught.value) == (
        "normalize wants (C, H, W) or (N, C, H, W) images, got torch.Size([4, 4])"
    )
