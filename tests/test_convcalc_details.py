"""`cnnlab convcalc`'s details (inspect/convcalc.py): what counts as a size, the defaults of a
layer, which option an error names, same padding with dilation or per axis, the refusals of
--chain with a single layer's options, and the exact lines of the printed layer and table.

Every test calls the functions directly on hand-made numbers (no training, one tiny LeNet), so
the file takes milliseconds; test_convcalc.py checks the arithmetic against PyTorch. Each test
exists because docs/TESTING.md's mutation run showed the path untested (a survivor of
`mutmut run "cnnlab.inspect.convcalc*"`).
"""

from __future__ import annotations

import re

import pytest

from cnnlab.config import ConvcalcConfig
from cnnlab.errors import ConfigError
from cnnlab.inspect.convcalc import (
    GRAMMAR,
    aligned,
    apply_layer,
    chain_from_config,
    follow_chain,
    format_chain,
    format_layer,
    layer_from_config,
    make_layer,
    pair_text,
    parse_dims,
    parse_step,
)


def refused(call, message: str) -> None:
    """`call()` raises a ConfigError whose whole line is `message`."""
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        call()


# --- sizes ---


@pytest.mark.parametrize("value", [True, {28, 32}, {28: 32}])
def test_only_ints_and_lists_of_ints_are_numbers(value):
    # True is an int to Python and a set iterates as ints, but neither is a size
    with pytest.raises(ConfigError, match="--size expects a whole number or HxW"):
        parse_dims(value, "--size")


def test_a_shape_without_a_name_is_asked_for_as_numbers():
    # counts other than (1, 2) and (3,) have no example shape: the message says "numbers"
    refused(lambda: parse_dims("3x", "--grid", counts=(2,)), "--grid expects numbers, got '3x'")
    refused(lambda: parse_dims("3", "--grid", counts=(2,)), "--grid expects numbers, got '3'")


# --- one layer ---


def test_make_layer_defaults_are_a_3x3_conv_of_stride_1_without_padding():
    layer = make_layer()
    assert (layer.op, layer.kernel, layer.stride, layer.padding) == ("conv", (3, 3), (1, 1), (0, 0))
    assert (layer.dilation, layer.ceil, layer.text) == ((1, 1), False, "")


def test_an_unknown_op_lists_the_ops():
    refused(lambda: make_layer("pool"), "unknown op 'pool'; choose one of: conv, maxpool, avgpool")


@pytest.mark.parametrize("option", ["kernel", "stride", "padding", "dilation"])
def test_a_malformed_option_names_its_flag(option):
    refused(
        lambda: make_layer(**{option: "3x"}),
        f"--{option} expects a whole number or HxW, like 3 or 3x5, got '3x'",
    )


def test_same_padding_with_dilation_pads_half_the_dilated_span_each_side():
    # d(k-1) = 4 pixels in all: 2 before and 2 after, so the field stays centred (start 0)
    result = apply_layer(make_layer(kernel=3, dilation=2, padding="same"), 9)
    assert (result.height.left, result.height.right, result.shape) == (2, 2, (9, 9))
    assert format_layer(result) == [
        "conv on 9x9: kernel 3, stride 1, padding same (2 each side), dilation 2",
        "height and width: out = floor((9 + 2*2 - 2*(3-1) - 1) / 1) + 1 = 9",
        "output: 9x9",
    ]
    assert follow_chain("conv3d2psame", 9)[-1].start == (0, 0)


def test_same_padding_per_axis_is_told_per_axis():
    result = apply_layer(make_layer(kernel="3x4", padding="same"), 8)
    assert format_layer(result)[0] == (
        "conv on 8x8: kernel 3x4, stride 1, "
        "padding same (height 1 each side; width 1 before, 2 after), dilation 1"
    )


def test_same_padding_is_refused_on_a_pool_and_a_strided_conv():
    refused(
        lambda: apply_layer(make_layer("maxpool", 3, 1, "same"), 8),
        "padding same is for conv only (maxpool has none); give a number",
    )
    refused(
        lambda: apply_layer(make_layer("conv", 3, 2, "same"), 8),
        "padding same needs stride 1 (PyTorch refuses it for strided convolutions); "
        "give a number instead (--padding 1, or p1 in a chain)",
    )


