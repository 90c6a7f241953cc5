"""A run's predictions (report/predictions.py) in detail: the counts and orders computed from
them, checked against a count made by hand on a few hand-made labels, predictions and
confidences (ties, a class never seen, mistakes made once); what compute_predictions takes from
the checkpoint (its device, defaults, validation split, batch size, path in errors); and the
cache: what is read back, of which split, from which version, and that a folder that cannot be
written only means no cache.

Most tests make a Predictions by hand or call compute_predictions on a few dozen images given
in Python, with tiny_run's trained model (read only: a changed checkpoint is saved elsewhere),
so the file costs a fraction of a second. Each test exists because a survivor of
`mutmut run "cnnlab.report*"` showed the path untested (docs/TESTING.md).
"""

from __future__ import annotations

import re
import shutil
import warnings

import numpy as np
import pytest

from cnnlab.data.holdout import with_validation
from cnnlab.data.own import own_data
from cnnlab.errors import CheckpointError, ConfigError, ModelError, RunFolderError
from cnnlab.report import predictions as predictions_module
from cnnlab.report.predictions import (
    CACHE,
    Predictions,
    _read_cache,
    _write_cache,
    compute_predictions,
    load_predictions,
)
from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from helpers import hand_predictions, learnable_images, relocate_checkpoint

NAMES = ["ant", "bee", "cat", "dog"]


def made(labels, predicted, confidence=0.5, split="test") -> Predictions:
    """Predictions made by hand: four classes, no pixels kept."""
    return hand_predictions(labels, predicted, NAMES, confidence=confidence, split=split)


def checkpoint_with(tiny_run, tmp_path, drop=(), **config):
    """tiny_run's best.pt (mnist_cnn, 4 classes, 1×28×28) saved in tmp_path with its
    config's `config` values changed and the keys in `drop` left out."""
    state = load_checkpoint(tiny_run / "best.pt")
    state["config"].update(config)
    for key in drop:
        del state["config"][key]
    path = tmp_path / "best.pt"
    save_checkpoint(state, path)
    return path


def given_data(num_classes=4):
    """Data given in Python, whole (no validation split yet): 96 training and 32 test images
    of mnist_cnn's shape."""
    train = learnable_images(96, 28, 28, channels=1, num_classes=num_classes, seed=1)
    test = learnable_images(32, 28, 28, channels=1, num_classes=num_classes, seed=2)
    return own_data(train, test)


# --- counts and orders ------------------------------------------------------------------------


def test_top_losses_ties_keep_the_split_order():
    # equal confidences among the mistakes: the earlier image comes first, so the view (and
    # the pixels kept for it) is the same on every machine
    labels = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]
    predicted = [1, 1, 3, 0, 2, 1, 3, 0, 1, 2, 0, 1]
    confidence = [0.6, 0.99, 0.9, 0.6, 0.9, 0.95, 0.6, 0.9, 0.6, 0.9, 0.6, 0.9]
    predictions = made(labels, predicted, confidence)
    wrong = [i for i in range(12) if labels[i] != predicted[i]]
    by_hand = sorted(wrong, key=lambda i: (-confidence[i], i))
    assert predictions.top_losses().tolist() == by_hand
    assert predictions.top_losses(3).tolist() == by_hand[:3] == [2, 4, 7]


def test_confusion_is_true_by_predicted_even_without_the_last_class():
    # no image of class 3 and none predicted as 3: the matrix is still 4×4
    labels, predicted = [0, 1, 1, 2, 0, 2], [1, 1, 0, 2, 0, 0]
    by_hand = np.zeros((4, 4), np.int64)
    for t, p in zip(labels, predicted, strict=True):
        by_hand[t, p] += 1
    assert np.array_equal(made(labels, predicted).confusion(), by_hand)


