"""Receptive fields, proved without trusting the formula: autograd says which input pixels a
unit depends on, and for every registered model that set must span exactly the computed field.

Max pooling and ReLU route the gradient through some pixels only, so the support is the union
over a batch of random images (the model runs in eval mode, so the images do not interact).
"""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.inspect.receptive import trace
from cnnlab.models import create_model, list_models, min_input_size, model_info

BATCH = 16  # random images whose gradients are united


def small_size(name: str) -> int | None:
    """The registry's size where it is small; else the smallest the model takes, at least 48."""
    _, height, width = model_info(name).input_shape
    if max(height, width) <= 64:
        return None
    return max(min_input_size(name), 48)


def gradient_span(output, images, index, dims=(-2, -1)):
    """Rows and columns (first, last) of input pixels with a non-zero gradient of the unit at
    `index` (row, column) of the output's dimensions `dims`, over every batch item and channel."""
    where = [slice(None)] * output.dim()
    where[dims[0]], where[dims[1]] = index
    unit = output[tuple(where)].sum()
    (grad,) = torch.autograd.grad(unit, images, retain_graph=True)
    support = grad.abs().sum(dim=(0, 1)) != 0
    rows, cols = support.any(dim=1).nonzero(), support.any(dim=0).nonzero()
    return (rows.min().item(), rows.max().item()), (cols.min().item(), cols.max().item())


def expected_span(axis, index: int, size: int) -> tuple[int, int]:
    low, high = axis.bounds(index)
    assert low == math.floor(low) and high == math.floor(high), (low, high)
    return max(int(low), 0), min(int(high), size - 1)


