"""`cnnlab.Predictor`: the top classes of image files, in batches. What `cnnlab predict` prints
and writes to --csv is cli/predict.py's; this file is the library it calls.

    predictor = Predictor("runs/x")          # any file load_model_file takes, loaded once
    result = predictor.predict(["shoe.png", "photos/", "shots/**/*.jpg"], top_k=3)
    for row in result:                       # result.rows, in the order the inputs gave them
        print(row.file, row.classes[0], row.probabilities[0])
    for given, reason in result.failures:    # what was skipped, and why (one line each)
        ...
    rows = predictor.predict_images(pixels)  # uint8 (N, C, H, W) a server decoded itself

Inputs: an image file (an explicitly named file is always tried, whatever its name), a folder
(every file with an extension PIL can open, recursively, hidden names left out as `folder:`
data sets leave them out), or a glob (a pattern with * ? [ that is not an existing path:
recursive, so `**` works). Every list is sorted; a file named twice is predicted once. An input
that names no file is a failure, and the others still run.

Each image is what the model was trained on: `read_image` converts and resizes it as the
training data was (cnnlab.data.images), then it is normalised with the model card's mean and
std. A batch's files are decoded in a thread pool (PIL releases the GIL while it decodes and
resizes) while the batch before it runs through the model, and each batch is one forward pass.
On the CPU the cores are shared between the two: half decode, and torch's intra-op threads
are cut to the other half while files are predicted (ModelThreads), then put back.
"""

from __future__ import annotations

import contextlib
import glob
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import torch

from cnnlab.data.images import MODES, normalize, read_image
from cnnlab.deploy.model_file import LoadedModel, load_model_file
from cnnlab.errors import ConfigError, DataFormatError
from cnnlab.process import usable_cores
from cnnlab.training.device import resolve_device

GLOB_CHARS = frozenset("*?[")
IMAGE_KINDS = "PNG, JPEG, BMP, GIF, TIFF, WebP, ..., looked for in every subfolder"
DECODE_THREADS = 8  # at most: decoding small images is mostly Python, holding the GIL


@dataclass(frozen=True)
class Prediction:
    """One image's top-k classes, most probable first."""

    file: str | None  # as found from the inputs; None for images given as tensors
    classes: tuple[str, ...]
    probabilities: tuple[float, ...]
    indices: tuple[int, ...]  # the classes' indices in the model's class_names


@dataclass
class PredictionResult:
    """What `Predictor.predict` made: a row per predicted image, and what was skipped."""

    rows: list[Prediction]
    failures: list[tuple[str, str]]  # (the input or file, why it was skipped: one line)
    seconds: float  # finding, decoding and predicting; loading the model not included

    def __iter__(self) -> Iterator[Prediction]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