def test_ceil_mode_is_refused_on_a_same_padded_conv_too():
    refused(
        lambda: follow_chain("conv3psamec", 8),
        "chain step 1 (conv3psamec): ceil mode is for pools (nn.Conv2d has none); "
        "use --op maxpool or avgpool",
    )


def test_the_layer_line_says_ceil_mode_only_when_it_is_on():
    ceil = format_layer(apply_layer(make_layer("maxpool", 2, ceil=True), 7))
    assert ceil[0] == "maxpool on 7x7: kernel 2, stride 2, padding 0, dilation 1, ceil mode"
    floor = format_layer(apply_layer(make_layer("maxpool", 2), 7))
    assert floor[0] == "maxpool on 7x7: kernel 2, stride 2, padding 0, dilation 1"


@pytest.mark.parametrize("given", [{"size": "32"}, {"kernel": "3"}])
def test_one_layer_needs_both_size_and_kernel(given):
    refused(
        lambda: layer_from_config(ConvcalcConfig(**given)),
        "give --size and --kernel (like --size 32 --kernel 3), or --chain; "
        "see `cnnlab convcalc --help`",
    )


# --- chains ---


def test_a_bad_step_on_its_own_is_step_1():
    refused(
        lambda: parse_step("pol2"),
        f"chain step 1 'pol2' is not a layer; write steps as {GRAMMAR}, like conv5p2,pool2",
    )


def test_a_chain_starts_from_any_size_of_at_least_1():
    assert [(r.height, r.width) for r in follow_chain("conv1", 1)] == [(1, 1), (1, 1)]
    refused(lambda: follow_chain("conv1", "0x5"), "--size must be at least 1, got 0x5")
    refused(
        lambda: follow_chain("conv1", "3x"),
        "--size expects a whole number or HxW, like 3 or 3x5, got '3x'",
    )


@pytest.mark.parametrize(
    "options, named",
    [
        ({"kernel": "3"}, "--kernel"),
        ({"stride": "2"}, "--stride"),
        ({"padding": "1"}, "--padding"),
        ({"dilation": "2"}, "--dilation"),
        ({"op": "maxpool"}, "--op"),
        ({"ceil": True}, "--ceil"),
        ({"kernel": "3", "stride": "2"}, "--kernel, --stride"),
    ],
)
def test_a_chain_refuses_a_single_layers_options(options, named):
    refused(
        lambda: chain_from_config(ConvcalcConfig(chain="conv3", size="8", **options)),
        f"--chain gives each step its own layer; leave out {named} "
        "(like conv3s2p1 for a strided conv)",
    )


def test_a_chain_needs_a_size():
    refused(
        lambda: chain_from_config(ConvcalcConfig(chain="conv3")),
        "--chain needs --size, the input's side or HxW (like --size 28)",
    )


def test_a_model_chain_starts_from_the_size_given():
    # LeNet is built for 28x28; --size 32 must build it for 32x32 and follow that
    rows = chain_from_config(ConvcalcConfig(chain="lenet", size="32"))
    assert (rows[0].height, rows[0].width) == (32, 32)
    assert (rows[-1].height, rows[-1].width) == (6, 6)


# --- what is printed ---


def test_the_chain_table_and_its_legend_line_by_line():
    assert format_chain(follow_chain("conv3x1", 5)) == [
        "step     size  jump  receptive field  start",
        "input    5x5   1     1                0",
        "conv3x1  3x5   1     3x1              1x0",
        "jump: input pixels between neighbouring units; receptive field: input pixels one unit "
        "sees;",
        "start: the centre of the first unit's field (0 is the first pixel, below 0 padding); "
        "HxW where the axes differ",
    ]


@pytest.mark.parametrize(
    "values, text", [((3, 3), "3"), ((3, 5), "3x5"), ((4.0, 4.0), "4"), ((4.0, 5.5), "4x5.5")]
)
def test_a_pair_is_one_number_when_the_axes_agree(values, text):
    assert pair_text(values) == text


def test_aligned_columns_flush_left_or_right_with_no_trailing_spaces():
    rows = [("a", "1", "x"), ("bbb", "22", "yyy")]
    assert aligned(rows) == ["a    1   x", "bbb  22  yyy"]
    assert aligned(rows, right=(1,)) == ["a     1  x", "bbb  22  yyy"]