# the seed models and five torchvision families (ResNet, MobileNetV3, EfficientNet, VGG, AlexNet):
# all 80 tv_* models at full size would take many minutes, and attention (ViT, Swin) has no
# receptive-field rule yet
TRACED = [name for name in list_models() if not name.startswith("tv_")] + [
    "tv_alexnet", "tv_efficientnet_b0", "tv_mobilenet_v3_small", "tv_resnet18", "tv_vgg11",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", TRACED)
def test_receptive_field_is_the_span_of_the_gradient(name):
    torch.manual_seed(0)
    model = create_model(name, image_size=small_size(name)).eval().requires_grad_(False)
    channels = model.model_args["in_channels"]
    height, width = model.model_args["image_size"]
    images = torch.randn(BATCH, channels, height, width, requires_grad=True)
    t0 = time.perf_counter()
    result = trace(model, images, keep_outputs=True)
    assert not result.unknown, f"functions not followed: {dict(result.unknown)}"
    # The first image alone, in a forward of its own: where its gradient already reaches every
    # pixel, so does the batch's (a union over more images only widens the span, and none is
    # wider), and that batch's backward, 16 times the work, is skipped. Deep layers' fields
    # cover the whole image (96 of EfficientNet-B0's 98 convs and pools at 48x48); elsewhere the
    # batch decides, as before.
    first = images[:1].detach().requires_grad_(True)
    ops_of_first = trace(model, first, keep_outputs=True).ops
    whole = ((0, height - 1), (0, width - 1))
    checked = 0
    for op, op_of_first in zip(result.ops, ops_of_first, strict=True):
        assert (op_of_first.module, op_of_first.shape[1:]) == (op.module, op.shape[1:])
        if not (op.field.height.exact and op.field.width.exact):
            assert op.kind.startswith("adaptive"), op
            continue
        index = (op.shape[-2] // 2, op.shape[-1] // 2)
        spans = gradient_span(op_of_first.output, first, index)
        if spans != whole:
            spans = gradient_span(op.output, images, index)
        rows, cols = spans
        assert rows == expected_span(op.field.height, index[0], height), (op.module, op.kind)
        assert cols == expected_span(op.field.width, index[1], width), (op.module, op.kind)
        checked += 1
    assert checked >= 2
    print(name, checked, f"{time.perf_counter() - t0:.2f}s")


class Branches(nn.Module):
    """Two paths that meet: `left(x) + right(x)`, or their channels concatenated."""

    def __init__(self, left: nn.Module, right: nn.Module, cat: bool = False) -> None:
        super().__init__()
        self.left, self.right, self.cat = left, right, cat

    def forward(self, x):
        a, b = self.left(x), self.right(x)
        return torch.cat([a, b], dim=1) if self.cat else a + b


class ChannelsLast(nn.Module):
    """ConvNeXt's pattern: a depthwise conv, then LayerNorm and Linear over channels in NHWC."""

    def __init__(self) -> None:
        super().__init__()
        # LayerNorm over 4 channels: over 2 it gives (a, -a) with a = ±1, whose gradient is
        # rounding noise that can be exactly 0 (thread count decides), and the field looks empty
        self.conv = nn.Conv2d(2, 4, 7, padding=3, groups=2)
        self.norm, self.fc = nn.LayerNorm(4), nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv(x).permute(0, 2, 3, 1)
        return F.max_pool2d(self.fc(self.norm(x)).permute(0, 3, 1, 2), 2)


class Shuffle(nn.Module):
    """ShuffleNet's channel shuffle (view, transpose, view) between two convs."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 4, 3), nn.Conv2d(4, 2, 3, stride=2)

    def forward(self, x):
        x = self.a(x)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.b(x)


class Stacked(nn.Module):
    """Two conv paths stacked into a new leading dimension, then summed over it."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 5, padding=1)

    def forward(self, x):
        return torch.stack([self.a(x), self.b(x)]).sum(dim=0)


class Moved(nn.Module):
    """Dimensions moved by tuples and by swapaxes' keywords, and back, between two convs."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3, stride=2)

    def forward(self, x):
        x = torch.movedim(self.a(x), (2, 3), (0, 1))  # (H, W, N, C)
        x = torch.swapaxes(x, axis0=0, axis1=1)  # (W, H, N, C)
        return self.b(x.movedim((1, 0), (2, 3)))  # (N, C, H, W)


CASES = {
    "reflect padding and dilation": nn.Sequential(
        nn.Conv2d(2, 2, 3, padding=2, dilation=2, padding_mode="reflect"), nn.Conv2d(2, 2, 3)
    ),
    "ceil-mode pools": nn.Sequential(
        nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.AvgPool2d(2, ceil_mode=True), nn.ReLU()
    ),
    "same padding, even kernel": nn.Sequential(nn.Conv2d(2, 2, 4, padding="same"), nn.Tanh()),
    "strided and rectangular": nn.Sequential(nn.Conv2d(2, 2, (3, 5), stride=(2, 1), padding=1)),
    "residual with a strided shortcut": Branches(
        nn.Sequential(
            nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)
        ),
        nn.Conv2d(2, 2, 1, stride=2),
    ),
    "inception-style concatenation": Branches(
        nn.Conv2d(2, 2, 5, padding=2), nn.MaxPool2d(3, stride=1, padding=1), cat=True
    ),
    "a 1×1 map broadcast over a map": Branches(  # squeeze-and-excitation's shape of merge
        nn.Conv2d(2, 2, 3, padding=1), nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(2, 2, (21, 25)))
    ),
    "stacked and summed paths": Stacked(),
    "misaligned paths": Branches(nn.AvgPool2d(2, ceil_mode=True), nn.Conv2d(2, 2, 1, stride=2)),
    "channels-last block": ChannelsLast(),
    "channel shuffle": Shuffle(),
    "moved dimensions": Moved(),
    "adaptive pool that does not divide": nn.Sequential(
        nn.Conv2d(2, 2, 3), nn.AdaptiveMaxPool2d(5)
    ),
}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name", CASES)
def test_receptive_field_of_layers_beyond_the_registry(name):
    torch.manual_seed(0)
    model = CASES[name].eval().requires_grad_(False)
    images = torch.randn(BATCH, 2, 19, 23, requires_grad=True)
    result = trace(model, images, keep_outputs=True)
    assert not result.unknown
    maps = [op for op in result.ops] + [c for c in result.calls if c.output.dim() == 4]
    for layer in maps:  # every conv and pool, and every module's output (merges included)
        height, width = layer.field.height, layer.field.width
        dims = layer.field.dims
        if height.exact and width.exact:
            index = (layer.output.shape[dims[0]] // 2, layer.output.shape[dims[1]] // 2)
            rows, cols = gradient_span(layer.output, images, index, dims)
            assert rows == expected_span(height, index[0], 19), layer
            assert cols == expected_span(width, index[1], 23), layer
            continue
        # the units' fields differ: none is wider than the largest, and one is that wide
        widths = []
        for i in range(layer.output.shape[dims[0]]):
            rows, _ = gradient_span(layer.output, images, (i, 0), dims)
            widths.append(rows[1] - rows[0] + 1)
        assert max(widths) == height.rf
    assert result.calls[-1].field.height.aligned == (name != "misaligned paths")


def test_a_function_not_followed_is_named_and_taken_to_mix_everything():
    class Rolled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x):
            return self.conv(torch.roll(x, 1, dims=-1))

    result = trace(Rolled(), torch.randn(1, 1, 10, 12))
    assert dict(result.unknown) == {"roll": 1}
    (op,) = result.ops
    assert op.field.width.jump == 0
    assert op.field.width.bounds(0) == (0, 11)  # every column, whatever the unit