class Predictor:
    """A model file loaded once, predicting image files or decoded images in batches."""

    def __init__(
        self, model_file: str | Path, device: str | torch.device = "auto", batch_size: int = 256
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(
                f"batch_size must be a whole number of at least 1, got {batch_size!r}"
            )
        # a torch.device is checked too: cuda on a machine without CUDA is a ConfigError
        # saying so, not a load that fails as if the file were damaged
        target = resolve_device(str(device))
        self.model: LoadedModel = load_model_file(model_file, target)
        self.batch_size = batch_size

    @property
    def class_names(self) -> list[str]:
        return self.model.class_names

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.model.input_shape

    def predict(
        self, inputs: str | Path | Iterable[str | Path], top_k: int = 3
    ) -> PredictionResult:
        """Every image that `inputs` (files, folders, globs) name; see the module docstring."""
        start = time.perf_counter()
        files, failures = find_images(inputs)
        rows: list[Prediction] = []
        for batch_rows, batch_failures in self.predict_files(files, top_k):
            rows += batch_rows
            failures += batch_failures
        return PredictionResult(rows, failures, time.perf_counter() - start)

    def predict_files(
        self, files: Sequence[str], top_k: int = 3
    ) -> Iterator[tuple[list[Prediction], list[tuple[str, str]]]]:
        """(rows, failures) batch by batch, for the files themselves (no folders or globs):
        what `predict` collects, and what `cnnlab predict` prints as it goes."""
        k = self._top_k(top_k)
        channels, height, width = self.input_shape
        if channels not in MODES:
            raise DataFormatError(
                f"the model takes {channels}-channel images; an image file gives 1 (grayscale) "
                "or 3 (RGB), so it cannot predict image files: use predict_images"
            )
        read = partial(_read, channels=channels, size=(height, width))
        threads = decode_threads(self.model.device)
        with (
            ThreadPoolExecutor(threads, thread_name_prefix="cnnlab-decode") as pool,
            MODEL_THREADS.beside(threads, self.model),
        ):
            for names, decoded in decode_ahead(pool, read, files, self.batch_size, threads):
                yield self._batch_rows(names, decoded, k)

    def _batch_rows(
        self, names: Sequence[str], decoded: list[torch.Tensor | str], k: int
    ) -> tuple[list[Prediction], list[tuple[str, str]]]:
        """A decoded batch's rows, in one forward pass, and the files that were not images."""
        pairs = list(zip(names, decoded, strict=True))
        good = [(name, image) for name, image in pairs if isinstance(image, torch.Tensor)]
        failures = [(name, why) for name, why in pairs if isinstance(why, str)]
        if not good:
            return [], failures
        images = torch.stack([image for _, image in good])
        return self._rows(images, k, [name for name, _ in good]), failures

    def predict_images(
        self, images: torch.Tensor, top_k: int = 3, names: Sequence[str] | None = None
    ) -> list[Prediction]:
        """The top-k rows of decoded images: uint8 (N, C, H, W) or (C, H, W) of the model's
        input shape, as `read_image` gives them (not normalised); `names` become row.file."""
        images = self._checked(images)
        if names is not None and len(names) != len(images):
            raise ConfigError(f"{len(names)} names for {len(images)} images; give one per image")
        return self._rows(images, self._top_k(top_k), names or [None] * len(images))

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (N, classes), float32 on the CPU, of uint8 images (N, C, H, W)
        or (C, H, W); one forward pass per batch_size images."""
        images = self._checked(images)
        parts = []
        for batch in images.split(self.batch_size):
            pixels = normalize(batch.to(self.model.device), self.model.mean, self.model.std)
            parts.append(torch.softmax(self.model.logits(pixels), dim=1))
        if not parts:
            return torch.empty(0, len(self.class_names))
        return torch.cat(parts)

    def _rows(self, images: torch.Tensor, k: int, names: Sequence[str | None]) -> list[Prediction]:
        values, indices = self.probabilities(images).topk(k, dim=1)
        classes = self.class_names
        return [
            Prediction(name, tuple(classes[i] for i in top), tuple(probs), tuple(top))
            for name, probs, top in zip(names, values.tolist(), indices.tolist(), strict=True)
        ]

    def _top_k(self, top_k: int) -> int:
        """`top_k` clamped to the number of classes."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a whole number of at least 1, got {top_k!r}")
        return min(top_k, len(self.class_names))

    def _checked(self, images: torch.Tensor) -> torch.Tensor:
        shape = self.input_shape
        if isinstance(images, torch.Tensor) and images.ndim == 3:
            images = images.unsqueeze(0)
        fits = (
            isinstance(images, torch.Tensor)
            and images.dtype == torch.uint8
            and images.ndim == 4
            and tuple(images.shape[1:]) == shape
        )
        if not fits:
            got = (
                f"{images.dtype} {tuple(images.shape)}"
                if isinstance(images, torch.Tensor)
                else type(images).__name__
            )
            raise DataFormatError(
                f"the model takes uint8 images (N, {', '.join(map(str, shape))}), got {got}; "
                "read files with cnnlab.data.images.read_image, which converts and resizes them"
            )
        return images