def test_per_class_accuracy_is_nan_for_a_class_without_images_and_warns_nothing():
    predictions = made([0, 1, 1, 2, 0, 2], [1, 1, 0, 2, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning printed under a report
        accuracy = predictions.per_class_accuracy()
    assert accuracy[:3].tolist() == [0.5, 0.5, 0.5] and np.isnan(accuracy[3])


def test_most_confused_counts_single_mistakes_and_keeps_ties_in_row_order():
    # off the diagonal: (0,1)×2, (1,0)×1, (2,3)×2, (3,1)×1, (0,3)×1, (2,0)×1, (3,2)×2
    pairs = [(0, 1), (0, 1), (1, 0), (2, 3), (2, 3), (3, 1), (0, 3), (2, 0), (3, 2), (3, 2)]
    labels = [t for t, _ in pairs] + [0, 1, 2, 3]  # one right answer per class
    predicted = [p for _, p in pairs] + [0, 1, 2, 3]
    predictions = made(labels, predicted)
    counts = {pair: pairs.count(pair) for pair in set(pairs)}
    by_hand = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    expected = [(t, p, count) for (t, p), count in by_hand]
    assert predictions.most_confused() == expected[:5]  # five by default
    assert predictions.most_confused(10) == expected  # all seven, the single ones too
    assert expected[:3] == [(0, 1, 2), (2, 3, 2), (3, 2, 2)]


def test_an_image_not_kept_is_a_key_error_naming_it():
    with pytest.raises(KeyError, match="validation image 7 is not kept in the predictions"):
        made([0], [0], split="val").image(7)


# --- compute_predictions ----------------------------------------------------------------------


def test_defaults_look_at_the_test_split_of_a_checkpoint_saved_on_a_gpu(tiny_run, tmp_path):
    # a best.pt written on a GPU is read onto this machine's device (auto), on the test split
    gpu = tmp_path / "best.pt"
    relocate_checkpoint(tiny_run / "best.pt", gpu)
    predictions = compute_predictions(gpu, "abc", data=given_data())
    assert predictions.split == "test" and predictions.checkpoint == "best.pt"
    assert predictions.digest == "abc"
    assert np.array_equal(predictions.labels, given_data().test.labels.numpy())


@pytest.mark.parametrize("seed", [5, None])
def test_the_validation_split_is_held_out_with_the_runs_fraction_and_seed(tiny_run, tmp_path, seed):
    # data given in Python comes whole: the images looked at are the ones the run held out
    # with its seed (0, TrainConfig's default, when the config has none)
    config = {"val_fraction": 0.25} if seed is None else {"val_fraction": 0.25, "seed": seed}
    path = checkpoint_with(tiny_run, tmp_path, drop=["seed"] if seed is None else [], **config)
    predictions = compute_predictions(path, "abc", split="val", data=given_data())
    val = with_validation(given_data(), 0.25, seed or 0).val
    other = with_validation(given_data(), 0.25, 1 if seed is None else 0).val
    assert predictions.split == "val" and len(predictions.labels) == len(val) == 24
    assert np.array_equal(predictions.labels, val.labels.numpy())
    assert np.array_equal(predictions.images, val.images.numpy())  # all 24 are kept
    assert not np.array_equal(predictions.images, other.images.numpy())  # the seed matters


@pytest.mark.parametrize("drop", [[], ["val_fraction"]])
def test_a_run_that_held_nothing_out_has_no_validation_split_to_look_at(tiny_run, tmp_path, drop):
    # val_fraction 0, or none in the config (held nothing out)
    path = checkpoint_with(tiny_run, tmp_path, drop=drop, val_fraction=0.0)
    with pytest.raises(
        RunFolderError,
        match=re.escape(f"{path} was trained without a validation split, so there is none"),
    ):
        compute_predictions(path, "abc", split="val", data=given_data())


def test_the_runs_evaluation_batch_size_is_used(tiny_run, tmp_path, monkeypatch):
    # --eval-batch-size is what fits the run's memory: looking at it again uses it too
    import cnnlab.data

    sizes = []
    real = cnnlab.data.make_loader

    def spy(data, split, **options):
        sizes.append(options["batch_size"])
        return real(data, split, **options)

    monkeypatch.setattr(cnnlab.data, "make_loader", spy)
    path = checkpoint_with(tiny_run, tmp_path, eval_batch_size=7)
    predictions = compute_predictions(path, "abc", data=given_data())
    assert sizes == [7] and len(predictions.labels) == 32


def test_errors_about_the_checkpoint_name_its_file(tiny_run, tmp_path):
    path = checkpoint_with(tiny_run, tmp_path)
    with pytest.raises(CheckpointError, match=re.escape(f"{path} is a mnist_cnn for 4 classes")):
        compute_predictions(path, "abc", data=given_data(num_classes=3))
    state = load_checkpoint(path)
    state["model_name"], state["model_source"] = f"{tmp_path}/net.py:Net", None
    save_checkpoint(state, path)
    with pytest.raises(ModelError, match=re.escape(f"{path} names its model")):
        compute_predictions(path, "abc", data=given_data())


def test_load_predictions_refuses_a_run_without_a_checkpoint(tiny_run, tmp_path):
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("*.pt", CACHE))
    with pytest.raises(RunFolderError, match=re.escape(f"{run} has no best.pt or last.pt: ")):
        load_predictions(run)


def test_load_predictions_uses_the_device_asked_for(tiny_run, tmp_path):
    # an unknown device is refused, not replaced by "auto"
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("last.pt", CACHE))
    with pytest.raises(ConfigError, match="unknown device 'nowhere'"):
        load_predictions(run, device="nowhere")


