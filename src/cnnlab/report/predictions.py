"""A trained model's predictions on its own test split, computed once and kept in the run folder.

`load_predictions(run)` evaluates the run's best.pt (else last.pt) on the test split it was
measured on and writes `RUN/predictions.npz`: per test image its label, the predicted class, the
probability given to that class and to the true one, and the pixels of the few images a report
shows (the 5×6 grid and the top losses), so plots and reports need neither the model nor the
data again. The cache names the checkpoint's SHA-256: a run resumed to a new best.pt is
evaluated again. It is an .npz of plain arrays, read with allow_pickle=False.

A run trained with --no-eval-test (a sweep's trial) must never be measured on its test split,
so its predictions are made on its validation split, rebuilt as it was held out (as `cnnlab
eval --split val` does); `Predictions.split` and the cache say which split they hold.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.config import TOP_LOSSES  # images in the top-losses view
from cnnlab.errors import RunFolderError
from cnnlab.files import sha256_of
from cnnlab.report.run_folder import RunRecord, read_run

CACHE = "predictions.npz"
CACHE_VERSION = 2  # 2: the cache names its split; a version 1 cache holds the test split
READABLE_VERSIONS = (1, CACHE_VERSION)
GRID = (5, 6)  # rows, columns of the prediction grid (seed 003's figure)


@dataclass(repr=False)
class Predictions:
    """Per image of `split` (index i of that split): labels[i], predicted[i], confidence[i] (the
    probability of predicted[i]) and p_true[i]; `images` holds the pixels of `image_index`."""

    checkpoint: str  # the file the predictions came from: best.pt or last.pt
    digest: str  # its SHA-256
    class_names: list[str]
    labels: np.ndarray  # (N,) int64
    predicted: np.ndarray  # (N,) int64
    confidence: np.ndarray  # (N,) float32
    p_true: np.ndarray  # (N,) float32
    image_index: np.ndarray  # (M,) int64: test indices whose pixels are kept
    images: np.ndarray  # (M, C, H, W) uint8
    split: str = "test"  # "test", or "val" for a run trained with --no-eval-test

    def __repr__(self) -> str:  # a line, not the arrays (a notebook shows the grid)
        return (
            f"<Predictions of {self.checkpoint} on {len(self.labels)} {self.split_name} images: "
            f"accuracy {self.accuracy:.4f}>"
        )

    def _repr_png_(self) -> bytes:  # a notebook shows the prediction grid
        from cnnlab.figures import render_png
        from cnnlab.report.plots import prediction_grid

        return render_png(prediction_grid(self))

    @property
    def split_name(self) -> str:
        """The split in words, as pages and plots name it: "test" or "validation"."""
        return "validation" if self.split == "val" else self.split

    @property
    def correct(self) -> int:
        return int((self.predicted == self.labels).sum())

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def image(self, index: int) -> np.ndarray:
        """Pixels (C, H, W) uint8 of image `index` of the split (one of `image_index`)."""
        where = np.flatnonzero(self.image_index == index)
        if not len(where):
            raise KeyError(f"{self.split_name} image {index} is not kept in the predictions")
        return self.images[where[0]]

    def grid_indices(self) -> np.ndarray:
        """The first rows × columns images of the split: the prediction grid."""
        return np.arange(min(GRID[0] * GRID[1], len(self.labels)))

    def top_losses(self, n: int = TOP_LOSSES) -> np.ndarray:
        """Indices of the `n` wrong predictions made with the highest confidence."""
        wrong = np.flatnonzero(self.predicted != self.labels)
        order = np.argsort(-self.confidence[wrong], kind="stable")
        return wrong[order[:n]]

    def confusion(self) -> np.ndarray:
        """(K, K) counts: row = true class, column = predicted class."""
        k = self.num_classes
        return np.bincount(self.labels * k + self.predicted, minlength=k * k).reshape(k, k)

    def per_class_accuracy(self) -> np.ndarray:
        """Accuracy per true class (NaN for a class with no image in the split)."""
        matrix = self.confusion()
        totals = matrix.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(matrix) / totals

    def most_confused(self, n: int = 5) -> list[tuple[int, int, int]]:
        """(true class, predicted class, count) of the `n` most frequent mistakes."""
        matrix = self.confusion().copy()
        np.fill_diagonal(matrix, 0)
        order = np.argsort(-matrix, axis=None, kind="stable")[:n]
        pairs = [(int(i // matrix.shape[1]), int(i % matrix.shape[1])) for i in order]
        return [(t, p, int(matrix[t, p])) for t, p in pairs if matrix[t, p] > 0]


def load_predictions(
    run: str | Path | RunRecord,
    *,
    device: str = "auto",
    data_dir: str | Path | None = None,
    data: Any = None,
) -> Predictions:
    """The run's predictions: from RUN/predictions.npz when it matches the checkpoint and the
    split, else computed now (the model on the split, once) and written there. The split is
    the test split, or the validation split for a run trained with --no-eval-test
    (RunRecord.report_split). `data`: the data given in Python that the run trained on."""
    from cnnlab.training.checkpoint import checkpoint_path

    record = run if isinstance(run, RunRecord) else read_run(run)
    path, _ = checkpoint_path(record.path)
    if not path.is_file():
        raise RunFolderError(
            f"{record.path} has no best.pt or last.pt: there is no trained model to look at"
        )
    digest, split = sha256_of(path), record.report_split
    cached = _read_cache(record.path / CACHE, digest, split)
    if cached is not None:
        return cached
    predictions = compute_predictions(
        path, digest, split=split, device=device, data_dir=data_dir, data=data
    )
    _write_cache(record.path / CACHE, predictions)
    return predictions


def compute_predictions(
    path: Path,
    digest: str,
    *,
    split: str = "test",
    device: str = "auto",
    data_dir: str | Path | None = None,
    data: Any = None,
) -> Predictions:
    """Run the checkpoint at `path` over the test split it was trained against, or (`split`
    "val") the validation split it held out, drawn again as the run drew it."""
    from cnnlab.config import EVAL_BATCH_SIZE, saved_train_values
    from cnnlab.data import make_loader
    from cnnlab.data.holdout import with_validation
    from cnnlab.process import startup_finished
    from cnnlab.training.checkpoint import load_checkpoint, rebuild_model
    from cnnlab.training.device import resolve_device
    from cnnlab.training.evaluation import load_trained_data, predict

    target = resolve_device(device)
    state = load_checkpoint(path, map_location=target)
    model = rebuild_model(state, target, path)
    data = load_trained_data(state, path, data_dir=data_dir, given=data)
    trained_with = saved_train_values(state.get("config") or {})
    if split == "val" and data.val is None and len(data.train):
        # data given in Python comes whole, as the run got it: hold out its validation split
        # as the run did (data read from disk comes split already)
        fraction, seed = trained_with.get("val_fraction", 0.0), trained_with.get("seed", 0)
        data = with_validation(data, fraction, seed)
    if getattr(data, split) is None:  # only "val" can be missing: val_fraction 0
        raise RunFolderError(
            f"{path} was trained without a validation split, so there is none to look at"
        )
    batch_size = trained_with.get("eval_batch_size") or EVAL_BATCH_SIZE
    loader = make_loader(data, split, batch_size=batch_size, device=target)
    startup_finished()
    # scored as the run scored them (its accuracy), with the test-time views under --tta
    tta = bool(trained_with.get("tta"))
    translate = int(trained_with.get("tta_translate") or 0) if tta else 0
    probs, labels = predict(model, loader, tta=tta, translate=translate)
    confidence, predicted = probs.max(dim=1)
    p_true = probs.gather(1, labels[:, None])[:, 0]
    result = Predictions(
        checkpoint=path.name,
        digest=digest,
        class_names=list(state["class_names"]),
        labels=labels.numpy(),
        predicted=predicted.numpy(),
        confidence=confidence.numpy(),
        p_true=p_true.numpy(),
        image_index=np.zeros(0, np.int64),
        images=np.zeros((0, *state["input_shape"]), np.uint8),
        split=split,
    )
    kept = np.union1d(result.grid_indices(), result.top_losses()).astype(np.int64)
    if len(kept):
        result.image_index, result.images = kept, _pixels(getattr(data, split), kept)
    return result


def _pixels(part: Any, indices: np.ndarray) -> np.ndarray:
    """uint8 (M, C, H, W) of the split's images at `indices`: an in-memory Split's rows, or an
    image folder's files decoded one by one."""
    import torch

    from cnnlab.data import Split

    if isinstance(part, Split):
        return part.images[torch.from_numpy(indices)].numpy()
    return np.stack([np.asarray(part[int(i)][0]) for i in indices])


