"""Grad-CAM and saliency in detail (inspect/gradcam.py): the inputs explain_batch converts
(float64 images, int32 targets), the refusals and the words of each (naming the model's class
and what to do), and overlay's blend of grey, RGB and RGBA images with float and 0/1 heatmaps.

Every test runs a tiny hand-built net on a few 4×4 images: milliseconds each. The tests exist
because docs/TESTING.md's mutation run showed these paths untested (survivors of
`mutmut run "cnnlab.inspect*"`); tests/test_explain.py checks the numbers against Captum.
"""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.inspect.gradcam import explain_batch, overlay, scaled


def conv_net() -> nn.Sequential:
    """conv (2 maps of 4×4) → flatten → linear (3 classes)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


class Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


class PairNet(nn.Module):
    """A net with a layer that returns two tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pair, self.head = nn.Conv2d(1, 2, 3, padding=1), Pair(), nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = self.pair(self.conv(x))
        return self.head(a.mean(dim=(2, 3)))


class Unused(nn.Module):
    """A net holding a conv its forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.spare, self.head = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 1), nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


class Maps(nn.Module):
    """A net that returns maps (N, K, h, w), not class scores."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


# --- explain_batch ---------------------------------------------------------------------------


def test_float64_images_are_explained_as_float32_by_plain_torch():
    """The model's weights are float32: float64 images must be converted, not refused. The
    numbers: a forward, a backward on the target logits, channel means of the gradients as
    weights, ReLU, bilinear upsampling (here to the same 4×4, so the heatmap is the scaled cam)."""
    model = conv_net()
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    target = torch.tensor([0, 2, 1])
    found = explain_batch(model, x, target)

    inputs = x.float().requires_grad_(True)
    maps = model[0](inputs)
    logits = model[2](model[1](maps))
    d_maps, d_x = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), [maps, inputs])
    cam = F.relu((d_maps.mean(dim=(2, 3), keepdim=True) * maps).sum(dim=1)).detach()
    assert found.logits.dtype == torch.float32
    torch.testing.assert_close(found.logits, logits.detach())
    torch.testing.assert_close(found.cam, cam)
    torch.testing.assert_close(found.heatmap, scaled(cam))
    torch.testing.assert_close(found.saliency, scaled(d_x.abs().amax(dim=1)))


def test_an_int32_target_tensor_is_taken_as_the_classes():
    # gather wants int64 indices: the targets must be converted whatever their integer type
    x = torch.randn(2, 1, 4, 4)
    found = explain_batch(conv_net(), x, torch.tensor([2, 1], dtype=torch.int32))
    assert found.target.dtype == torch.int64 and found.target.tolist() == [2, 1]
    torch.testing.assert_close(found.cam, explain_batch(conv_net(), x, torch.tensor([2, 1])).cam)


def test_an_unknown_layer_names_the_models_class_and_none_without_convs():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    message = "Sequential has no layer named 'x'; its conv layers are none (any module path"
    with pytest.raises(ModelError, match="^" + re.escape(message)):
        explain_batch(model, torch.randn(1, 1, 4, 4), layer="x")


def test_a_model_without_convs_names_its_class():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    message = "Sequential has no Conv2d layer: name one with layer=..."
    with pytest.raises(ModelError, match=f"^{re.escape(message)}$"):
        explain_batch(model, torch.randn(1, 1, 4, 4))


def test_a_layer_returning_two_tensors_is_named_with_what_it_returns():
    with pytest.raises(ModelError, match=r"^layer pair returns tuple, not one tensor$"):
        explain_batch(PairNet(), torch.randn(1, 1, 4, 4), layer="pair")


def test_the_whole_model_as_layer_is_called_model_and_told_to_name_a_conv():
    # named_modules calls the root "": the message must still say which layer
    message = r"^layer model gives shape \(2, 3\), not maps \(N, C, h, w\): name a conv layer "
    with pytest.raises(ModelError, match=message + "or a block of them$"):
        explain_batch(conv_net(), torch.randn(2, 1, 4, 4), layer="")


def test_a_model_returning_maps_is_refused_naming_its_class():
    message = r"^Maps must return class scores \(N, classes\) to be explained$"
    with pytest.raises(ModelError, match=message):
        explain_batch(Maps(), torch.randn(1, 1, 4, 4))


def test_a_layer_the_forward_never_calls_is_refused_naming_the_models_class():
    with pytest.raises(ModelError, match=r"^the forward pass of Unused never called that layer$"):
        explain_batch(Unused(), torch.randn(1, 1, 4, 4), layer="spare")


# --- overlay ---------------------------------------------------------------------------------

HEAT = np.array([[0.0, 1.0, 0.5, 0.25]])  # one row of four: 0 and 1 are jet's two ends


def jet(heat: np.ndarray) -> np.ndarray:
    return matplotlib.colormaps["jet"](heat)[..., :3] * 255


def test_overlay_blends_half_and_half_by_default_down_to_zero():
    pixels = np.zeros((1, 1, 4), np.uint8)  # black: jet(0) = (0, 0, 127.5) keeps two zeros
    expected = np.round(0.5 * jet(HEAT)).astype(np.uint8)
    blended = overlay(pixels, HEAT)
    assert np.array_equal(blended, expected)
    assert blended[0, 0, 0] == 0  # not raised to 1


def test_overlay_of_rgb_and_rgba_blends_the_first_three_channels():
    # one row (H = 1): whether an image is grey is told by its channels, not its height
    rgb = np.arange(12, dtype=np.uint8).reshape(3, 1, 4) * 20
    expected = np.round(0.7 * rgb.transpose(1, 2, 0) + 0.3 * jet(HEAT)).astype(np.uint8)
    assert np.array_equal(overlay(rgb, HEAT, alpha=0.3), expected)
    rgba = np.concatenate([rgb, np.full((1, 1, 4), 255, np.uint8)])  # alpha channel ignored
    assert np.array_equal(overlay(rgba, HEAT, alpha=0.3), expected)


def test_a_heatmap_of_integers_0_and_1_is_read_as_values_not_colour_indices():
    # a mask: 1 is the top of the colour map, as 1.0 is (an int would index jet's 256 colours)
    pixels = np.full((1, 1, 2), 100, np.uint8)
    mask = np.array([[0, 1]])
    assert np.array_equal(overlay(pixels, mask), overlay(pixels, mask.astype(np.float64)))


def test_an_alpha_beyond_one_saturates_instead_of_wrapping_around():
    # 1.5 · colour − 0.5 · image leaves 0-255: clipped to its ends, not wrapped by uint8
    white = np.full((1, 1, 4), 255, np.uint8)
    black = np.zeros((1, 1, 4), np.uint8)
    for pixels in (white, black):
        blended = np.round(-0.5 * pixels[0, :, :, None] + 1.5 * jet(HEAT))
        assert blended.min() < 0 or blended.max() > 255  # each case leaves the range
        expected = np.clip(blended, 0, 255).astype(np.uint8)
        assert np.array_equal(overlay(pixels, HEAT, alpha=1.5), expected)
