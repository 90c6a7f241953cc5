"""One small map traced through a one-line forward, for the receptive-field detail tests
(test_receptive_details.py, test_spatial_rules_details.py, test_field_rules_details.py).

The input's units each see one pixel (PIXEL); a map that mixes an axis gives every unit all of
it (`whole`), and MIXED is such a field along both axes.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.arithmetic import Axis
from cnnlab.inspect.field_rules import Field
from cnnlab.inspect.receptive import trace

HEIGHT, WIDTH = 5, 6
PIXEL = Axis()  # the input's field: each unit sees its own pixel


def whole(size: int) -> Axis:
    """One field for every unit: all `size` pixels of the axis (jump 0, centred)."""
    return Axis(rf=size, jump=0, start=(size - 1) / 2)


MIXED = Field(whole(HEIGHT), whole(WIDTH), (None, None))


class Lambda(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def images() -> torch.Tensor:
    """A (1, 2, HEIGHT, WIDTH) random map."""
    return torch.randn(1, 2, HEIGHT, WIDTH)


def field_of(fn, model: nn.Module | None = None) -> Field:
    """The field trace gives `fn(images)` (or `model`'s output), none of it unknown."""
    result = trace(model if model is not None else Lambda(fn), images())
    assert not result.unknown, dict(result.unknown)
    return result.calls[-1].field
