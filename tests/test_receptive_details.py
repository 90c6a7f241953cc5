"""Receptive fields' details (inspect/field_rules.py, receptive.py): how F.pad, reductions,
cat and stack, permute, movedim and transpose move a field when their arguments come by
position or by keyword, broadcasts against a pooled vector or a single map, and the rows of
`cnnlab convcalc --chain MODEL`.

Each test traces a one-line forward (a lambda in a module) on one small random map (1x2x5x6)
and compares the field of its output with one worked out by hand: the input's units each see
one pixel (Axis()), and a map that mixes an axis gives every unit all of it (`whole`). So the
file takes milliseconds; test_receptive_fields.py proves the rules against autograd. Each test
exists because docs/TESTING.md's mutation run showed the path untested (a survivor of
`mutmut run "cnnlab.inspect*"`).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.arithmetic import Axis
from cnnlab.errors import ConfigError
from cnnlab.inspect.convcalc import ChainRow
from cnnlab.inspect.field_rules import Field
from cnnlab.inspect.receptive import model_chain
from traced import HEIGHT, MIXED, PIXEL, WIDTH, field_of, whole


def channels_last(x):
    return x.permute(0, 2, 3, 1)


# --- F.pad ---


def test_pad_moves_each_axis_by_its_own_left_padding():
    # (left, right, top, bottom): the width starts 1 pixel into the padding, the height 3
    field = field_of(lambda x: F.pad(x, (1, 2, 3, 4)))
    assert field == Field(Axis(start=-3), Axis(start=-1), (-2, -1))


def test_padding_the_width_alone_leaves_the_height():
    field = field_of(lambda x: F.pad(x, (1, 2)))
    assert field == Field(PIXEL, Axis(start=-1), (-2, -1))


def test_pad_channels_last_keeps_the_dimensions_it_found():
    # NHWC: pad = (C left, C right, W left, W right, H top, H bottom)
    field = field_of(lambda x: F.pad(channels_last(x), (0, 0, 1, 2, 3, 4)))
    assert field == Field(Axis(start=-3), Axis(start=-1), (-3, -2))


# --- broadcasts ---


def test_a_map_plus_its_global_mean_sees_the_whole_map():
    # a global-context block: every unit adds the mean of the whole map (a vector whose
    # spatial dimensions are gone, broadcast back over them)
    field = field_of(lambda x: x + x.mean((2, 3))[:, :, None, None])
    assert field == Field(whole(HEIGHT), whole(WIDTH), (-2, -1))


def test_a_map_plus_a_2d_slice_of_itself_keeps_one_pixel_per_unit():
    # x[0, 0] is (H, W): as many dimensions as the height is from the end, not a broadcast
    assert field_of(lambda x: x + x[0, 0]) == Field(PIXEL, PIXEL, (-2, -1))


# --- reductions ---


@pytest.mark.parametrize(
    "reduce",
    [lambda x: x.sum(1), lambda x: x.sum(dim=1), lambda x: x.sum(1, keepdim=True)],
    ids=["positional", "keyword", "keepdim"],
)
def test_a_reduction_over_channels_keeps_the_field(reduce):
    assert field_of(reduce) == Field(PIXEL, PIXEL, (-2, -1))


@pytest.mark.parametrize(
    "reduce",
    [lambda x: x.mean(), lambda x: x.mean((2, 3)), lambda x: x.amax(dim=(-2, -1))],
    ids=["no dim", "a tuple of dims", "negative dims"],
)
def test_a_reduction_over_the_map_sees_all_of_it(reduce):
    assert field_of(reduce) == MIXED


def test_a_channels_last_reduction_over_channels_keeps_the_field():
    field = field_of(lambda x: channels_last(x).sum(-1, keepdim=True))
    assert field == Field(PIXEL, PIXEL, (-3, -2))


def test_a_channels_last_reduction_that_drops_the_channels_is_not_followed():
    # (N, H, W, C) → (N, H, W): H and W move from -3, -2 to -2, -1, which the rule does not
    # follow; it gives the whole map (an overestimate), never the batch dimension as height
    assert field_of(lambda x: channels_last(x).sum(-1)) == MIXED


# --- cat and stack ---


@pytest.mark.parametrize(
    "cat",
    [
        lambda x: torch.cat([x, x], dim=3),
        lambda x: torch.cat([x, x], 3),
        lambda x: torch.cat([x, x], dim=-1),
        lambda x: torch.cat([x[0, 0], x[0, 0]], 0),  # rows of an (H, W) map
    ],
    ids=["keyword", "positional", "negative", "dim 0 of a 2-D map"],
)
def test_a_concatenation_along_a_spatial_dimension_mixes_the_map(cat):
    assert field_of(cat) == MIXED


def test_cat_without_dim_joins_the_first_dimension():
    # x[0] is (C, H, W): the default dim 0 is its channels
    assert field_of(lambda x: torch.cat([x[0], x[0]])) == Field(PIXEL, PIXEL, (-2, -1))


def test_cat_with_a_constant_channel_keeps_the_field():
    # CoordConv-like: one extra channel that does not come from the image
    field = field_of(lambda x: torch.cat([x, torch.zeros_like(x[:, :1])], dim=1))
    assert field == Field(PIXEL, PIXEL, (-2, -1))


def test_a_channels_last_concatenation_of_channels_keeps_the_field():
    # the last dimension grows, but it is the channels, after H and W
    y = channels_last
    assert field_of(lambda x: torch.cat([y(x), y(x)], dim=-1)) == Field(PIXEL, PIXEL, (-3, -2))


def test_stacking_before_the_spatial_dimensions_keeps_the_field():
    # (N, C, 2, H, W): H and W are still the last two
    assert field_of(lambda x: torch.stack([x, x], dim=2)) == Field(PIXEL, PIXEL, (-2, -1))


@pytest.mark.parametrize("dim", [3, -2, -1])
def test_stacking_among_or_after_the_spatial_dimensions_mixes_the_map(dim):
    # the new dimension lands between H and W (3, -2) or after them (-1)
    assert field_of(lambda x: torch.stack([x, x], dim=dim)) == MIXED


# --- permute, movedim, transpose ---

PERMUTATIONS = [
    "permute a tuple",
    "permute dims=",
    "permute 2-D",
    "movedim channels last",
    "movedim a spatial dim",
    "movedim keywords",
    "transpose",
    "transpose keywords",
    "swapaxes keywords",
    "swapdims",
    "moveaxis",
    "movedim tuples",
    "movedim tuples, both spatial",
]


@pytest.mark.parametrize(
    "move, dims",
    [
        (lambda x: x.permute((0, 2, 3, 1)), (-3, -2)),
        (lambda x: torch.permute(x, dims=(0, 2, 3, 1)), (-3, -2)),
        (lambda x: x[0, 0].permute(1, 0), (-1, -2)),  # an (H, W) map transposed
        (lambda x: x.movedim(1, -1), (-3, -2)),  # channels last
        (lambda x: x.movedim(3, 2), (-1, -2)),  # W moved before H
        (lambda x: torch.movedim(x, source=3, destination=2), (-1, -2)),
        (lambda x: x.transpose(1, 3), (-2, -3)),  # (N, W, H, C)
        (lambda x: x.transpose(dim0=1, dim1=3), (-2, -3)),
        # swapaxes names its arguments axis0/axis1: read as dim0/dim1 they swapped nothing
        (lambda x: torch.swapaxes(x, axis0=1, axis1=3), (-2, -3)),
        (lambda x: torch.swapdims(x, 1, 3), (-2, -3)),
        (lambda x: torch.moveaxis(x, 1, -1), (-3, -2)),
        # tuples of dimensions (they failed with a TypeError): C to 3, H to 0 gives (H, N, W, C)
        (lambda x: torch.movedim(x, (1, 2), (3, 0)), (-4, -2)),
        (lambda x: x.movedim((2, 3), (0, 1)), (-4, -3)),  # (H, W, N, C)
    ],
    ids=PERMUTATIONS,
)
def test_the_spatial_dimensions_move_with_a_permutation(move, dims):
    assert field_of(move) == Field(PIXEL, PIXEL, dims)


def test_a_permutation_after_a_dimension_is_gone_follows_the_one_left():
    # amax over H: (N, C, W), every unit sees the whole height; then (N, W, C)
    field = field_of(lambda x: x.amax(2).transpose(1, 2))
    assert field == Field(whole(HEIGHT), PIXEL, (None, -2))


@pytest.mark.parametrize(
    "in_place, copy",
    [
        # a pool over the whole height, then that dimension squeezed: in place, the rule saw
        # the input already squeezed and kept the channels as the height
        (
            lambda x: F.max_pool2d(x, (5, 1)).squeeze_(2),
            lambda x: F.max_pool2d(x, (5, 1)).squeeze(2),
        ),
        (lambda x: x.clone().unsqueeze_(1), lambda x: x.unsqueeze(1)),
    ],
    ids=["squeeze_", "unsqueeze_"],
)
def test_an_in_place_view_moves_the_field_as_its_copy_does(in_place, copy):
    assert field_of(in_place) == field_of(copy)


# --- cnnlab convcalc --chain MODEL ---


def test_a_model_chain_at_a_size_that_is_not_square():
    # LeNet: conv5 p2, avg pool 2, conv5, avg pool 2, built for 28x32
    rows = model_chain("lenet", "28x32")
    assert rows == [
        ChainRow("input", 28, 32, (1, 1), (1, 1), (0, 0)),
        ChainRow("0 conv2d", 28, 32, (1, 1), (5, 5), (0, 0)),
        ChainRow("2 avg_pool2d", 14, 16, (2, 2), (6, 6), (0.5, 0.5)),
        ChainRow("3 conv2d", 10, 12, (2, 2), (14, 14), (4.5, 4.5)),
        ChainRow("5 avg_pool2d", 5, 6, (4, 4), (16, 16), (5.5, 5.5)),
    ]


def test_a_model_chain_without_a_size_runs_at_the_models_own():
    rows = model_chain("lenet")  # built for 28x28
    assert [(row.step, row.height, row.width) for row in rows] == [
        ("input", 28, 28), ("0 conv2d", 28, 28), ("2 avg_pool2d", 14, 14), ("3 conv2d", 10, 10),
        ("5 avg_pool2d", 5, 5),
    ]  # fmt: skip


def test_a_model_chain_refuses_a_bad_size_naming_the_option():
    message = "^--size expects a whole number or HxW, like 3 or 3x5, got '3x'$"
    with pytest.raises(ConfigError, match=message):
        model_chain("lenet", "3x")