def find_images(
    inputs: str | Path | Iterable[str | Path],
) -> tuple[list[str], list[tuple[str, str]]]:
    """(the files `inputs` name, in order and each once; (input, why) for each input that
    names none). Files are not opened here: that is what predicting them tries."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files: list[str] = []
    failures: list[tuple[str, str]] = []
    seen: set[str] = set()
    for given in map(str, inputs):
        found, why = _expand(given)
        if why:
            failures.append((given, why))
        for file in found:
            key = os.path.normcase(os.path.abspath(file))  # photos/a.png is ./photos/a.png
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files, failures


def _expand(given: str) -> tuple[list[str], str | None]:
    """The files one input names, or why it names none."""
    if os.path.isdir(given):
        found = images_in(given)
        return found, None if found else f"folder {given} holds no image files ({IMAGE_KINDS})"
    if os.path.lexists(given):
        return [given], None  # named explicitly: always tried, whatever its extension
    if not GLOB_CHARS & set(given):
        return [], f"{given} does not exist; give image files, folders or quoted globs"
    matches = sorted(glob.glob(given, recursive=True))
    if not matches:
        return [], f"nothing matches the pattern {given}; check its folder and spelling"
    found = [file for match in matches for file in _files_of(match)]
    return found, None if found else f"the pattern {given} matches only folders without images"


def _files_of(match: str) -> list[str]:
    """A glob's match: a file as it is (the pattern chose it), a folder's images."""
    return images_in(match) if os.path.isdir(match) else [match]


def images_in(folder: str) -> list[str]:
    """Every file under `folder` whose extension PIL can open, sorted; hidden names left out."""
    extensions = image_extensions()
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")]  # .git, .ipynb_checkpoints
        found += [
            os.path.join(root, name)
            for name in names
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions
        ]
    return sorted(found)


@cache
def image_extensions() -> frozenset[str]:
    """The file extensions of the formats PIL can open (not those it can only write, like .pdf).
    PIL's own list, not torchvision's: importing torchvision takes seconds."""
    from PIL import Image

    extensions = Image.registered_extensions()  # loads every plugin: Image.OPEN is full after
    readable = set(Image.OPEN) | {"MPO"}  # MPO files are opened by the JPEG plugin
    return frozenset(ext for ext, kind in extensions.items() if kind in readable)


def decode_ahead(
    pool: ThreadPoolExecutor,
    read: Callable[[str], object],
    files: Sequence[str],
    batch_size: int,
    threads: int,
) -> Iterator[tuple[Sequence[str], list[object]]]:
    """(a batch of files, what `read` gave for each), batch by batch: the next batch is being
    decoded in `pool` while the caller runs this one through the model. Each batch is cut into
    `threads` parts, one task each: a task per file costs more than decoding a small PNG."""
    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]

    def submit(batch: Sequence[str]) -> list[Future]:
        size = -(-len(batch) // threads)
        parts = [batch[i : i + size] for i in range(0, len(batch), size)]
        return [pool.submit(lambda part: [read(file) for file in part], part) for part in parts]

    pending = submit(batches[0]) if batches else []
    for i, batch in enumerate(batches):
        current, pending = pending, submit(batches[i + 1]) if i + 1 < len(batches) else []
        yield batch, [item for future in current for item in future.result()]


def decode_threads(device: torch.device) -> int:
    """Threads that decode: half the cores when the model runs on the CPU too (it gets the
    other half, ModelThreads), else every core, up to DECODE_THREADS."""
    cores = usable_cores()
    return max(1, min(DECODE_THREADS, cores // 2 if device.type == "cpu" else cores))


class ModelThreads:
    """torch's intra-op threads while files are decoded beside a PyTorch model on the CPU:
    the cores the decoding threads leave, at least one, never more than torch has already.
    Intra-op threads wait for each other at every op, so one pushed off its core by a decoding
    thread stalls the others, and small CNNs gain little from them anyway (cpu_split.py).
    Measured on 2 cores (benchmarks/predict_bench.py, LeNet, 10,000 images): the model alone
    took 1.19 s with 2 threads and 0.41 s with 1; predicting the PNGs 1.45-1.6 s with 1 thread
    beside the decoding, 1.57-3.1 s with 2. Put back after; counted, so that overlapping calls
    from several threads give back the count from before the first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 0

    @contextlib.contextmanager
    def beside(self, decoders: int, model: LoadedModel) -> Iterator[None]:
        if model.device.type != "cpu" or model.module is None:  # onnxruntime has its own
            yield
            return
        with self._lock:
            if self._users == 0:
                self._saved = torch.get_num_threads()
                torch.set_num_threads(max(1, min(self._saved, usable_cores() - decoders)))
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    torch.set_num_threads(self._saved)


MODEL_THREADS = ModelThreads()


def _read(file: str, channels: int, size: tuple[int, int]) -> torch.Tensor | str:
    """The image as read_image gives it, or the one-line reason it cannot be used."""
    try:
        return read_image(file, channels, size)
    except DataFormatError as err:
        return str(err)
    except OSError as err:  # read_image wraps what PIL raises; a stat can still fail
        return f"image {file} cannot be read: {err.strerror or err}"
