"""Your own images in class folders (data/folder.py), in detail: which files and folders count
(hidden ones do not, linked ones do), the colour mode every image is converted to (the first
training image's), the seeded sample that the mean and std come from, `test_fraction` 0 and
`stats=False`, and the whole line of each refusal.

The folders are a few 4x4 PNGs written here, and most tests call scan() or load_folder() with
stats off, so each test takes milliseconds; test_data_folder.py checks the common paths.
These tests exist because a mutation run (`mutmut run "cnnlab.data.folder*"`) showed each of
these rules untested (a survivor).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from cnnlab.data import folder
from cnnlab.data.folder import folder_stats, load_folder, scan, verify_images
from cnnlab.errors import DataFormatError, DataNotFoundError


def png(path: Path, mode: str = "L", value: int = 100, size: tuple[int, int] = (4, 4)) -> str:
    """A one-colour PNG of `mode` and (height, width) `size` at `path`; the path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode in ("1", "L", "P") else (value,) * len(mode)
    Image.new(mode, size[::-1], colour).save(path)
    return str(path)


def test_hidden_files_and_folders_are_skipped_and_subfolders_and_any_case_count(tmp_path):
    png(tmp_path / "a" / "0.png")
    (tmp_path / "a" / ".DS_Store").write_text("Finder's")  # sorts before every image name
    png(tmp_path / "a" / "1.PNG")  # the extension in any case
    png(tmp_path / "a" / "sub" / "2.png")  # a subfolder's images are the class's too
    png(tmp_path / "a" / ".thumbs" / "3.png")  # a hidden folder's are not
    png(tmp_path / "b" / "0.jpg")
    png(tmp_path / ".cache" / "x" / "0.png")  # a hidden folder is no class
    (tmp_path / "README.txt").write_text("a file beside the class folders is no class")
    samples, class_names = scan(tmp_path)
    assert class_names == ["a", "b"]
    assert samples == [
        (str(tmp_path / "a" / "0.png"), 0),
        (str(tmp_path / "a" / "1.PNG"), 0),
        (str(tmp_path / "a" / "sub" / "2.png"), 0),
        (str(tmp_path / "b" / "0.jpg"), 1),
    ]


def test_images_in_a_linked_folder_count(tmp_path):
    png(tmp_path / "elsewhere" / "1.png")
    png(tmp_path / "data" / "a" / "0.png")
    png(tmp_path / "data" / "b" / "0.png")
    os.symlink(tmp_path / "elsewhere", tmp_path / "data" / "a" / "more")
    samples, _ = scan(tmp_path / "data")
    assert [path for path, label in samples if label == 0] == [
        str(tmp_path / "data" / "a" / "0.png"),
        str(tmp_path / "data" / "a" / "more" / "1.png"),
    ]


def test_a_link_back_to_a_folder_already_read_is_refused(tmp_path):
    png(tmp_path / "data" / "a" / "0.png")
    png(tmp_path / "data" / "b" / "0.png")
    os.symlink(tmp_path / "data", tmp_path / "data" / "a" / "up")  # a/up/a/up/... for ever
    with pytest.raises(DataFormatError) as caught:
        scan(tmp_path / "data")
    assert str(caught.value) == (
        f"{tmp_path / 'data' / 'a' / 'up' / 'a'} and {tmp_path / 'data' / 'a'} are the same "
        "folder through a link, so its images would count twice; remove the link"
    )


def test_a_link_to_a_folder_read_after_it_names_both(tmp_path):
    # "link" is walked before "z", the folder it points to: neither is a loop, both are read
    png(tmp_path / "a" / "z" / "0.png")
    png(tmp_path / "b" / "0.png")
    os.symlink(tmp_path / "a" / "z", tmp_path / "a" / "link")
    with pytest.raises(DataFormatError) as caught:
        scan(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'a' / 'z'} and {tmp_path / 'a' / 'link'} are the same folder through a "
        "link, so its images would count twice; remove the link"
    )


