"""`cnnlab explain RUN [IMAGE...]` and `cnnlab.explain(...)`: where a trained model looked.

    found = cnnlab.explain("runs/lenet")                 # its 8 most confident test mistakes
    found = cnnlab.explain("runs/lenet", index=[0, 7])   # test images 0 and 7
    found = cnnlab.explain("runs/lenet", ["shoe.png"], target="Sneaker", layer="3")
    found = cnnlab.explain(model, x)                     # a module and its (normalised) input
    found.heatmap, found.saliency                        # (N, H, W) arrays, each image's max 1
    found                                                # a notebook shows the figure
    found.write("runs/lenet/explain")                    # explain-01-test_image_12.png, ...

Each image gets three panels: the image as the model saw it, its Grad-CAM heatmap laid over it,
and its saliency (inspect/gradcam.py computes both). A run's mistakes come from its predictions
(report/predictions.py: the test split, or the validation split of a run trained with
--no-eval-test), so they are the same images as the report's top losses, in the same order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cnnlab.config import ExplainConfig
from cnnlab.errors import ConfigError
from cnnlab.figures import render_png, shorten
from cnnlab.inspect.gradcam import Explained, explain_batch, overlay

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANEL = 2.2  # inches per panel (176 pixels at the DPI below): a 28×28 image is 6 px a pixel
DPI = 80


@dataclass(repr=False)
class Explanation:
    """N images with what the model made of them, and where it looked."""

    def __repr__(self) -> str:  # a line, not the pixels (a notebook shows the figure)
        return f"<Explanation of {len(self.images)} images, Grad-CAM of layer {self.layer}>"

    images: np.ndarray  # (N, C, H, W) uint8, as the model saw them (converted and resized)
    names: list[str]  # what each image is: "test image 12", "shoe.png"
    labels: list[int | None]  # the true class where known
    class_names: list[str]
    found: Explained

    @property
    def layer(self) -> str:
        return self.found.layer

    @property
    def note(self) -> str | None:
        """A sentence when the layer's maps are 1 × 1 and cannot say where (else None)."""
        return self.found.where_note

    @property
    def probabilities(self) -> np.ndarray:
        """(N, K) softmax of the model's output."""
        return torch.softmax(self.found.logits, dim=1).numpy()

    @property
    def predicted(self) -> np.ndarray:
        return self.found.logits.argmax(dim=1).numpy()

    @property
    def target(self) -> np.ndarray:
        """(N,) the class each heatmap explains."""
        return self.found.target.numpy()

    @property
    def heatmap(self) -> np.ndarray:
        """(N, H, W) Grad-CAM at the image's resolution, each image's largest value 1."""
        return self.found.heatmap.numpy()

    @property
    def cam(self) -> np.ndarray:
        """(N, h, w) Grad-CAM at the layer's resolution, unscaled."""
        return self.found.cam.numpy()

    @property
    def saliency(self) -> np.ndarray:
        """(N, H, W) |d score / d pixel|, max over channels, each image's largest value 1."""
        return self.found.saliency.numpy()

    def overlay(self, i: int, alpha: float = 0.5) -> np.ndarray:
        """uint8 (H, W, 3): image i with its heatmap laid over it."""
        return overlay(self.images[i], self.heatmap[i], alpha)

    def caption(self, i: int) -> str:
        """ "test image 12: true Shirt, predicted T-shirt (87%)"."""
        return f"{self.names[i]}: {', '.join(self._verdict(i))}"

    def _verdict(self, i: int) -> list[str]:
        names, probs = self.class_names, self.probabilities[i]
        predicted = int(self.predicted[i])
        true = [] if self.labels[i] is None else [f"true {names[self.labels[i]]}"]
        return [*true, f"predicted {names[predicted]} ({probs[predicted]:.0%})"]

    def figure(self, rows: list[int] | None = None) -> Figure:
        """A row per image (all, or `rows`): the image, Grad-CAM over it, saliency."""
        from matplotlib.figure import Figure

        rows = list(range(len(self.images))) if rows is None else rows
        fig = Figure(
            figsize=(3 * PANEL, len(rows) * (PANEL + 0.6) + 0.3), dpi=DPI, layout="constrained"
        )
        axes = fig.subplots(len(rows), 3, squeeze=False)
        for line, i in zip(axes, rows, strict=True):
            explained = shorten(self.class_names[int(self.target[i])], 24)
            about = [self.names[i], *self._verdict(i)]
            _show(line[0], _rgb(self.images[i]), "\n".join(shorten(text, 34) for text in about))
            _show(line[1], self.overlay(i), f"Grad-CAM of {explained}\n(layer {self.layer})")
            _show(line[2], self.saliency[i], "saliency\n|d score / d pixel|", cmap="gray")
        fig.suptitle("where the model looked", fontsize=9)
        return fig

    def _repr_png_(self) -> bytes:  # a notebook's picture of it
        return render_png(self.figure())

    def write(self, folder: str | Path) -> list[Path]:
        """explain-NN-<image>.png per image into `folder` (made if needed), each atomically."""
        from cnnlab.figures import write_pngs

        pngs = [
            (f"explain-{i + 1:02d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png", self.figure([i]))
            for i, name in enumerate(self.names)
        ]
        return write_pngs(Path(folder), [(name, render_png(figure)) for name, figure in pngs])


