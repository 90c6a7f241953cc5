"""Receptive-field rules of convs, pools, LayerNorm/Linear and reshapes (field_rules.py's
_spatial, _mix_dims and _reshape): conv2d's stride, padding ("valid", "same") and dilation by
keyword or by default, max pools' dilation, avg and lp pools' arguments, adaptive pools of a
map that is not square (batched or not), a layer over other dimensions than the map's, Linear
and reductions over some dimensions, and reshapes once a dimension is gone.

Each test traces a one-line forward (a lambda in a module) on one small random map (1x2x5x6)
and compares the field of its output with one worked out by hand: the input's units each see
one pixel (Axis()); a conv or pool of kernel k, stride s, padding p and dilation d gives
Axis(rf=d(k-1)+1, jump=s, start=d(k-1)/2 - p); a map that mixes an axis gives every unit all
of it (`whole`). So the file takes milliseconds; test_receptive_fields.py proves the rules
against autograd. Each test exists because docs/TESTING.md's mutation run showed the path
untested (a survivor of `mutmut run "cnnlab.inspect*"`).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.arithmetic import Axis
from cnnlab.inspect.field_rules import Field
from traced import HEIGHT, MIXED, PIXEL, WIDTH, field_of, whole

WEIGHT = torch.randn(2, 2, 3, 3)  # a 3x3 conv, 2 channels to 2


def square(axis: Axis) -> Field:
    """The same field along both axes, at the last two dimensions."""
    return Field(axis, axis)


# --- conv2d ---


def test_conv2d_reads_stride_padding_and_dilation_given_by_keyword():
    # 3x3 dilated by 2 spans 5 pixels; padding 1 moves unit 0's centre from 2 to 1
    field = field_of(lambda x: F.conv2d(x, WEIGHT, stride=2, padding=1, dilation=2))
    assert field == square(Axis(rf=5, jump=2, start=1))


@pytest.mark.parametrize(
    "conv",
    [lambda x: F.conv2d(x, WEIGHT), lambda x: F.conv2d(x, WEIGHT, padding="valid")],
    ids=["defaults", "valid"],
)
def test_conv2d_without_settings_or_with_valid_padding_is_stride_1_unpadded(conv):
    assert field_of(conv) == square(Axis(rf=3, jump=1, start=1))


def test_same_padding_of_a_dilated_conv_counts_the_dilation():
    # dilation 2: padding 2 (not 1), so unit 0 is centred on pixel 0
    field = field_of(lambda x: F.conv2d(x, WEIGHT, padding="same", dilation=2))
    assert field == square(Axis(rf=5, jump=1, start=0))


# --- pools ---

DILATED_MAX = Axis(rf=5, jump=1, start=2)  # 3 wide, dilation 2, stride 1, no padding


@pytest.mark.parametrize(
    "pool",
    [
        lambda x: F.max_pool2d(x, 3, stride=1, dilation=2),
        lambda x: nn.MaxPool2d(3, 1, dilation=2, return_indices=True)(x)[0],
        lambda x: torch.max_pool2d(x, 3, 1, 0, 2),  # the builtin: every argument by position
        lambda x: torch.max_pool2d(x, kernel_size=3, stride=1, dilation=2),
    ],
    ids=["functional", "module with indices", "builtin positional", "builtin keywords"],
)
def test_a_dilated_max_pool_spans_its_dilated_window(pool):
    assert field_of(pool) == square(DILATED_MAX)


def test_the_builtin_max_pool_defaults_to_stride_kernel_no_padding_no_dilation():
    assert field_of(lambda x: torch.max_pool2d(x, 2)) == square(Axis(rf=2, jump=2, start=0.5))


def test_avg_pool2d_reads_its_arguments_by_keyword():
    field = field_of(lambda x: F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
    assert field == square(Axis(rf=3, jump=1, start=0))


def test_avg_pool2d_by_position_reads_stride_and_defaults_to_no_padding():
    # stride 1 at position 2 (not the kernel's 3), and no padding given
    assert field_of(lambda x: F.avg_pool2d(x, 3, 1)) == square(Axis(rf=3, jump=1, start=1))


@pytest.mark.parametrize(
    "pool",
    [lambda x: F.lp_pool2d(x, 2, 3, stride=1), lambda x: nn.LPPool2d(2, 3, stride=1)(x)],
    ids=["functional", "module"],
)
def test_lp_pool2d_reads_its_kernel_after_the_norm_and_has_no_padding(pool):
    # lp_pool2d(input, norm_type=2, kernel_size=3): the kernel is the third argument
    assert field_of(pool) == square(Axis(rf=3, jump=1, start=1))


@pytest.mark.parametrize(
    "layer",
    [lambda y: F.max_pool2d(y, 2), lambda y: F.conv2d(y, torch.randn(1, 5, 3, 2))],
    ids=["pool", "conv"],
)
def test_a_2d_layer_over_other_dimensions_than_the_map_mixes_it(layer):
    # channels last (N, H, W, C): the layer's 2-D window runs over W and C, not followed
    assert field_of(lambda x: layer(x.permute(0, 2, 3, 1))) == MIXED


@pytest.mark.parametrize(
    "pool",
    [lambda x: F.adaptive_avg_pool2d(x, (2, 3)), lambda x: F.adaptive_max_pool2d(x[0], (2, 3))],
    ids=["batched", "unbatched (C, H, W)"],
)
def test_an_adaptive_pool_of_a_map_not_square_windows_each_axis_by_its_own_sizes(pool):
    # height 5 → 2: windows [0, 3) and [2, 5); width 6 → 3: [0, 2), [2, 4), [4, 6)
    field = field_of(pool)
    assert field == Field(Axis(rf=3, jump=2, start=1), Axis(rf=2, jump=2, start=0.5))


# --- Linear, LayerNorm and reductions over some dimensions ---


def test_linear_over_the_width_gives_every_unit_the_whole_row():
    field = field_of(lambda x: F.linear(x, torch.randn(3, WIDTH)))
    assert field == Field(PIXEL, whole(WIDTH), (-2, None))


def test_layer_norm_over_the_map_mixes_both_axes():
    assert field_of(lambda x: F.layer_norm(x, (HEIGHT, WIDTH))) == MIXED


def test_linear_with_a_vector_weight_drops_the_width_and_is_not_followed():
    # (N, C, H, W) @ (W,) → (N, C, H): the height moved to the last dimension; the rule gives
    # the whole map (an overestimate), never the channels as height
    assert field_of(lambda x: F.linear(x, torch.randn(WIDTH))) == MIXED


def test_a_keepdim_reduction_over_a_positive_dim_mixes_that_axis():
    assert field_of(lambda x: x.amax(3, keepdim=True)) == Field(PIXEL, whole(WIDTH), (-2, None))


def test_a_reduction_over_dim_0_of_a_2d_map_mixes_its_rows():
    # x[0, 0] is (H, W): dim 0 is the height
    field = field_of(lambda x: x[0, 0].sum(0, keepdim=True))
    assert field == Field(whole(HEIGHT), PIXEL, (None, -1))


# --- views and reshapes ---


def test_flattening_after_the_height_is_gone_mixes_the_width_too():
    # amax over H leaves (N, C, W); flatten(1) then merges W with the channels
    assert field_of(lambda x: x.amax(2).flatten(1)) == MIXED


def test_a_2d_map_given_a_leading_dimension_keeps_its_field():
    # x[0, 0] is (H, W), as many dimensions as the height is from the end
    assert field_of(lambda x: x[0, 0].unsqueeze(0)) == Field(PIXEL, PIXEL, (-2, -1))