ARRAYS = ("labels", "predicted", "confidence", "p_true", "image_index", "images")


def _read_cache(path: Path, digest: str, split: str) -> Predictions | None:
    """The cached predictions, or None when absent, stale, of another split or unreadable
    (they are recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            version = int(saved["version"])
            if version not in READABLE_VERSIONS or str(saved["digest"]) != digest:
                return None
            cached_split = str(saved["split"]) if version >= 2 else "test"
            if cached_split != split:
                return None
            return Predictions(
                checkpoint=str(saved["checkpoint"]),
                digest=digest,
                class_names=[str(n) for n in saved["class_names"]],
                **{name: saved[name] for name in ARRAYS},
                split=cached_split,
            )
    except (OSError, ValueError, KeyError, EOFError):
        return None


def _write_cache(path: Path, predictions: Predictions) -> None:
    """Write atomically; a read-only run folder only means no cache."""
    from cnnlab.files import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        version=np.array(CACHE_VERSION),
        checkpoint=np.array(predictions.checkpoint),
        digest=np.array(predictions.digest),
        split=np.array(predictions.split),
        class_names=np.array(predictions.class_names),
        **{name: getattr(predictions, name) for name in ARRAYS},
    )
    with contextlib.suppress(OSError):
        atomic_write_bytes(path, buffer.getvalue())