def _show(ax: Any, picture: np.ndarray, title: str, cmap: str | None = None) -> None:
    ax.imshow(picture, cmap=cmap, vmin=0, vmax=1 if cmap else None, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) of a uint8 (C, H, W) grey or RGB image."""
    image = np.repeat(pixels, 3, axis=0) if pixels.shape[0] == 1 else pixels[:3]
    return image.transpose(1, 2, 0)


# --- what to explain --------------------------------------------------------------------------


def explain(
    model_or_run: str | Path | nn.Module,
    images: Any = None,
    *,
    class_names: list[str] | None = None,
    **options: Any,
) -> Explanation:
    """Grad-CAM and saliency of images through a trained model.

    `model_or_run` is a run folder (its best.pt, else last.pt) or a .pt checkpoint: `images`
    are then image files (converted as the model was trained), uint8 pixels (C, H, W) or
    (N, C, H, W), or None for test images `index=[...]` or, without those, the `count` (8)
    mistakes the model was most sure of. An nn.Module takes `images` as its input, a float
    (N, C, H, W) normalised as it was trained; `class_names` names its classes.
    Options (ExplainConfig): index, count, target (a class name or number; default each
    image's prediction), layer (a module path; default the last conv layer), dataset,
    data_dir, device."""
    if isinstance(options.get("target"), int):  # a class number, as the command line gives it
        options["target"] = str(options["target"])
    cfg = ExplainConfig.from_call("explain", **options).validate()
    if isinstance(model_or_run, nn.Module):
        return _explain_module(model_or_run, images, class_names, cfg)
    return _explain_checkpoint(Path(model_or_run), images, cfg)


def _explain_module(
    model: nn.Module, images: Any, class_names: list[str] | None, cfg: ExplainConfig
) -> Explanation:
    if images is None:
        raise ConfigError("give the images to explain: the model's input, (N, C, H, W)")
    x = torch.as_tensor(images, dtype=torch.float32)
    x = x if x.ndim == 4 else x.unsqueeze(0)
    names = list(class_names) if class_names is not None else None
    found = explain_batch(model, x, _target(cfg.target, names), cfg.layer)  # checks the range
    if names is None:  # classes by number, as many as the model scores
        names = [str(k) for k in range(found.logits.shape[1])]
    low, high = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    pixels = ((x - low) / (high - low).clamp(min=1e-12) * 255).round().to(torch.uint8)
    return Explanation(
        pixels.numpy(), [f"image {i}" for i in range(len(x))], [None] * len(x), names, found
    )


def _explain_checkpoint(run: Path, images: Any, cfg: ExplainConfig) -> Explanation:
    from cnnlab.data.images import normalize
    from cnnlab.process import startup_finished
    from cnnlab.training.checkpoint import checkpoint_path, load_checkpoint, rebuild_model
    from cnnlab.training.device import resolve_device

    path, run_dir = checkpoint_path(run)
    target = resolve_device(cfg.device)
    state = load_checkpoint(path, map_location=target)
    names = list(state["class_names"])
    pixels, titles, labels = _images(cfg, images, state, path, run_dir)
    model = rebuild_model(state, target, path)
    startup_finished()
    x = normalize(torch.as_tensor(pixels), state["mean"], state["std"])
    found = explain_batch(model, x, _target(cfg.target, names), cfg.layer)
    return Explanation(np.asarray(pixels), titles, labels, names, found)


def _images(
    cfg: ExplainConfig, images: Any, state: dict[str, Any], path: Path, run_dir: Path
) -> tuple[np.ndarray, list[str], list[int | None]]:
    """(uint8 (N, C, H, W), a name per image, its label or None) of what to explain."""
    channels, height, width = (int(n) for n in state["input_shape"])
    given = [images] if isinstance(images, str | Path) else images
    if given is not None and cfg.index is not None:
        raise ConfigError("give image files or --index test images, not both")
    if given is not None and all(isinstance(item, str | Path) for item in given):
        from cnnlab.data.images import read_image

        if not given:
            raise ConfigError("no images given: give image files, or leave them out")
        pixels = [read_image(item, channels, (height, width)).numpy() for item in given]
        return np.stack(pixels), [Path(item).name for item in given], [None] * len(given)
    if given is not None:
        return _given_pixels(given, (channels, height, width))
    if cfg.index is not None:
        return _test_images(cfg, state, path)
    return _mistakes(cfg, path, run_dir)


def _given_pixels(
    given: Any, shape: tuple[int, int, int]
) -> tuple[np.ndarray, list[str], list[int | None]]:
    pixels = np.asarray(given)
    pixels = pixels[None] if pixels.ndim == 3 else pixels
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != shape:
        raise ConfigError(
            f"images must be uint8 pixels shaped (N, {', '.join(map(str, shape))}) as the model "
            f"was trained, got {pixels.dtype} {pixels.shape}; or give image files"
        )
    return pixels, [f"image {i}" for i in range(len(pixels))], [None] * len(pixels)


def _test_images(
    cfg: ExplainConfig, state: dict[str, Any], path: Path
) -> tuple[np.ndarray, list[str], list[int | None]]:
    from cnnlab.data import Split
    from cnnlab.training.evaluation import load_trained_data

    data = load_trained_data(state, path, cfg.dataset, cfg.data_dir, same_classes=False)
    size = len(data.test)
    wrong = [i for i in cfg.index if i >= size]
    if wrong:
        raise ConfigError(
            f"index {wrong[0]} is out of range: the test split of {data.name} has {size} images"
        )
    if isinstance(data.test, Split):
        rows = torch.as_tensor(cfg.index)
        pixels, labels = data.test.images[rows].numpy(), data.test.labels[rows].tolist()
    else:
        items = [data.test[i] for i in cfg.index]
        pixels, labels = np.stack([np.asarray(p) for p, _ in items]), [int(y) for _, y in items]
    return pixels, [f"test image {i}" for i in cfg.index], labels


def _mistakes(
    cfg: ExplainConfig, path: Path, run_dir: Path
) -> tuple[np.ndarray, list[str], list[int | None]]:
    """The `cfg.count` mistakes the model was most sure of, from the run's predictions."""
    from cnnlab.report.predictions import load_predictions
    from cnnlab.report.run_folder import read_run
    from cnnlab.training.checkpoint import checkpoint_path

    if cfg.dataset is not None:
        raise ConfigError("--dataset is for --index test images; a run's mistakes are its own")
    chosen, _ = checkpoint_path(run_dir)
    if chosen.resolve() != path.resolve():
        raise ConfigError(
            f"the run's mistakes are those of its {chosen.name}, not {path.name}: give the run "
            "folder, or --index / IMAGE files"
        )
    predictions = load_predictions(read_run(run_dir), device=cfg.device, data_dir=cfg.data_dir)
    indices = predictions.top_losses(cfg.count)
    if not len(indices):
        raise ConfigError(
            f"the model got every {predictions.split_name} image right: no mistake to explain; "
            "give --index or IMAGE files"
        )
    pixels = np.stack([predictions.image(int(i)) for i in indices])
    labels = [int(predictions.labels[i]) for i in indices]
    return pixels, [f"{predictions.split_name} image {i}" for i in indices], labels


def _target(target: str | None, names: list[str] | None) -> int | None:
    """The class `target` names (a class name, else a number), or None: each prediction.
    Without `names` (a module given without class names) only a number will do, and
    explain_batch checks it against the model's classes."""
    if target is None:
        return None
    if names is None and target.isdigit():
        return int(target)
    if names is None:
        raise ConfigError(f"target {target!r} is no class number; give class_names to name one")
    if target in names:
        return names.index(target)
    if target.isdigit() and int(target) < len(names):
        return int(target)
    raise ConfigError(
        f"unknown target class {target!r}; give a class name ({', '.join(names[:10])}"
        f"{', ...' if len(names) > 10 else ''}) or a number from 0 to {len(names) - 1}"
    )


# --- files ------------------------------------------------------------------------------------


def output_folder(run: str | Path, out: str | Path | None = None) -> Path:
    """Where `cnnlab explain` writes: `out`, else RUN/explain; checked before anything is
    computed, so a bad --out costs nothing."""
    from cnnlab.files import check_output_folder
    from cnnlab.training.checkpoint import checkpoint_path

    _, run_dir = checkpoint_path(run)
    return check_output_folder(out or run_dir / "explain", "output folder", "give --out a folder")
