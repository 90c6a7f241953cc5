"""Feature-map sizes: how big the image is after the convs and pools, and how small it may be.

A classifier's first Linear layer takes C*H*W inputs, where H×W is what is left of the image
after the conv and pool layers. The builders work H×W out from the input size with the output
formula of seed 000, out = floor((in + 2*padding - kernel) / stride) + 1 (seed 003's version has
a typo), so a model built for 64×64 images gets the right Linear layer, and one asked to take an
image too small for it fails with the smallest size it does take.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

from cnnlab.arithmetic import output_size
from cnnlab.errors import ModelError

# No model here needs more; a bound keeps the search for the smallest size finite.
LARGEST_SIDE = 4096


class InputTooSmallError(ModelError):
    """A model asked to take images smaller than its convs and pools can shrink to 1×1."""

    def __init__(self, model_name: str, image_size: tuple[int, int], min_size: int) -> None:
        height, width = image_size
        super().__init__(
            f"{model_name} cannot take {height}×{width} images: its feature maps shrink to "
            f"nothing; the smallest input it takes is {min_size}×{min_size}, so resize the "
            "images to at least that or choose another model"
        )
        self.min_size = min_size


def conv_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """One side of a conv or pool output: floor((in + 2p - d*(k-1) - 1) / s) + 1, or 0 if none.

    With dilation 1 this is seed 000's out = floor((in + 2p - k) / s) + 1. A side that is already
    gone (< 1) stays gone, so a later padded conv cannot bring it back.
    """
    if size < 1:
        return 0
    return max(output_size(size, kernel, stride, padding, dilation), 0)


def as_pair(value: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    """A layer setting as (height, width): 3 → (3, 3), (3,) → (3, 3), (3, 5) → (3, 5)."""
    if isinstance(value, tuple | list):
        return (value[0], value[-1])
    return (value, value)


def layers_output_size(layers: Iterable[nn.Module], image_size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) after `layers`: Conv2d and Max/AvgPool2d change it, everything else keeps it.

    Pools here use ceil_mode=False (PyTorch's default), as every model in the zoo does.
    """
    height, width = image_size
    for layer in layers:
        if not isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            continue  # activations, batch norm, dropout keep H×W
        if layer.padding == "same":
            continue  # so does Conv2d(padding="same")
        padding = (0, 0) if layer.padding == "valid" else as_pair(layer.padding)
        kernel, dilation = as_pair(layer.kernel_size), as_pair(getattr(layer, "dilation", 1))
        stride = as_pair(layer.stride or layer.kernel_size)  # a pool's stride: its kernel
        height, width = (
            conv_output_size(side, kernel[i], stride[i], padding[i], dilation[i])
            for i, side in enumerate((height, width))
        )
    return height, width


def smallest_side(fits: Callable[[int, int], bool]) -> int:
    """The smallest s for which `fits(s, s)`: a binary search, as output sizes only grow with s."""
    if not fits(LARGEST_SIDE, LARGEST_SIDE):
        return LARGEST_SIDE + 1  # reported as is; no model in the zoo gets here
    low, high = 1, LARGEST_SIDE
    while low < high:
        middle = (low + high) // 2
        if fits(middle, middle):
            high = middle
        else:
            low = middle + 1
    return low


def feature_size(
    model_name: str, layers: Iterable[nn.Module], image_size: tuple[int, int]
) -> tuple[int, int]:
    """(H, W) after `layers` for `image_size`; InputTooSmallError when nothing is left of it."""
    layers = list(layers)

    def fits(height: int, width: int) -> bool:
        return min(layers_output_size(layers, (height, width))) >= 1

    require_input_size(model_name, image_size, fits)
    return layers_output_size(layers, image_size)


def require_input_size(
    model_name: str, image_size: tuple[int, int], fits: Callable[[int, int], bool]
) -> None:
    """Raise InputTooSmallError, naming the smallest square size, unless `fits(H, W)`."""
    if not fits(*image_size):
        raise InputTooSmallError(model_name, image_size, smallest_side(fits))
