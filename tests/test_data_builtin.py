"""Built-in data sets: finding files offline, decoding formats, the cache, and bad files."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import (
    BUILTIN_DATASETS,
    find_dataset,
    formats,
    list_datasets,
    load_dataset,
    locate,
    search_dirs,
)
from cnnlab.errors import ConfigError, DataFormatError, DataNotFoundError
from helpers import FAKE_TEST, FAKE_TRAIN, learnable_images, write_cifar_files, write_idx


def expected_mnist(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return learnable_images(FAKE_TRAIN, 28, 28, seed=seed)


def test_list_datasets_names_the_four_builtins():
    assert list_datasets() == ["mnist", "fashion-mnist", "cifar10", "cifar2"]
    assert set(BUILTIN_DATASETS) == set(list_datasets())


def test_mnist_from_idx_gz(fake_data_root):
    data = load_dataset("mnist", fake_data_root, download=False)
    images, labels = expected_mnist()
    assert data.name == "mnist" and data.location == str(fake_data_root / "mnist")
    assert data.train.images.shape == (FAKE_TRAIN, 1, 28, 28) and len(data.test) == FAKE_TEST
    assert data.train.images.dtype == torch.uint8 and data.train.images.is_contiguous()
    assert data.train.labels.dtype == torch.int64
    assert torch.equal(data.train.images[:, 0], torch.from_numpy(images))
    assert torch.equal(data.train.labels, torch.from_numpy(labels))
    assert data.class_names == [str(d) for d in range(10)] and data.num_classes == 10
    assert data.mean == (0.1307,) and data.std == (0.3081,) and data.input_shape == (1, 28, 28)


def test_fashion_mnist_has_its_own_names_and_stats(fake_data_root):
    data = load_dataset("Fashion_MNIST", fake_data_root, download=False)
    assert data.name == "fashion-mnist" and data.class_names[0] == "T-shirt/top"
    assert data.mean == (0.2860,) and data.std == (0.3530,)
    assert torch.equal(data.train.labels, torch.from_numpy(expected_mnist(seed=10)[1]))


def test_uncompressed_idx_gives_the_same_arrays(fake_data_root, tmp_path):
    raw = tmp_path / "raw-root" / "mnist"
    raw.mkdir(parents=True)
    for gz in (fake_data_root / "mnist").glob("*.gz"):
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    from_gz = load_dataset("mnist", fake_data_root, download=False)
    from_raw = load_dataset("mnist", raw.parent, download=False)
    assert torch.equal(from_gz.train.images, from_raw.train.images)
    assert torch.equal(from_gz.test.labels, from_raw.test.labels)


@pytest.mark.parametrize(
    ("name", "layout"),
    [("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw"), ("mnist", "mnist")],
)
def test_torchvision_and_named_layouts(fake_data_root, tmp_path, name, layout):
    shutil.copytree(fake_data_root / "mnist", tmp_path / "root" / layout)
    assert find_dataset(name, tmp_path / "root") == tmp_path / "root" / layout
    assert len(load_dataset(name, tmp_path / "root", download=False).train) == FAKE_TRAIN


def test_files_directly_in_a_root_only_count_for_the_explicit_data_dir(fake_data_root, monkeypatch):
    folder = fake_data_root / "mnist"
    assert len(load_dataset("mnist", folder, download=False).train) == FAKE_TRAIN
    # through $CNNLAB_DATA they could be any MNIST-format set, so they are not taken
    monkeypatch.setenv("CNNLAB_DATA", str(folder))
    assert find_dataset("mnist") is None


def test_cifar10_from_python_batches(fake_cifar_root):
    data = load_dataset("cifar10", fake_cifar_root, download=False)
    images, labels = learnable_images(140, 32, 32, channels=3, seed=7)
    assert data.train.images.shape == (100, 3, 32, 32) and len(data.test) == 40
    assert torch.equal(data.train.images, torch.from_numpy(images[:100]).permute(0, 3, 1, 2))
    assert torch.equal(data.test.labels, torch.from_numpy(labels[100:]))
    assert data.class_names[:3] == ["airplane", "automobile", "bird"]
    assert data.mean == (0.4914, 0.4822, 0.4465) and data.std == (0.2470, 0.2435, 0.2616)


def test_cifar2_keeps_airplanes_and_birds_relabelled(fake_cifar_root):
    full = load_dataset("cifar10", fake_cifar_root, download=False)
    two = load_dataset("cifar2", fake_cifar_root, download=False)
    keep = (full.train.labels == 0) | (full.train.labels == 2)
    assert two.class_names == ["airplane", "bird"] and two.num_classes == 2
    assert torch.equal(two.train.images, full.train.images[keep])  # same order
    assert torch.equal(two.train.labels, (full.train.labels[keep] == 2).long())  # 0->0, 2->1
    assert len(two.test) == int(((full.test.labels == 0) | (full.test.labels == 2)).sum())
    assert two.mean == full.mean and two.location == full.location


def test_cifar_in_named_folder_and_as_npz(fake_cifar_root, tmp_path):
    nested = tmp_path / "nested" / "cifar10" / "cifar-10-batches-py"
    shutil.copytree(fake_cifar_root / "cifar-10-batches-py", nested)
    reference = load_dataset("cifar10", tmp_path / "nested", download=False)
    npz = tmp_path / "npz-root" / "cifar10"
    npz.mkdir(parents=True)
    for split in (reference.train, reference.test):
        name = "train.npz" if split is reference.train else "test.npz"
        hwc = split.images.permute(0, 2, 3, 1).numpy()  # the shared data's layout
        marks = np.arange(len(split)) % 2 == 0  # as the shared data's: some images lossy
        np.savez(npz / name, x=hwc, y=split.labels.numpy(), exact=marks)
    from_npz = load_dataset("cifar2", npz.parent, download=False)
    assert from_npz.location == str(npz)
    assert torch.equal(
        from_npz.train.images, load_dataset("cifar2", tmp_path / "nested").train.images
    )
    # the test images' marks follow them into CIFAR-2 (airplanes and birds alone)
    two = (reference.test.labels == 0) | (reference.test.labels == 2)
    assert torch.equal(from_npz.test.exact, torch.from_numpy(marks)[two])
    assert torch.equal(load_dataset("cifar10", npz.parent).test.exact, torch.from_numpy(marks))
    assert from_npz.train.exact is None  # marks are read from test.npz alone


def test_search_order_data_dir_then_env_then_cache(fake_data_root, tmp_path, monkeypatch):
    roots = {}
    for name in ("explicit", "env", "cache"):
        roots[name] = tmp_path / name
        shutil.copytree(fake_data_root / "mnist", roots[name] / "mnist")
    monkeypatch.setenv("CNNLAB_DATA", str(roots["env"]))
    monkeypatch.setenv("CNNLAB_CACHE", str(roots["cache"]))
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIRS", [tmp_path / "system"])
    assert search_dirs(roots["explicit"]) == [
        roots["explicit"], roots["env"], roots["cache"], tmp_path / "system",
    ]  # fmt: skip
    assert load_dataset("mnist", roots["explicit"]).location == str(roots["explicit"] / "mnist")
    assert load_dataset("mnist").location == str(roots["env"] / "mnist")
    monkeypatch.delenv("CNNLAB_DATA")
    assert load_dataset("mnist").location == str(roots["cache"] / "mnist")


def test_system_dirs_are_searched_last(fake_data_root, monkeypatch):
    assert find_dataset("fashion-mnist") is None
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIRS", [fake_data_root])
    assert find_dataset("fashion-mnist") == fake_data_root / "fashion-mnist"


def test_not_found_offline_is_one_line_with_the_places_and_the_fix(tmp_path):
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("mnist", tmp_path / "nowhere", download=False)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message
    assert os.environ["CNNLAB_CACHE"] in message
    assert "CNNLAB_DATA" in message and "mnist/train-images-idx3-ubyte.gz" in message


def test_incomplete_copy_is_named_in_the_not_found_error(fake_data_root):
    (fake_data_root / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError, match="lacks t10k-labels-idx1-ubyte"):
        load_dataset("mnist", fake_data_root, download=False)


def test_download_failure_is_one_line_without_torchvision_traceback(monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirror 1")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("mnist")
    assert "\n" not in str(caught.value) and "Tried mirror 1" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_download_goes_to_the_cache_and_is_read_by_our_reader(monkeypatch):
    import torchvision.datasets

    from helpers import write_mnist_files

    calls = []

    def fake_download(root, train, download):
        calls.append(root)
        write_mnist_files(Path(root) / "MNIST" / "raw", gz=False)

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_download)
    data = load_dataset("mnist")
    assert calls == [os.environ["CNNLAB_CACHE"]]
    assert data.location == str(Path(os.environ["CNNLAB_CACHE"]) / "MNIST" / "raw")
    assert len(data.train) == FAKE_TRAIN


def test_decoded_arrays_are_cached_and_used_the_second_time(fake_data_root, monkeypatch):
    first = load_dataset("mnist", fake_data_root)
    cached = list((Path(os.environ["CNNLAB_CACHE"]) / "decoded").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("mnist-")

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(formats, "read_idx_split", no_decoding)
    second = load_dataset("mnist", fake_data_root)
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.test.labels, second.test.labels)


def test_changed_source_files_are_decoded_again(fake_data_root):
    load_dataset("mnist", fake_data_root)
    images, labels = learnable_images(10, 28, 28, seed=99)
    write_idx(fake_data_root / "mnist" / "train-images-idx3-ubyte.gz", images)
    write_idx(fake_data_root / "mnist" / "train-labels-idx1-ubyte.gz", labels)
    assert len(load_dataset("mnist", fake_data_root).train) == 10


def test_unwritable_cache_is_skipped(fake_data_root, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CNNLAB_CACHE", str(blocker / "cache"))  # mkdir under a file fails
    assert len(load_dataset("mnist", fake_data_root, download=False).train) == FAKE_TRAIN


def test_image_size_resizes_in_memory_data(fake_data_root):
    data = load_dataset("mnist", fake_data_root, image_size=32)
    assert data.input_shape == (1, 32, 32)
    assert data.train.images.shape == (FAKE_TRAIN, 1, 32, 32)
    assert data.train.images.dtype == torch.uint8


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError) as caught:
        load_dataset("imagenet")
    message = str(caught.value)
    assert all(name in message for name in list_datasets())
    assert "npz:PATH" in message and "folder:PATH" in message and "\n" not in message
    with pytest.raises(ConfigError):
        find_dataset("imagenet")


# ---- bad files: each error names the file -------------------------------------------------


def mnist_file(root: Path, name: str) -> Path:
    return root / "mnist" / f"{name}-idx{3 if 'images' in name else 1}-ubyte.gz"


def test_truncated_gzip_names_the_file(fake_data_root):
    path = mnist_file(fake_data_root, "train-images")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz"):
        load_dataset("mnist", fake_data_root)


def test_truncated_idx_data_names_the_file(fake_data_root):
    path = mnist_file(fake_data_root, "t10k-images")
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(DataFormatError, match=r"t10k-images.*truncated"):
        load_dataset("mnist", fake_data_root)


def test_wrong_magic_names_the_file(fake_data_root):
    path = mnist_file(fake_data_root, "train-labels")
    write_idx(path, np.zeros((FAKE_TRAIN, 2), np.uint8))  # a 2-d IDX where labels are 1-d
    with pytest.raises(DataFormatError, match=r"train-labels.*magic 00000802"):
        load_dataset("mnist", fake_data_root)


def test_label_count_must_match_image_count(fake_data_root):
    write_idx(mnist_file(fake_data_root, "t10k-labels"), np.zeros(FAKE_TEST - 1, np.uint8))
    with pytest.raises(DataFormatError, match=r"t10k-labels.*31 labels.*32 images"):
        load_dataset("mnist", fake_data_root)


def test_wrong_image_size_for_the_dataset(fake_data_root):
    write_idx(mnist_file(fake_data_root, "train-images"), np.zeros((FAKE_TRAIN, 20, 20), np.uint8))
    with pytest.raises(DataFormatError, match=r"\(1, 20, 20\)"):
        load_dataset("mnist", fake_data_root)


def test_truncated_cifar_batch_names_the_file(fake_cifar_root):
    path = fake_cifar_root / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataFormatError, match="data_batch_3"):
        load_dataset("cifar10", fake_cifar_root)


class RunsAShellCommand:
    """What a malicious pickle does: unpickling it calls os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_cifar_pickle_is_refused_and_runs_nothing(tmp_path):
    folder = write_cifar_files(tmp_path / "root" / "cifar-10-batches-py")
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump({b"data": RunsAShellCommand(marker), b"labels": []}, f, protocol=2)
    with pytest.raises(DataFormatError, match=r"data_batch_2 asks to run .*system.*refused"):
        load_dataset("cifar10", tmp_path / "root")
    assert not marker.exists()


def test_cifar_pickle_of_the_wrong_shape(tmp_path):
    folder = write_cifar_files(tmp_path / "root" / "cifar-10-batches-py")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, f, protocol=2)
    with pytest.raises(DataFormatError, match=r"test_batch.*\(4, 100\)"):
        load_dataset("cifar10", tmp_path / "root")
