"""`cnnlab export`: a trained model as a file that runs without cnnlab, checked before it is kept.

    result = export_model("runs/x", format="onnx")      # runs/x/best.onnx + runs/x/best.json
    print(result)                                        # where, how big, how it was checked

The formats (model_card.SUFFIXES gives each one's file name ending):

* onnx: `torch.onnx.export` (the dynamo exporter) with a dynamic batch dimension, input
  "images", output "logits", the model card in metadata_props; runs in onnxruntime.
* torchscript: `torch.jit.trace` in eval mode, the card as the extra file "cnnlab.json".
  Not torch.export's .pt2: `torch.export.load` reads weights the archive marks as pickled with
  `torch.load(weights_only=False)` (torch/export/pt2_archive/_package.py), so an untrusted .pt2
  can run code when loaded, and cnnlab never unpickles. `torch.jit.load` builds TorchScript
  types only, and a TorchScript file also runs from C++ (LibTorch) without Python. Trace, not
  script: every zoo model is a fixed feed-forward graph, and the check below runs the traced
  file at other batch sizes than the one it was traced with. This is the safe form of seed
  002's "save the whole model": torch.save(model) pickles the class, which cnnlab never writes
  or reads. PyTorch 2.14 marks torch.jit deprecated (a FutureWarning, silenced here and in
  model_file.py); when it is removed, `_write_torchscript` is the one place to change.
* safetensors: the weights only, by `safetensors.torch.save_model` (it stores tensors that
  share memory once, as net_res_deep's share_weights=True makes them); the card beside them
  says which model to build to load them.

Every format also gets the sidecar card `<stem>.json` (model_card.py). The file and its card
are written to a private temporary folder first, loaded back from there by `load_model_file`
(the loader `cnnlab predict` uses), and run on the first test images of the run's data set
(as it was trained: split, resized and normalised) at batch sizes 64, 1 and 37 (the batch
dimension must be dynamic); the logits must be within TOLERANCE of the checkpoint's in
PyTorch. When the data set is not on this machine (a deploy machine may not have it), random
normal inputs of the model's input shape are used instead, and the result says so. Only a
file that passed is copied into place, atomically (cnnlab.files), so a failed export leaves
no file and an existing one is replaced only by a checked one.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.config import ExportConfig
from cnnlab.deploy.model_card import (
    CARD_FORMAT,
    SUFFIXES,
    card_from_checkpoint,
    card_json,
    sidecar_path,
)
from cnnlab.deploy.model_file import ONNX_CARD_KEY, TORCHSCRIPT_CARD_FILE, load_model_file
from cnnlab.errors import CheckpointError, ConfigError, DataNotFoundError, first_line
from cnnlab.files import (
    check_output_file,
    publish,
    publish_bytes,
    size_text,
    write_failure_as_config_error,
)

TOLERANCE = 1e-4  # max |Δlogit| between the exported file and PyTorch
CHECK_IMAGES = 64  # the first test images the file is checked on
OTHER_BATCH = 37  # a second batch size besides 1 and CHECK_IMAGES: the batch must be dynamic
EXAMPLE_BATCH = 2  # what is traced / exported: torch.export treats sizes 0 and 1 as constants
NAMES = {"onnx": "ONNX", "torchscript": "TorchScript", "safetensors": "safetensors"}
RUNNERS = {"onnx": "onnxruntime", "torchscript": "TorchScript", "safetensors": "PyTorch"}


@dataclass(kw_only=True)
class ExportResult:
    """What `export_model` wrote and how the written file was checked."""

    path: Path  # the exported file
    card_path: Path  # its sidecar model card
    format: str  # one of config.EXPORT_FORMATS
    checkpoint: Path  # the checkpoint it was exported from
    checked_images: int  # images in the largest check batch
    real_images: bool  # test images of `dataset` (False: random normal inputs)
    dataset: str  # the data set the model was trained on
    batch_sizes: tuple[int, ...]  # the batch sizes the file was run at
    max_abs_diff: float  # max |Δlogit| against the checkpoint in PyTorch
    size_bytes: int
    seconds: float

    def __str__(self) -> str:
        inputs = f"test images of {self.dataset}" if self.real_images else "random inputs"
        sizes = ", ".join(map(str, self.batch_sizes))
        lines = [
            f"exported {self.checkpoint} to {self.path} ({NAMES[self.format]}, "
            f"{size_text(self.size_bytes)}, {self.seconds:.1f} s)",
            f"model card: {self.card_path}",
            f"checked: reloaded in {RUNNERS[self.format]}, run on {self.checked_images} "
            f"{inputs} in batches of {sizes}: max |Δlogit| {self.max_abs_diff:.1e} "
            f"(tolerance {TOLERANCE:.0e})",
        ]
        if not self.real_images:
            lines.append(
                f"note: not checked on test images: {self.dataset} is not on this machine "
                "(--data-dir gives its folder)"
            )
        return "\n".join(lines)


@dataclass
class Probe:
    """The inputs an exported file is checked on: normalised images, and what they are."""

    images: torch.Tensor  # (N, C, H, W) float32
    real: bool  # test images (False: random normal inputs)
    dataset: str


def export_model(checkpoint: str | Path | ExportConfig, **options: Any) -> ExportResult:
    """Export a checkpoint (a run folder gives its best.pt, else last.pt) to a checked file.

    `export_model("runs/x", format="torchscript", out=..., data_dir=...)` or
    `export_model(ExportConfig(...))`; the options and their defaults are ExportConfig's.
    """
    from cnnlab.process import startup_finished
    from cnnlab.training.checkpoint import load_checkpoint, rebuild_model

    start = time.perf_counter()
    cfg = _config(checkpoint, options)
    file = _checkpoint_file(cfg.checkpoint)
    state = load_checkpoint(file)
    out = output_path(file, cfg.format, cfg.out)
    if cfg.format == "onnx":
        _require_onnx()
    card = card_from_checkpoint(state)
    model = rebuild_model(state, where=file).eval()
    probe = load_probe(state, file, cfg.data_dir)
    startup_finished()  # the exporters make many short-lived cyclic objects: collect them
    with tempfile.TemporaryDirectory(prefix="cnnlab-export-") as folder:
        staged = Path(folder) / out.name
        WRITERS[cfg.format](model, card, staged)
        sidecar_path(staged).write_text(card_json(card), encoding="utf-8")
        _only_expected_files(Path(folder), staged)
        diff, sizes = check_file(staged, model, card, probe)
        _put_in_place(staged, out, card)
    return ExportResult(
        path=out, card_path=sidecar_path(out), format=cfg.format, checkpoint=file,
        checked_images=len(probe.images), real_images=probe.real, dataset=probe.dataset,
        batch_sizes=sizes, max_abs_diff=diff, size_bytes=out.stat().st_size,
        seconds=time.perf_counter() - start,
    )  # fmt: skip


def _config(checkpoint: str | Path | ExportConfig, options: dict[str, Any]) -> ExportConfig:
    if isinstance(checkpoint, ExportConfig):
        cfg = checkpoint
    else:
        cfg = ExportConfig.from_call("export_model", checkpoint=checkpoint, **options)
    cfg.validate()
    if not cfg.checkpoint:
        raise ConfigError("give a checkpoint to export: a run folder or a .pt file")
    return cfg


def _checkpoint_file(checkpoint: str) -> Path:
    """The .pt file to export; a run folder gives its best.pt, else its last.pt."""
    from cnnlab.training.checkpoint import checkpoint_path

    file, _ = checkpoint_path(checkpoint)
    if Path(checkpoint).is_dir() and not file.is_file():
        raise CheckpointError(
            f"{checkpoint} has no best.pt or last.pt; give a run folder with a checkpoint "
            "or a .pt file"
        )
    return file


def output_path(checkpoint: Path, fmt: str, out: str | None) -> Path:
    """--out, or beside the checkpoint (best.pt → best.onnx); refused when it cannot be
    written without harm."""
    suffix = SUFFIXES[fmt]
    default_name = checkpoint.name.removesuffix(".pt") + suffix
    path = Path(out) if out else checkpoint.with_name(default_name)
    misnamed = not path.name.endswith(suffix) or path.name == suffix
    if misnamed and not path.is_dir():  # a folder is refused as a folder, whatever its name
        raise ConfigError(
            f"--out {path}: a {NAMES[fmt]} file's name must end in {suffix} (loaders tell "
            f"the format by it); give a name like {default_name}"
        )
    check_output_file(
        path, "--out", f"give a file name like {path / default_name}",
        no_folder="{name} {path} is in a folder that does not exist; create {parent} first",
    )  # fmt: skip
    _check_sidecar_free(sidecar_path(path))
    return path


def _check_sidecar_free(card: Path) -> None:
    """The card beside the file may replace an older card (damaged ones too: exporting again
    mends them), never another kind of file."""
    if card.is_dir():
        raise ConfigError(f"{card} (the model card to write) is a folder; give --out another name")
    if not card.exists():
        return
    try:
        ours = json.loads(card.read_bytes()).get("format") == CARD_FORMAT
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not an object
        ours = False
    if not ours:
        raise ConfigError(
            f"{card} exists and is not a cnnlab model card; move it or give --out another "
            "name (the card is written beside the file as <stem>.json)"
        )


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401  (torch.onnx.export's dynamo exporter needs it)
    except ImportError as err:
        raise ConfigError(
            f"--format onnx needs onnx, onnxruntime and onnxscript ({err.name} is missing): "
            "pip install 'cnnlab[onnx]'"
        ) from None


def load_probe(state: dict[str, Any], checkpoint: Path, data_dir: str | None) -> Probe:
    """The Probe an export is checked on: the first CHECK_IMAGES test images as the model was
    trained on them, or random normal inputs when the data set is not on this machine (or has
    no test images)."""
    from cnnlab.data import make_loader
    from cnnlab.training.evaluation import load_trained_data

    name = str(state["dataset"])
    try:
        data = load_trained_data(state, checkpoint, None, data_dir)
    except DataNotFoundError:
        return _random_probe(state, name)
    loader = make_loader(data, "test", batch_size=CHECK_IMAGES, num_workers=0)
    batch = next(iter(loader), None)
    if batch is None:
        return _random_probe(state, name)
    return Probe(batch[0].float(), True, name)


def _random_probe(state: dict[str, Any], name: str) -> Probe:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(CHECK_IMAGES, *state["input_shape"], generator=generator)
    return Probe(images, False, name)


def check_file(
    path: Path, model: nn.Module, card: dict[str, Any], probe: Probe
) -> tuple[float, tuple[int, ...]]:
    """(max |Δlogit|, the batch sizes run) of the file at `path` against `model`; a
    CheckpointError when it is over TOLERANCE or the file does not carry `card`."""
    loaded = load_model_file(path, "cpu")
    if card_json(loaded.card) != card_json(card):
        raise CheckpointError(f"the exported {path.name} does not give back its model card")
    n = len(probe.images)
    sizes = tuple(dict.fromkeys(size for size in (n, 1, min(OTHER_BATCH, n - 1)) if size > 0))
    differences = []
    for size in sizes:
        images = probe.images[:size]
        with torch.inference_mode():
            expected = model(images).float()
        differences.append(_max_abs_diff(loaded.logits(images), expected))
    worst = _worst(differences)
    if not worst <= TOLERANCE:  # `not <=`: a NaN difference fails too
        inputs = "test images" if probe.real else "random inputs"
        raise CheckpointError(
            f"the exported {NAMES[loaded.kind]} file's logits differ from PyTorch's by up to "
            f"{worst:.2g} on {inputs} (tolerance {TOLERANCE:.0e}); nothing was written"
        )
    return worst, sizes


def _worst(differences: list[float]) -> float:
    """The largest difference, where NaN (logits of another shape, or NaN logits) is the
    largest: max() keeps a number over a NaN that comes after it."""
    return max(differences, key=lambda d: math.inf if math.isnan(d) else d)


def _max_abs_diff(got: torch.Tensor, expected: torch.Tensor) -> float:
    if got.shape != expected.shape:
        return float("nan")
    return float((got - expected).abs().max()) if got.numel() else 0.0


def _write_onnx(model: nn.Module, card: dict[str, Any], path: Path) -> None:
    example = _example(card)
    batch = torch.export.Dim("batch")
    try:
        with _quiet():
            program = torch.onnx.export(
                model, (example,), dynamo=True, verbose=False, input_names=["images"],
                output_names=["logits"], dynamic_shapes=({0: batch},),
            )  # fmt: skip
    except Exception as err:  # the exporter raises many kinds for an unsupported operator
        raise CheckpointError(
            f"{card['model_name']} cannot be exported to ONNX ({first_line(err, 150)}); try "
            "--format torchscript or safetensors"
        ) from None
    program.model.metadata_props[ONNX_CARD_KEY] = card_json(card)
    with _quiet():
        program.save(str(path))


def _write_torchscript(model: nn.Module, card: dict[str, Any], path: Path) -> None:
    with warnings.catch_warnings():
        # torch.jit is deprecated in 2.14 (the module docstring says why it is used anyway);
        # TracerWarnings name values that tracing fixes, and the check runs other batch sizes
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            traced = torch.jit.trace(model, _example(card), check_trace=False)
        except Exception as err:  # tracing raises RuntimeError and others for odd modules
            raise CheckpointError(
                f"{card['model_name']} cannot be traced to TorchScript ({first_line(err, 150)}); "
                "try --format safetensors"
            ) from None
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_CARD_FILE: card_json(card)})


def _write_safetensors(model: nn.Module, card: dict[str, Any], path: Path) -> None:
    from safetensors.torch import save_model

    save_model(model, str(path))


WRITERS: dict[str, Callable[[nn.Module, dict[str, Any], Path], None]] = {
    "onnx": _write_onnx,
    "torchscript": _write_torchscript,
    "safetensors": _write_safetensors,
}


def _example(card: dict[str, Any]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(EXAMPLE_BATCH, *card["input_shape"], generator=generator)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The ONNX exporter's progress lines, warnings and log records are not this command's
    output; a failure still raises, and is reported in one line."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield


def _only_expected_files(folder: Path, staged: Path) -> None:
    """A writer that put more than the file in the folder (ONNX external data, over 2 GB)
    would be copied incompletely: refuse it instead."""
    extra = sorted({p.name for p in folder.iterdir()} - {staged.name, sidecar_path(staged).name})
    if extra:
        raise CheckpointError(
            f"the export wrote {', '.join(extra)} besides {staged.name}; a model this large "
            "cannot be one file: try --format safetensors"
        )


def _put_in_place(staged: Path, out: Path, card: dict[str, Any]) -> None:
    """Copy the checked file, then its card, into place, each atomically; readable by all,
    as files to deploy are meant to be."""

    def copy(target: Any) -> None:
        with staged.open("rb") as source:
            shutil.copyfileobj(source, target, 1 << 20)

    text = card_json(card).encode("utf-8")
    with write_failure_as_config_error(out):
        publish(out, copy)
        publish_bytes(sidecar_path(out), text)