def test_every_image_takes_the_first_training_images_mode_and_size(tmp_path):
    # the first training image (train/a/0.png) is grey, 4x6; the others are other modes
    # and sizes: each comes out as one grey 4x6 channel, in both splits and in the stats
    png(tmp_path / "train" / "a" / "0.png", "L", 10, size=(4, 6))
    png(tmp_path / "train" / "a" / "1.png", "RGB", 200, size=(5, 5))
    png(tmp_path / "train" / "b" / "0.png", "RGBA", 60)
    png(tmp_path / "train" / "b" / "1.png", "P", 3)
    png(tmp_path / "test" / "a" / "0.png", "RGB", 90)
    png(tmp_path / "test" / "b" / "0.png", "LA", 30)
    data = load_folder(tmp_path, num_workers=0)  # stats on by default
    assert data.input_shape == (1, 4, 6)
    for split in (data.train, data.test):
        for i, (path, _) in enumerate(split.samples):
            image, _ = split[i]
            expected = np.asarray(Image.open(path).convert("L").resize((6, 4)))
            assert image.shape == (1, 4, 6)
            np.testing.assert_array_equal(image[0].numpy(), expected)
    # the mean and std are those of the training images as the loaders give them
    train = torch.stack([data.train[i][0] for i in range(4)]).double() / 255
    assert data.mean == pytest.approx([train.mean().item()], abs=1e-9)
    assert data.std == pytest.approx([train.std(unbiased=False).item()], abs=1e-9)


def test_the_stats_sample_depends_on_the_seed_not_on_torchs_global_generator(tmp_path, monkeypatch):
    # six one-colour images, of which two are measured: the mean says which two were drawn
    values = [0, 10, 20, 40, 80, 160]
    samples = [(png(tmp_path / f"{v}.png", "L", v), 0) for v in values]
    monkeypatch.setattr(folder, "STATS_SAMPLE", 2)
    means = []
    with torch.random.fork_rng():  # the global generator is put back afterwards
        for global_seed in (0, 1, 2):
            torch.manual_seed(global_seed)
            (mean,), _ = folder_stats(samples, "L", (4, 4), seed=5, num_workers=0)
            means.append(round(mean * 255, 6))
    pairs = {(a + b) / 2 for a in values for b in values if a < b}  # all pair means differ
    assert means[0] in pairs and means == [means[0]] * 3


def test_test_fraction_0_keeps_every_image_for_training(tmp_path):
    for name in ("a/0", "a/1", "b/0", "b/1"):
        png(tmp_path / f"{name}.png")
    data = load_folder(tmp_path, test_fraction=0, stats=False)
    assert len(data.train) == 4 and len(data.test) == 0
    assert data.mean == () and data.std == ()  # stats=False measures nothing: the caller scales


# ---- refusals: the whole line, naming what is wrong and what to do -------------------------


def test_a_folder_without_class_folders(tmp_path):
    png(tmp_path / "loose.png")
    with pytest.raises(DataFormatError) as info:
        scan(tmp_path)
    assert str(info.value) == (
        f"{tmp_path} has no class folders; put the images in {tmp_path}/<class name>/ "
        "(one folder per class)"
    )


def test_a_test_class_the_training_folder_lacks(tmp_path):
    png(tmp_path / "a" / "0.png")
    png(tmp_path / "b" / "0.png")
    with pytest.raises(DataFormatError) as info:
        scan(tmp_path, ["a"])
    assert str(info.value) == (
        f"{tmp_path / 'b'} is a class the training folder does not have; "
        "give train/ and test/ the same class folders"
    )


def test_a_file_that_is_no_image(tmp_path):
    png(tmp_path / "a" / "0.png")
    (tmp_path / "a" / "notes.txt").write_text("hello")
    with pytest.raises(DataFormatError) as info:
        scan(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'a' / 'notes.txt'} is not an image file (not one of "
        f"{', '.join(IMG_EXTENSIONS)}); move it out of the class folder"
    )


def test_an_unreadable_image_names_the_error(tmp_path):
    broken = tmp_path / "a" / "broken.png"
    broken.parent.mkdir()
    broken.write_text("not an image")
    with pytest.raises(DataFormatError, match=r"^.*broken\.png is not a readable image") as info:
        verify_images([(str(broken), 0)])
    assert "(UnidentifiedImageError: cannot identify image file" in str(info.value)
    assert str(info.value).endswith("; fix or remove it")


def test_a_test_folder_without_a_train_folder(tmp_path):
    png(tmp_path / "test" / "a" / "0.png")
    with pytest.raises(DataFormatError) as info:
        load_folder(tmp_path, stats=False)
    assert str(info.value) == (
        f"{tmp_path} has test/ but no train/; add {tmp_path / 'train'}/ with the same class "
        f"folders, or put the class folders directly in {tmp_path}"
    )


def test_a_folder_that_does_not_exist(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_folder(tmp_path / "nope")
    assert str(info.value) == (
        f"folder {tmp_path / 'nope'} does not exist; give folder:PATH with PATH holding one "
        "folder of images per class (or train/ and test/ with such folders)"
    )
