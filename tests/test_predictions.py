"""Cached test-split predictions: right numbers, kept pixels, refreshed when best.pt changes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cnnlab.report import predictions as predictions_module
from cnnlab.report.predictions import CACHE, GRID, load_predictions
from cnnlab.report.run_folder import read_run
from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.training.evaluation import evaluate_checkpoint


@pytest.fixture
def run(tiny_run, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_run, copy)
    return copy


def test_accuracy_is_the_best_epochs_test_accuracy(run):
    predictions = load_predictions(run)
    assert predictions.checkpoint == "best.pt"
    assert predictions.accuracy == read_run(run).best_accuracy
    assert predictions.confusion().sum() == len(predictions.labels) == 128
    assert np.allclose(predictions.confidence, predictions.confidence.clip(0.25, 1.0))
    right = predictions.predicted == predictions.labels
    assert np.all(predictions.p_true[right] == predictions.confidence[right])
    assert np.all(predictions.p_true[~right] < predictions.confidence[~right])


def test_a_run_trained_with_tta_is_looked_at_as_it_was_scored(run):
    """Under --tta the report's predictions, like the run's test accuracy, come from the mean
    logits of each image and its mirror."""
    plain = load_predictions(run)
    state = load_checkpoint(run / "best.pt")
    state["config"]["tta"] = True
    save_checkpoint(state, run / "best.pt")
    mirrored = load_predictions(run)  # best.pt changed: computed again
    scored, _ = evaluate_checkpoint(run / "best.pt")  # as trained: with the mirror
    assert mirrored.accuracy == scored.accuracy
    assert not np.allclose(mirrored.confidence, plain.confidence, rtol=0, atol=1e-4)


def test_the_mistakes_are_the_relabelled_images(run):
    predictions = load_predictions(run)
    wrong = np.flatnonzero(predictions.predicted != predictions.labels)
    assert set(wrong.tolist()) <= set(range(0, 128, 8))  # tiny_run relabels every 8th image
    top = predictions.top_losses()
    assert set(top.tolist()) == set(wrong.tolist())
    assert np.all(np.diff(predictions.confidence[top]) <= 0)
    for true, predicted, count in predictions.most_confused():
        assert predicted == (true - 1) % 4 and count > 0  # relabelled as the next class


def test_kept_pixels_are_the_test_images(run):
    predictions = load_predictions(run)
    data_dir = read_run(run).config["dataset"].removeprefix("npz:")
    with np.load(f"{data_dir}/test.npz") as test:
        images = test["x"]
    kept = set(predictions.image_index.tolist())
    assert set(range(GRID[0] * GRID[1])) <= kept
    assert set(predictions.top_losses().tolist()) <= kept
    for i in kept:
        assert np.array_equal(predictions.image(i)[0], images[i])
    with pytest.raises(KeyError):
        predictions.image(next(i for i in range(128) if i not in kept))


def test_the_cache_is_used_until_best_pt_changes(run, monkeypatch):
    first = load_predictions(run)
    assert (run / CACHE).is_file()
    calls = []
    real = predictions_module.compute_predictions
    monkeypatch.setattr(
        predictions_module,
        "compute_predictions",
        lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs),
    )
    again = load_predictions(run)
    assert calls == [] and np.array_equal(again.predicted, first.predicted)
    shutil.copy(run / "last.pt", run / "best.pt")  # as a resumed run's better epoch would
    load_predictions(run)
    assert calls == [1]


def test_a_damaged_cache_is_computed_again(run):
    load_predictions(run)
    (run / CACHE).write_bytes(b"not an npz")
    assert load_predictions(run).accuracy == read_run(run).best_accuracy
    assert (run / CACHE).read_bytes()[:2] == b"PK"  # rewritten as a zip (.npz)


def test_an_image_folder_run_keeps_the_decoded_pixels(png_folder, tmp_path):
    import cnnlab
    from cnnlab.data import load_dataset

    result = cnnlab.train(
        model="mnist_cnn", dataset=f"folder:{png_folder}", epochs=1, batch_size=8,
        out_dir=str(tmp_path), name="folder", progress="none", tensorboard=False,
    )  # fmt: skip
    predictions = load_predictions(result.run_dir)
    test = load_dataset(f"folder:{png_folder}", normalize=False).test
    assert len(predictions.labels) == len(test) == 12
    assert predictions.images.shape[1:] == (3, 32, 32)
    for i in predictions.image_index:
        pixels, label = test[int(i)]
        assert np.array_equal(predictions.image(int(i)), np.asarray(pixels))
        assert predictions.labels[i] == label


def test_counts_match_a_count_made_by_hand(run):
    predictions = load_predictions(run)
    labels, predicted = predictions.labels.tolist(), predictions.predicted.tolist()
    for true in range(4):
        for guess in range(4):
            by_hand = sum(t == true and p == guess for t, p in zip(labels, predicted, strict=True))
            assert predictions.confusion()[true, guess] == by_hand
        total = labels.count(true)
        hits = sum(t == p == true for t, p in zip(labels, predicted, strict=True))
        assert predictions.per_class_accuracy()[true] == hits / total
    assert predictions.correct == sum(t == p for t, p in zip(labels, predicted, strict=True))


def test_the_data_is_looked_for_where_the_run_found_it_or_in_data_dir(fake_data_root, tmp_path):
    import cnnlab

    result = cnnlab.train(
        model="mnist_cnn", dataset="mnist", data_dir=str(fake_data_root), epochs=1,
        batch_size=16, out_dir=str(tmp_path), name="m", progress="none", tensorboard=False,
    )  # fmt: skip
    assert len(load_predictions(result.run_dir).labels) == 32  # the run's own --data-dir
    moved = shutil.move(fake_data_root, tmp_path / "moved")
    (result.run_dir / CACHE).unlink()
    with pytest.raises(cnnlab.DataNotFoundError):
        load_predictions(result.run_dir)
    assert len(load_predictions(result.run_dir, data_dir=moved).labels) == 32
