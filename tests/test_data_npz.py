"""Your own arrays: npz:PATH with train.npz and test.npz."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.data import find_dataset, load_dataset, make_loader
from cnnlab.errors import DataFormatError, DataNotFoundError
from helpers import NPZ_CLASSES, learnable_images


def test_npz_dir_loads_as_nchw_with_its_class_names(npz_root):
    data = load_dataset(f"npz:{npz_root}")
    x, y = learnable_images(48, 16, 16, channels=3, num_classes=3, seed=3)
    assert data.name == f"npz:{npz_root}" and data.location == str(npz_root)
    assert data.input_shape == (3, 16, 16) and data.class_names == list(NPZ_CLASSES)
    assert data.train.images.shape == (48, 3, 16, 16) and data.train.images.is_contiguous()
    assert torch.equal(data.train.images, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert torch.equal(data.train.labels, torch.from_numpy(y)) and len(data.test) == 24
    pixels = x.astype(np.float64) / 255  # mean/std come from the training split
    np.testing.assert_allclose(data.mean, pixels.mean(axis=(0, 1, 2)), atol=1e-9)
    np.testing.assert_allclose(data.std, pixels.std(axis=(0, 1, 2)), atol=1e-9)
    assert find_dataset(f"npz:{npz_root}") == npz_root
    x_batch, _ = next(iter(make_loader(data, "train", batch_size=48)))
    torch.testing.assert_close(x_batch.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)


def test_grayscale_npz_without_class_names(tmp_path):
    for name, n in (("train", 10), ("test", 5)):
        x, y = learnable_images(n, 12, 12, num_classes=4, seed=n)
        np.savez(tmp_path / f"{name}.npz", x=x, y=y.astype(np.uint8), extra=np.zeros(3))
    data = load_dataset(f"npz:{tmp_path}")
    assert data.input_shape == (1, 12, 12) and data.class_names == ["0", "1", "2", "3"]
    assert data.train.labels.dtype == torch.int64


def rewrite(root, name: str = "train.npz", **arrays) -> None:
    np.savez(root / name, **arrays)


def good(n: int = 8):
    return learnable_images(n, 16, 16, channels=3, num_classes=3)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y": good()[1]}, r"train.npz has no array 'x'"),
        ({"x": good()[0]}, r"train.npz has no array 'y'"),
        ({"x": good()[0].astype(np.float32), "y": good()[1]}, r"train.npz: x is float32"),
        ({"x": good()[0][:, :, :, 0, None, None], "y": good()[1]}, r"train.npz: x has 5"),
        ({"x": good()[0].transpose(0, 3, 1, 2), "y": good()[1]}, "channels-first"),
        ({"x": good()[0], "y": good()[1][:5]}, r"train.npz: y must be integer labels"),
        ({"x": good()[0], "y": good()[1] + 5}, r"train.npz has label 7 but class_names"),
        (
            {"x": good()[0], "y": good()[1], "class_names": np.array([1, "a"], dtype=object)},
            "pickle",
        ),
        (
            {"x": good()[0], "y": good()[1], "exact": np.ones(8, np.uint8)},
            r"train.npz: exact must mark each image true or false, a bool array of shape \(8,\)",
        ),
        (
            {"x": good()[0], "y": good()[1], "exact": np.ones(7, bool)},
            r"got bool \(7,\); save it as np.array\(marks, dtype=bool\)",
        ),
    ],
)
def test_bad_npz_names_the_file(npz_root, arrays, message):
    if "class_names" not in arrays and "has label" in message:
        arrays["class_names"] = np.array(NPZ_CLASSES)
    rewrite(npz_root, **arrays)
    with pytest.raises(DataFormatError, match=message):
        load_dataset(f"npz:{npz_root}")


def test_test_split_must_have_the_training_image_shape(npz_root):
    x, y = learnable_images(4, 8, 8, channels=3, num_classes=3)
    rewrite(npz_root, "test.npz", x=x, y=y)
    with pytest.raises(DataFormatError, match=r"test.npz images are \(3, 8, 8\)"):
        load_dataset(f"npz:{npz_root}")


def test_missing_or_corrupt_npz(npz_root):
    (npz_root / "test.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataFormatError, match=r"test\.npz"):
        load_dataset(f"npz:{npz_root}")
    (npz_root / "test.npz").unlink()
    with pytest.raises(DataNotFoundError, match=r"test.npz does not exist"):
        load_dataset(f"npz:{npz_root}")


def test_the_test_images_marked_exact_are_kept_and_scored_alone(npz_root, tmp_path, capsys):
    """test.npz may mark which images are the originals (`exact`: ../shared/data's CIFAR-10
    test images after the first 1,017 are JPEG-decoded): the split keeps the marks, and
    `cnnlab eval` scores the marked images alone as well as the whole split."""
    import cnnlab
    from cnnlab.cli import main
    from cnnlab.report.predictions import load_predictions

    x, y = learnable_images(24, 16, 16, channels=3, num_classes=3, seed=4)
    marks = np.arange(24) % 3 != 1  # 16 exact, in no run of the labels
    rewrite(npz_root, "test.npz", x=x, y=y, class_names=np.array(NPZ_CLASSES), exact=marks)
    data = load_dataset(f"npz:{npz_root}")
    assert torch.equal(data.test.exact, torch.from_numpy(marks)) and data.train.exact is None
    kept = data.test.subset(data.test.labels != 0)  # a subset keeps the marks of its images
    assert torch.equal(kept.exact, torch.from_numpy(marks[y != 0]))
    result = cnnlab.train(
        model="mnist_cnn", dataset=f"npz:{npz_root}", epochs=1, batch_size=16, lr=0.01,
        val_fraction=0, out_dir=str(tmp_path), name="marked", progress="none",
        tensorboard=False, report=False,
    )  # fmt: skip
    evaluated, _ = cnnlab.evaluate_checkpoint(result.run_dir / "last.pt")
    predictions = load_predictions(result.run_dir)  # best.pt: the one epoch, the whole split
    right = predictions.labels == predictions.predicted
    assert sum(evaluated.exact.per_class_total) == 16
    assert evaluated.exact.accuracy == pytest.approx(right[marks].mean())
    assert evaluated.accuracy == pytest.approx(right.mean())
    main(["eval", str(result.run_dir)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == (
        f"test accuracy on its exact images  {right[marks].mean():.4f}  ({right[marks].sum()}"
        "/16; the others are lossy copies)"
    )
    resized = load_dataset(f"npz:{npz_root}", image_size=8).test  # resizing keeps the marks
    assert resized.images.shape[2:] == (8, 8) and torch.equal(resized.exact, data.test.exact)


def test_a_test_split_all_or_none_exact_is_scored_once(npz_root):
    import cnnlab

    x, y = learnable_images(24, 16, 16, channels=3, num_classes=3, seed=4)
    result = cnnlab.train(
        model="mnist_cnn", dataset=f"npz:{npz_root}", epochs=1, batch_size=16, val_fraction=0,
        out_dir=str(npz_root.parent), name="all", progress="none", tensorboard=False,
        report=False,
    )  # fmt: skip
    for marks in (np.ones(24, bool), np.zeros(24, bool)):
        rewrite(npz_root, "test.npz", x=x, y=y, exact=marks)
        assert cnnlab.evaluate_checkpoint(result.run_dir / "last.pt")[0].exact is None