# --- the cache --------------------------------------------------------------------------------


def with_pixels(predictions: Predictions) -> Predictions:
    predictions.image_index = np.array([0, 2], np.int64)
    predictions.images = np.arange(16, dtype=np.uint8).reshape(2, 1, 2, 4)
    return predictions


def assert_same(read: Predictions, written: Predictions) -> None:
    for name in ("checkpoint", "digest", "class_names", "split"):
        assert getattr(read, name) == getattr(written, name), name
    for name in predictions_module.ARRAYS:
        assert np.array_equal(getattr(read, name), getattr(written, name)), name


def test_a_validation_cache_is_read_back_whole_for_the_validation_split(tmp_path):
    written = with_pixels(made([0, 1, 2], [0, 2, 2], [0.9, 0.7, 0.8], split="val"))
    written.checkpoint = "last.pt"
    _write_cache(tmp_path / CACHE, written)
    read = _read_cache(tmp_path / CACHE, "d" * 64, "val")
    assert read is not None
    assert_same(read, written)
    assert _read_cache(tmp_path / CACHE, "d" * 64, "test") is None  # another split
    assert _read_cache(tmp_path / CACHE, "e" * 64, "val") is None  # another checkpoint


def test_a_version_1_cache_holds_the_test_split(tmp_path):
    # written before caches named their split: only the test split was ever cached
    old = with_pixels(made([0, 1, 2], [0, 2, 2], [0.9, 0.7, 0.8]))
    arrays = {name: getattr(old, name) for name in predictions_module.ARRAYS}
    np.savez(
        tmp_path / CACHE, version=np.array(1), checkpoint=np.array("best.pt"),
        digest=np.array(old.digest), class_names=np.array(NAMES), **arrays,
    )  # fmt: skip
    read = _read_cache(tmp_path / CACHE, old.digest, "test")
    assert read is not None
    assert_same(read, old)
    assert _read_cache(tmp_path / CACHE, old.digest, "val") is None


def test_a_folder_that_cannot_be_written_only_means_no_cache(tmp_path):
    gone = tmp_path / "gone" / CACHE  # writing there is an OSError
    _write_cache(gone, made([0], [0]))
    assert not gone.exists()
