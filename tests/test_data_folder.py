"""Your own images: folder:PATH (ImageFolder convention) and FolderLoader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.data import FolderLoader, find_dataset, load_dataset, make_loader
from cnnlab.errors import ConfigError, DataFormatError, DataNotFoundError
from cnnlab.training.evaluation import load_trained_data
from helpers import PNG_CLASSES, collect


def pixels(paths: list[Path], mode: str = "RGB") -> np.ndarray:
    """(N, C, H, W) float64 in [0, 1] straight from the files."""
    arrays = [np.asarray(Image.open(path).convert(mode), dtype=np.float64) / 255 for path in paths]
    stacked = np.stack(arrays)
    return stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)


def test_folder_with_train_and_test(png_folder):
    data = load_dataset(f"folder:{png_folder}")
    assert data.name == f"folder:{png_folder}" and data.location == str(png_folder)
    assert data.class_names == list(PNG_CLASSES) and data.input_shape == (3, 32, 32)
    assert len(data.train) == 24 and len(data.test) == 12
    train_files = sorted((png_folder / "train").glob("*/*.png"))
    reference = pixels(train_files)
    np.testing.assert_allclose(data.mean, reference.mean(axis=(0, 2, 3)), atol=1e-9)
    np.testing.assert_allclose(data.std, reference.std(axis=(0, 2, 3)), atol=1e-9)
    loader = make_loader(data, "train", batch_size=10, num_workers=0)
    assert isinstance(loader, FolderLoader) and len(loader) == 3 and loader.num_items == 24
    x, y = next(iter(loader))
    assert x.dtype == torch.float32 and x.shape == (10, 3, 32, 32) and y.dtype == torch.int64
    mean = np.array(data.mean).reshape(1, 3, 1, 1)
    std = np.array(data.std).reshape(1, 3, 1, 1)
    expected = (reference[:10] - mean) / std  # the file order is ImageFolder's: class, name
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)
    assert y.tolist() == [0] * 8 + [1] * 2
    assert find_dataset(f"folder:{png_folder}") == png_folder


def test_flat_folder_is_split_by_class_with_the_seed(png_folder, tmp_path):
    flat = tmp_path / "flat"
    for path in png_folder.glob("*/*/*.png"):
        target = flat / path.parent.name / f"{path.parent.parent.name}-{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    data = load_dataset(f"folder:{flat}", test_fraction=0.25, seed=1)
    train = [path for path, _ in data.train.samples]
    test = [path for path, _ in data.test.samples]
    assert len(test) == 9 and len(train) == 27 and not set(train) & set(test)
    assert sorted(data.test.targets) == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # stratified: 12 * 0.25 each
    again = load_dataset(f"folder:{flat}", test_fraction=0.25, seed=1)
    assert [path for path, _ in again.test.samples] == test
    other = load_dataset(f"folder:{flat}", test_fraction=0.25, seed=2)
    assert [path for path, _ in other.test.samples] != test
    with pytest.raises(ConfigError, match="test_fraction"):
        load_dataset(f"folder:{flat}", test_fraction=1.0)
    # --test-fraction makes the test split of a training run; --val-fraction then holds out a
    # validation split from what is left: test, then validation, then training images
    result = cnnlab.train(
        model="mnist_cnn", dataset=f"folder:{flat}", test_fraction=0.5, val_fraction=1 / 3,
        epochs=1, out_dir=str(tmp_path / "runs"), progress="none", tensorboard=False,
    )  # fmt: skip
    facts = json.loads((result.run_dir / "config.json").read_text())
    # 12 per class: 6 to test, then 2 of the other 6 to validation
    assert facts["data"] == {"location": str(flat), "train": 12, "val": 6, "test": 18}
    state = torch.load(result.run_dir / "best.pt", weights_only=True)
    data = load_trained_data(state, result.run_dir / "best.pt")
    paths = {
        split: {part.dataset.samples[i][0] for i in part.indices}
        for split, part in (("train", data.train), ("val", data.val))
    }
    paths["test"] = {path for path, _ in data.test.samples}
    assert [len(paths[split]) for split in ("train", "val", "test")] == [12, 6, 18]
    assert not (paths["train"] & paths["val"] or (paths["train"] | paths["val"]) & paths["test"])
    assert sorted(data.val.targets) == [0, 0, 1, 1, 2, 2]  # stratified


def test_grayscale_folder_and_image_size(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((20, 24), 60 * i, np.uint8), "L").save(
                tmp_path / label / f"{i}.png"
            )
    data = load_dataset(f"folder:{tmp_path}", test_fraction=0.4)
    assert data.input_shape == (1, 20, 24) and data.train[0][0].shape == (1, 20, 24)
    resized = load_dataset(f"folder:{tmp_path}", image_size=16, test_fraction=0.4)
    assert resized.input_shape == (1, 16, 16)
    x, _ = next(iter(make_loader(resized, "test", batch_size=4, num_workers=0)))
    assert x.shape == (2, 1, 16, 16)


def test_folder_resume_and_workers_match_an_uninterrupted_epoch(png_folder):
    data = load_dataset(f"folder:{png_folder}")
    options = dict(batch_size=5, shuffle=True, augment=True, seed=3)
    loader = make_loader(data, "train", num_workers=0, **options)
    loader.set_epoch(1)
    full = collect(loader)
    assert sorted(torch.cat([y for _, y in full]).tolist()) == sorted(data.train.targets)
    resumed = make_loader(data, "train", num_workers=2, **options)
    resumed.set_epoch(1, start_batch=3)
    tail = collect(resumed)
    assert len(tail) == len(full) - 3
    for (x, y), (x_ref, y_ref) in zip(tail, full[3:], strict=True):
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    loader.set_epoch(2)
    assert not torch.equal(collect(loader)[0][1], full[0][1])


@pytest.mark.parametrize("world_size", [2, 7])
def test_folder_shards_cover_the_split_once(png_folder, world_size):
    """Each process loads its part of every batch; with 7, parts of batches of 4 are empty."""
    data = load_dataset(f"folder:{png_folder}")

    def image_sums(loader) -> list[float]:  # the test images' sums all differ
        return [round(float(s), 3) for x, _ in loader for s in x.sum(dim=(1, 2, 3))]

    whole = image_sums(make_loader(data, "test", batch_size=4, num_workers=0))
    assert len(set(whole)) == len(data.test)
    shards = []
    for rank in range(world_size):
        loader = make_loader(
            data, "test", batch_size=4, rank=rank, world_size=world_size, num_workers=0
        )
        shards += image_sums(loader)
    assert sorted(shards) == sorted(whole)


# ---- bad folders: each error names the folder or file -------------------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")


def test_empty_folder(tmp_path):
    with pytest.raises(DataFormatError, match=rf"{tmp_path} has no class folders"):
        load_dataset(f"folder:{tmp_path}")


def test_class_folder_without_images(png_folder):
    (png_folder / "train" / "dog").mkdir()
    (png_folder / "train" / "dog" / ".hidden").write_text("ignored")
    with pytest.raises(DataFormatError, match=r"class folder .*train/dog has no images"):
        load_dataset(f"folder:{png_folder}")


def test_non_image_file(png_folder):
    (png_folder / "test" / "bee" / "notes.txt").write_text("hello")
    with pytest.raises(DataFormatError, match=r"test/bee/notes.txt is not an image file"):
        load_dataset(f"folder:{png_folder}")


def test_unreadable_image(png_folder):
    broken = png_folder / "train" / "cat" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataFormatError, match=r"train/cat/broken.png is not a readable image"):
        load_dataset(f"folder:{png_folder}")


def test_test_class_unknown_to_train(png_folder):
    shutil.copytree(png_folder / "test" / "ant", png_folder / "test" / "zebra")
    with pytest.raises(DataFormatError, match=r"test/zebra is a class"):
        load_dataset(f"folder:{png_folder}")


def test_train_without_test(png_folder):
    shutil.rmtree(png_folder / "test")
    with pytest.raises(DataFormatError, match="has train/ but no test/"):
        load_dataset(f"folder:{png_folder}")
