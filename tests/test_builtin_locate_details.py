"""Finding and loading built-in data sets, in detail (data/locate.py, data/builtin.py): where
the search looks (the default cache, several $CNNLAB_DATA folders, a missing --data-dir), what a
copy in .npz files is taken as, the exact "not found" and "bad labels" lines (what lacks, where
it looked, what to do), and what a download does around torchvision (one line on stderr, a new
cache folder, a 60 s socket timeout given back afterwards, the failure's reason cut to 300
characters).

torchvision is replaced by a fake class that writes the fake MNIST files, so nothing goes to
the network and each test takes milliseconds; test_data_builtin.py checks the ordinary cases.
These tests exist because a mutation run (mutmut) showed the paths untested: survivors of
data/locate.py and data/builtin.py.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from cnnlab.data import BUILTIN_DATASETS, find_dataset, load_dataset, locate, search_dirs
from cnnlab.data.locate import Source, cache_dir
from cnnlab.errors import DataFormatError, DataNotFoundError
from helpers import FAKE_TRAIN, write_cifar_files, write_idx, write_mnist_files

# how_to_get's advice for mnist, its last words with network access allowed and without
PUT_MNIST = (
    "put mnist/train-images-idx3-ubyte.gz and the other three IDX files, or mnist/train.npz + "
    "test.npz in a folder named by --data-dir (in Python data_dir=) or CNNLAB_DATA, "
)
NETWORK = "or run with network access to download it"
NO_DOWNLOAD = "or allow downloading it (drop --no-download; in Python download=True)"


# ---- where the search looks ----------------------------------------------------------------


def test_default_cache_is_dot_cache_cnnlab_in_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CNNLAB_CACHE")
    assert cache_dir() == tmp_path / ".cache" / "cnnlab"
    monkeypatch.setenv("CNNLAB_CACHE", "")  # set but empty: the default too
    assert cache_dir() == tmp_path / ".cache" / "cnnlab"


def test_cnnlab_data_holds_several_folders_joined_by_pathsep(fake_data_root, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    monkeypatch.setenv("CNNLAB_DATA", f"{empty}{os.pathsep}{os.pathsep}{fake_data_root}")
    assert search_dirs()[:3] == [empty, fake_data_root, Path(os.environ["CNNLAB_CACHE"])]
    assert find_dataset("mnist") == fake_data_root / "mnist"


def test_a_missing_data_dir_does_not_end_the_search(fake_data_root, tmp_path, monkeypatch):
    # the roots after it ($CNNLAB_DATA, the cache) are still searched
    monkeypatch.setenv("CNNLAB_DATA", str(fake_data_root))
    assert find_dataset("mnist", tmp_path / "nowhere") == fake_data_root / "mnist"


def test_find_dataset_of_a_missing_own_folder_is_none(tmp_path):
    assert find_dataset(f"npz:{tmp_path / 'nowhere'}") is None
    assert find_dataset(f"folder:{tmp_path / 'nowhere'}") is None


def test_npz_copies_of_a_builtin_are_located_as_npz(tmp_path):
    mnist = BUILTIN_DATASETS["mnist"]
    for folder in (tmp_path / "named" / "mnist", tmp_path / "direct"):
        folder.mkdir(parents=True)
        for name in ("train.npz", "test.npz"):
            (folder / name).write_bytes(b"")  # locating reads no file
    named = tmp_path / "named" / "mnist"
    files = (named / "train.npz", named / "test.npz")
    assert locate.locate(mnist, tmp_path / "named") == (Source("npz", named, files), [])
    # directly in the data_dir named for the run
    direct = tmp_path / "direct"
    files = (direct / "train.npz", direct / "test.npz")
    assert locate.locate(mnist, direct) == (Source("npz", direct, files), [])


# ---- "not found": where it looked, what lacks, what to do -----------------------------------


def test_partial_cifar_copy_names_every_missing_batch(tmp_path):
    folder = write_cifar_files(tmp_path / "root" / "cifar-10-batches-py")
    (folder / "data_batch_3").unlink()
    (folder / "test_batch").unlink()
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("cifar10", tmp_path / "root", download=False)
    assert str(caught.value) == (
        f"cifar10 was not found in {tmp_path / 'root'}, {os.environ['CNNLAB_CACHE']} "
        f"(incomplete: {folder} lacks data_batch_3, test_batch); put cifar-10-batches-py/ (from "
        "cifar-10-python.tar.gz), or cifar10/train.npz + test.npz in a folder named by "
        f"--data-dir (in Python data_dir=) or CNNLAB_DATA, {NO_DOWNLOAD}"
    )


def test_two_partial_copies_are_both_named(tmp_path):
    folder = write_mnist_files(tmp_path / "mnist", gz=False)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    (folder / "train.npz").write_bytes(b"")  # an npz copy without its test.npz
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("mnist", tmp_path, download=False)
    assert str(caught.value) == (
        f"mnist was not found in {tmp_path}, {os.environ['CNNLAB_CACHE']} (incomplete: "
        f"{folder} lacks t10k-labels-idx1-ubyte; {folder} lacks test.npz); "
        f"{PUT_MNIST}{NO_DOWNLOAD}"
    )


# ---- decoded files are checked before they are used or cached ----------------------------


def test_a_label_past_the_last_class_is_refused_with_the_folder_named(tmp_path):
    folder = write_mnist_files(tmp_path / "mnist", gz=False)
    labels = np.arange(32) % 10
    labels[5] = 10  # one past mnist's 0..9, in the test split
    write_idx(folder / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(DataFormatError) as caught:
        load_dataset("mnist", tmp_path, download=False)
    assert str(caught.value) == (
        f"{folder} has labels outside 0..9 for mnist; put the right files there"
    )


# ---- downloading: torchvision replaced by a fake ------------------------------------------


@pytest.fixture
def fake_torchvision(monkeypatch):
    """torchvision.datasets.MNIST as a class that acts like the real one (it fetches nothing
    unless download is true) and records what it saw; its `writes` says whether it puts the
    fake files where torchvision would. A default socket timeout of 7.5 s is set for the test
    and the one before it restored after."""
    import torchvision.datasets

    class FakeMNIST:
        seen: ClassVar[list[tuple]] = []
        writes = True
        error: Exception | None = None

        def __init__(self, root, train, download):
            FakeMNIST.seen.append((root, Path(root).is_dir(), socket.getdefaulttimeout()))
            if FakeMNIST.error is not None:
                raise FakeMNIST.error
            if not download:
                raise RuntimeError("Dataset not found. You can use download=True to download it")
            if FakeMNIST.writes:
                write_mnist_files(Path(root) / "MNIST" / "raw", gz=False)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(7.5)
    yield FakeMNIST
    socket.setdefaulttimeout(previous)


def test_download_makes_the_cache_says_so_on_stderr_and_restores_the_timeout(
    fake_torchvision, tmp_path, monkeypatch, capsys
):
    cache = tmp_path / "new" / "cache"  # neither folder exists yet
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    assert len(load_dataset("mnist").train) == FAKE_TRAIN
    # torchvision got the cache made, parents too, and a 60 s timeout against a dead network
    assert fake_torchvision.seen == [(str(cache), True, 60)]
    assert socket.getdefaulttimeout() == 7.5  # the caller's timeout is back
    assert capsys.readouterr() == ("", f"cnnlab: downloading mnist into {cache} (once)\n")


@pytest.mark.parametrize(
    ("error", "reason"),
    [(RuntimeError("x" * 400), "x" * 300), (RuntimeError(" \n "), "RuntimeError")],
    ids=["long", "empty"],
)
def test_download_failure_gives_a_short_reason_and_the_advice(fake_torchvision, error, reason):
    # the reason is torchvision's message cut to 300 characters, or the error's type if empty
    fake_torchvision.error = error
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("mnist")
    assert str(caught.value) == (
        f"mnist is not on disk and downloading it into {os.environ['CNNLAB_CACHE']} failed "
        f"({reason}); {PUT_MNIST}{NETWORK}"
    )
    assert socket.getdefaulttimeout() == 7.5


def test_download_that_leaves_no_files_says_where_it_looked(fake_torchvision):
    fake_torchvision.writes = False
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("mnist")
    # downloading was allowed: the advice is network access, not "drop --no-download"
    assert str(caught.value) == (
        f"mnist was not found in {os.environ['CNNLAB_CACHE']}; {PUT_MNIST}{NETWORK}"
    )
