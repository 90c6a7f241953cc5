"""What a trained model's conv layers do: the first layer's filters and one image's feature maps.

    from cnnlab.inspect.features import feature_maps, plot_feature_maps, plot_filters
    model = cnnlab.rebuild_model(cnnlab.load_checkpoint("runs/lenet"))
    maps = feature_maps(model, x)        # {"0": (6, 28, 28), "3": (16, 10, 10)}: conv outputs
    plot_filters(model)                  # the first conv layer's weights, a matplotlib Figure
    plot_feature_maps(maps)              # one Figure per conv layer
    write_features("runs/lenet", index=3)   # all of it as PNG files: `cnnlab features`
    feature_figures(model, state, pixels, "test image 0")   # the same figures, of pixels in hand

"Every conv layer" is every nn.Conv2d the forward pass calls, in the order it calls them, found
with forward hooks during one pass and named by module path (`0`, `features.3`, `conv1`; a
module called twice gets `#2` on its second output). Feature maps are the conv outputs, before
any activation, batch norm or pooling. At most `max_tiles` (64) tiles are drawn per figure, so
a resnet's 512-channel layers stay readable and small.

Figures are `matplotlib.figure.Figure` objects made without pyplot: they draw on the Agg canvas
whatever the backend (no display needed, no backend switched under a notebook, nothing left in
pyplot's list of open figures to close), and a notebook shows them like any other figure. Their
pixel size is fixed by `grid_layout` (tiles of TILE inches at DPI; figures.py draws the tiles), so
a report can lay them out before reading them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cnnlab.config import FeaturesConfig
from cnnlab.errors import ConfigError, ModelError
from cnnlab.figures import (
    DPI,
    MAX_COLUMNS,
    TITLE,
    grid_layout,
    render_png,
    shorten,
    tile_figure,
    titles,
    write_pngs,
)
from cnnlab.files import check_output_folder
from cnnlab.training.device import model_device

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_TILES = 64  # tiles per figure: "first 64 of 256 channels" beyond this
INPUT_SIZE = (4.0, 3.5)  # inches (width, height) of input.png: the image in 3 × 3, the title


# --- computing --------------------------------------------------------------------------------


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every nn.Conv2d of `model` with its module path, in definition order (`feature_maps`
    gives the order the forward pass calls them in)."""
    return [(name or "model", m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def feature_maps(model: nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The output of every Conv2d the forward pass calls, by module path, in call order.

    `image` is normalised as the model was trained: (C, H, W) gives maps (C', H', W'), a batch
    (N, C, H, W) gives (N, C', H', W'). The model runs once in eval mode without gradients (its
    train/eval mode is restored after) on its own device; the maps come back on the CPU.
    """
    maps, _ = run_with_hooks(model, image)
    return maps


def run_with_hooks(
    model: nn.Module, image: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """`feature_maps` and the model's output for `image` (batched as `image` is; None when
    the model returns something other than one tensor)."""
    batched = image.ndim == 4
    x = image if batched else image.unsqueeze(0)
    names = {id(m): name for name, m in conv_layers(model)}
    maps: dict[str, torch.Tensor] = {}

    def keep(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        name = names[id(module)]
        calls = sum(1 for key in maps if key == name or key.startswith(f"{name}#"))
        key = name if calls == 0 else f"{name}#{calls + 1}"
        out = output.detach().float().cpu()
        maps[key] = out if batched else out[0]

    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_hook(keep) for _, m in conv_layers(model)]
    try:
        model.eval()
        with torch.no_grad():
            output = model(x.to(model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    if not isinstance(output, torch.Tensor):  # a model returning a tuple or a dict
        return maps, None
    output = output.detach().float().cpu()
    return maps, output if batched else output[0]


def conv_filters(model: nn.Module, layer: str | None = None) -> torch.Tensor:
    """The weights (out, in / groups, kH, kW) of the conv layer named `layer` (default: the
    first Conv2d defined, which is the first one called in every cnnlab model), on the CPU."""
    return _conv_weight(model, layer)[1]


def _conv_weight(model: nn.Module, layer: str | None) -> tuple[str, torch.Tensor]:
    convs = conv_layers(model)
    if not convs:
        raise ModelError(f"{type(model).__name__} has no Conv2d layer: no filters to show")
    if layer is None:
        name, conv = convs[0]
    else:
        found = dict(convs).get(layer.split("#")[0])
        if found is None:
            raise ModelError(
                f"no Conv2d named {layer!r}; the conv layers are {', '.join(n for n, _ in convs)}"
            )
        name, conv = layer, found
    return name, conv.weight.detach().float().cpu().clone()


# --- drawing ----------------------------------------------------------------------------------


def plot_filters(
    model: nn.Module,
    layer: str | None = None,
    max_tiles: int = MAX_TILES,
    *,
    position: tuple[int, int] | None = None,
) -> Figure:
    """The filters of the first conv layer (or of `layer`) as a grid of small images.

    A layer taking 3 channels shows each filter as one RGB tile, scaled to its own range; any
    other number of input channels shows one grey tile per (filter, input channel), a filter per
    row, on one scale for all (mid-grey is 0, white the largest weight, black minus it).
    `position` (n, count) titles it "conv layer n of count", as the feature maps of the same
    forward pass are numbered; by default it is the layer's place among the model's Conv2d
    modules, in definition order.
    """
    name, weight = _conv_weight(model, layer)
    if position is None:
        names = [n for n, _ in conv_layers(model)]
        position = (names.index(name.split("#")[0]) + 1, len(names))
    out_channels, in_channels, kh, kw = weight.shape
    rgb = in_channels == 3
    per_filter = 1 if rgb else min(in_channels, MAX_COLUMNS)
    shown = max(1, min(out_channels, max_tiles // per_filter))
    tiles, labels = [], []
    if rgb:
        kind = "RGB, each filter scaled to its own range"
        for f in range(shown):
            w = weight[f]
            scaled = (w - w.min()) / (w.max() - w.min()).clamp(min=1e-12)
            tiles.append((scaled.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
            labels.append(f"filter {f}")
    else:
        kind = "grey: 0, white: +max |w|, black: -max |w|"
        if per_filter < in_channels:
            kind += f"; input channels 0-{per_filter - 1} of {in_channels}"
        limit = float(weight[:shown, :per_filter].abs().max())
        for f in range(shown):
            for c in range(per_filter):
                tiles.append(_coloured(weight[f, c], "gray", -limit, limit))
                labels.append(f"filter {f}" if in_channels == 1 else f"f{f} ch {c}")
    capped = f" (first {shown} shown)" if shown < out_channels else ""
    return tile_figure(
        grid_layout(len(tiles), None if per_filter == 1 else per_filter),
        tiles,
        labels,
        f"{layer_title(name, *position)}: {out_channels} filters, each "
        f"{in_channels}×{kh}×{kw}{capped}",
        kind,
    )


def plot_feature_maps(maps: dict[str, torch.Tensor], max_tiles: int = MAX_TILES) -> list[Figure]:
    """One figure per conv layer of `feature_maps` output (of the first image of a batch): a
    tile per channel (the first `max_tiles`), each scaled to its own range (viridis: yellow is
    the channel's highest value), or all on the layer's range when the maps are 1×1. Each is
    titled "conv layer n of count", n its place in the forward pass, as maps-NN files are."""
    figures = []
    for number, (name, value) in enumerate(maps.items(), 1):
        out = value[0] if value.ndim == 4 else value  # (C, H, W)
        channels = out.shape[0]
        shown = min(channels, max_tiles)
        which = f"first {shown} of {channels}" if shown < channels else f"all {channels}"
        single = out.shape[1] * out.shape[2] == 1  # one value per channel: compare channels
        scale = "one colour scale for all" if single else "each scaled to its own range"
        low, high = (out[:shown].min(), out[:shown].max()) if single else (None, None)
        tiles, labels = [], []
        for c in range(shown):
            tiles.append(_coloured(out[c], "viridis", low, high))
            label = f"{name}[{c}]"  # the layer's name and the channel's index, if they fit
            labels.append(label if len(label) <= 15 else f"channel {c}")
        figures.append(
            tile_figure(
                grid_layout(shown),
                tiles,
                labels,
                f"{layer_title(name, number, len(maps))}: output "
                f"{'×'.join(map(str, out.shape))} (C×H×W)",
                f"feature maps before activation, {which} channels, {scale}",
            )
        )
    return figures


def layer_title(name: str, number: int, count: int) -> str:
    """`conv layer 1 of 2 (module features.0)`: one numbering for titles, captions and the
    maps-NN file names (the layer's place in the forward pass, from 1), then the module path
    that `feature_maps` keys it by."""
    return f"conv layer {number} of {count} (module {shorten(name, 24)})"


def plot_image(image: torch.Tensor, title: str = "", subtitle: str = "") -> Figure:
    """A uint8 (C, H, W) image (1 channel grey, 3 RGB) as the model sees it, in pixels."""
    from matplotlib.figure import Figure

    width, height = INPUT_SIZE
    fig = Figure(figsize=INPUT_SIZE, dpi=DPI)
    side = height - TITLE
    ax = fig.add_axes(
        ((width - side) / 2 / width, 0.05 / height, side / width, (side - 0.1) / height)
    )
    pixels = image.detach().cpu()
    if pixels.shape[0] == 1:
        ax.imshow(pixels[0].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(pixels[:3].permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    titles(fig, title, subtitle)
    return fig


def _coloured(values: torch.Tensor, cmap: str, low: Any = None, high: Any = None) -> np.ndarray:
    """A 2-D tensor as uint8 RGB (H, W, 3) through a colormap, from `low` to `high` (default:
    its own range; a constant map gets the colormap's lowest colour, as imshow gives it)."""
    import matplotlib

    values = values.detach().double()
    low = float(values.min() if low is None else low)
    high = float(values.max() if high is None else high)
    span = high - low
    norm = ((values - low) / span).clamp(0, 1) if span > 0 else torch.zeros_like(values)
    return matplotlib.colormaps[cmap](norm.numpy(), bytes=True)[..., :3]


# --- files ------------------------------------------------------------------------------------


def maps_filename(number: int, layer: str) -> str:
    """`maps-01-features_3.png`: the layer's place in the forward pass, then its name."""
    return f"maps-{number:02d}-{re.sub(r'[^A-Za-z0-9_-]', '_', layer)}.png"


def write_features(
    checkpoint: str | Path | FeaturesConfig,
    image: str | Path | None = None,
    index: int = 0,
    out: str | Path | None = None,
    **options: Any,
) -> list[Path]:
    """Write input.png, filters.png and maps-NN-<layer>.png of a checkpoint; return the paths.

    `checkpoint` is a run folder (its best.pt, else last.pt) or a .pt file, or a whole
    FeaturesConfig. The image is test image `index` of the data set the model was trained on
    (or `dataset=`), or the file `image`, read as cnnlab.data.images reads files (see its
    channel rule). `out` defaults to RUN/features. Other options: dataset, data_dir, device.
    Everything is computed before the first file is written, and each file is written
    atomically, so a failure leaves the folder as it was.
    """
    cfg = (
        checkpoint
        if isinstance(checkpoint, FeaturesConfig)
        else FeaturesConfig.from_call(
            "features", checkpoint=checkpoint, image=image, index=index, out=out, **options
        )
    )
    cfg.validate()
    if not cfg.checkpoint:
        raise ConfigError("give a checkpoint: a run folder or a .pt file")
    if cfg.image is not None and cfg.index != 0:
        raise ConfigError("give an image file or a test image index, not both")
    from cnnlab.training.checkpoint import checkpoint_path

    path, run_dir = checkpoint_path(cfg.checkpoint)
    folder = cfg.out or run_dir / "features"
    folder = check_output_folder(folder, "output folder", "give --out a folder")
    pngs = _render_all(cfg, path)
    return write_pngs(folder, pngs)


def _render_all(cfg: FeaturesConfig, path: Path) -> list[tuple[str, bytes]]:
    from cnnlab.data.images import read_image
    from cnnlab.process import startup_finished
    from cnnlab.training.checkpoint import load_checkpoint, rebuild_model
    from cnnlab.training.device import resolve_device

    target = resolve_device(cfg.device)
    state = load_checkpoint(path, map_location=target)
    channels, height, width = (int(n) for n in state["input_shape"])
    if cfg.image is not None:
        pixels = read_image(cfg.image, channels, (height, width))
        title, label = f"input: {shorten(Path(cfg.image).name)}", None
    else:
        pixels, label, source = _test_image(cfg, state, path)
        title = f"input: test image {cfg.index} of {shorten(source)}"
    model = rebuild_model(state, target, path)
    if not conv_layers(model):
        raise ModelError(
            f"{path} holds a {state['model_name']}, which has no Conv2d layer: no filters or "
            "feature maps to show"
        )
    startup_finished()
    figures = feature_figures(model, state, pixels, title, label)
    return [(name, render_png(fig)) for name, fig in figures]


def feature_figures(
    model: nn.Module,
    state: dict[str, Any],
    pixels: torch.Tensor | np.ndarray,
    title: str,
    label: str | None = None,
) -> list[tuple[str, Figure]]:
    """input.png, filters.png and maps-NN-<layer>.png of one uint8 (C, H, W) image that is
    already in hand, through `model` (rebuilt from the checkpoint `state`, whose mean, std and
    class names it reads). `title` names the image; `label` is its class, if known."""
    from cnnlab.data.images import normalize

    pixels = torch.as_tensor(pixels)
    channels, height, width = pixels.shape
    x = normalize(pixels, state["mean"], state["std"])
    maps, logits = run_with_hooks(model, x)
    if not maps:
        raise ModelError(f"the forward pass of {state['model_name']} called no Conv2d layer")
    seen = f"as the model sees it: {'grey' if channels == 1 else 'RGB'} {height}×{width}"
    if label is not None:
        seen += f", label {label}"
    classes = list(state["class_names"])
    if logits is not None and logits.ndim == 1 and len(logits) == len(classes):
        probs = torch.softmax(logits, 0)
        seen += f", predicted {classes[int(probs.argmax())]} ({float(probs.max()):.0%})"
    figures = [("input.png", plot_image(pixels, title, seen))]
    first = plot_filters(model, next(iter(maps)), position=(1, len(maps)))
    figures.append(("filters.png", first))
    names = [maps_filename(n, layer) for n, layer in enumerate(maps, 1)]
    figures += zip(names, plot_feature_maps(maps), strict=True)
    return figures


def _test_image(
    cfg: FeaturesConfig, state: dict[str, Any], path: Path
) -> tuple[torch.Tensor, str, str]:
    """(uint8 (C, H, W), class name, data set name) of test image cfg.index."""
    from cnnlab.data import Split
    from cnnlab.training.evaluation import load_trained_data

    # any data set of the model's image size will do: a picture needs no class of its own
    data = load_trained_data(state, path, cfg.dataset, cfg.data_dir, same_classes=False)
    size = len(data.test)
    if cfg.index >= size:
        raise ConfigError(
            f"index {cfg.index} is out of range: the test split of {data.name} has {size} "
            f"images" + (f" (0 to {size - 1})" if size else "")
        )
    if isinstance(data.test, Split):
        pixels, label = data.test.images[cfg.index], int(data.test.labels[cfg.index])
    else:
        pixels, label = data.test[cfg.index]
    names = list(state["class_names"])
    label_name = names[label] if 0 <= label < len(names) else str(label)
    return pixels, label_name, data.name
