"""`cnnlab convcalc` and `cnnlab params`: the arithmetic is PyTorch's, checked against real
layers (hypothesis), and what is printed is the arithmetic a learner can redo by hand."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cnnlab.arithmetic import Axis, check_layer, output_size
from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.inspect.convcalc import (
    apply_layer,
    follow_chain,
    make_layer,
    parse_chain,
    parse_dims,
)
from cnnlab.inspect.params import compare_params

FAST = settings(max_examples=150, deadline=None)


def run_cli(capsys, *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


# --- the command ---


def test_one_conv_prints_the_formula_with_its_numbers(capsys):
    out = run_cli(capsys, "convcalc", "--size", "32", "--kernel", "3", "--padding", "1")
    assert "out = floor((32 + 2*1 - 1*(3-1) - 1) / 1) + 1 = 32" in out
    assert "output: 32x32" in out


def test_a_rectangular_conv_gets_a_formula_per_axis(capsys):
    argv = ["--size", "28x32", "--kernel", "3X5", "--stride", "2"]
    out = run_cli(capsys, "convcalc", *argv)
    assert "height: out = floor((28 + 2*0 - 1*(3-1) - 1) / 2) + 1 = 13" in out
    assert "width:  out = floor((32 + 2*0 - 1*(5-1) - 1) / 2) + 1 = 14" in out
    assert "output: 13x14" in out


def test_a_pool_strides_by_its_kernel_and_ceil_drops_a_window_in_the_padding(capsys):
    out = run_cli(capsys, "convcalc", "--op", "maxpool", "--size", "7", "--kernel", "2", "--ceil")
    assert "ceil((7 + 2*0 - 1*(2-1) - 1) / 2) + 1 = 4" in out
    out = run_cli(
        capsys, "convcalc", "--op", "avgpool", "--size", "5", "--kernel", "2", "--padding", "1",
        "--ceil",
    )  # fmt: skip
    assert "ceil((5 + 2*1 - 1*(2-1) - 1) / 2) + 1 - 1 = 3" in out
    assert nn.AvgPool2d(2, padding=1, ceil_mode=True)(torch.zeros(1, 1, 5, 5)).shape[-1] == 3


def test_same_padding_keeps_the_size_and_shows_the_uneven_split(capsys):
    out = run_cli(capsys, "convcalc", "--size", "32×20", "--kernel", "4", "--padding", "same")
    assert "1 before, 2 after" in out
    assert "out = floor((32 + 1 + 2 - 1*(4-1) - 1) / 1) + 1 = 32" in out
    assert "output: 32x20" in out


def test_the_lenet_chain_is_printed_row_by_row(capsys):
    out = run_cli(capsys, "convcalc", "--chain", "conv5p2, pool2 conv5,pool2", "--size", "28")
    rows = [line.split() for line in out.splitlines()[1:6]]
    assert rows == [
        ["input", "28x28", "1", "1", "0"],
        ["conv5p2", "28x28", "1", "5", "0"],
        ["pool2", "14x14", "2", "6", "0.5"],
        ["conv5", "10x10", "2", "14", "4.5"],
        ["pool2", "5x5", "4", "16", "5.5"],
    ]


# --- the numbers, against PyTorch's layers ---

SIDE = st.integers(1, 40)
KERNEL = st.integers(1, 7)
STRIDE = st.integers(0, 12).map(lambda v: v and 1 + v % 4)  # 0 (refused) now and then
PADDING = st.integers(0, 4)
DILATION = st.integers(1, 3)


def torch_side_or_none(layer: nn.Module, height: int, width: int) -> tuple[int, int] | None:
    """The layer's output HxW on a real input, or None where PyTorch refuses it."""
    try:
        return tuple(layer(torch.zeros(1, 1, height, width)).shape[-2:])
    except (RuntimeError, ValueError):
        return None


def ours_or_none(**layer) -> tuple[int, int] | None:
    size = layer.pop("size")
    try:
        return apply_layer(make_layer(**layer), size).shape
    except ConfigError:
        return None


def build_or_none(build):
    try:
        return build()
    except (RuntimeError, ValueError):
        return None


@FAST
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@given(
    st.tuples(SIDE, SIDE),
    st.tuples(KERNEL, KERNEL),
    st.tuples(STRIDE, STRIDE),
    st.integers(0, 3).flatmap(lambda v: st.tuples(PADDING, PADDING) if v else st.just("same")),
    st.tuples(DILATION, DILATION),
)
def test_conv_sizes_and_refusals_are_pytorchs(size, kernel, stride, padding, dilation):
    conv = build_or_none(lambda: nn.Conv2d(1, 1, kernel, stride, padding, dilation, bias=False))
    theirs = conv and torch_side_or_none(conv, *size)
    ours = ours_or_none(
        op="conv", size=size, kernel=kernel, stride=stride, padding=padding, dilation=dilation
    )
    assert ours == theirs


@FAST
@given(
    st.sampled_from(["maxpool", "avgpool"]),
    st.tuples(SIDE, SIDE),
    st.tuples(KERNEL, KERNEL),
    st.one_of(st.none(), st.tuples(STRIDE, STRIDE)),
    st.tuples(st.integers(0, 2), st.integers(0, 2)),  # over half the kernel now and then
    st.tuples(DILATION, DILATION),
    st.booleans(),
)
def test_pool_sizes_and_refusals_are_pytorchs(op, size, kernel, stride, padding, dilation, ceil):
    if op == "avgpool":
        dilation = (1, 1)  # nn.AvgPool2d has no dilation to give
        pool = nn.AvgPool2d(kernel, stride, padding, ceil_mode=ceil)
    else:
        pool = nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil)
    theirs = torch_side_or_none(pool, *size)
    ours = ours_or_none(
        op=op, size=size, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
        ceil=ceil,
    )  # fmt: skip
    assert ours == theirs


@FAST
@given(
    st.sampled_from(["conv", "maxpool", "avgpool"]),
    SIDE, KERNEL, STRIDE, PADDING, DILATION, st.booleans(),
)  # fmt: skip
def test_check_layer_refuses_exactly_what_pytorch_refuses(op, size, k, s, p, d, ceil):
    build = {
        "conv": lambda: None if ceil else nn.Conv2d(1, 1, k, s, p, d),  # no ceil mode
        "maxpool": lambda: nn.MaxPool2d(k, s, p, d, ceil_mode=ceil),
        "avgpool": lambda: None if d != 1 else nn.AvgPool2d(k, s, p, ceil_mode=ceil),
    }[op]
    layer = build_or_none(build)
    theirs = layer and torch_side_or_none(layer, size, size)
    try:
        ours = check_layer(op, size, k, s, p, d, ceil)
    except ConfigError as err:
        assert "\n" not in str(err)
        ours = None
    assert ours == (theirs[0] if theirs else None)


@FAST
@given(SIDE, KERNEL, st.integers(1, 4), PADDING, DILATION, st.booleans())
def test_axis_through_agrees_with_output_size(size, kernel, stride, padding, dilation, ceil):
    """The units output_size counts are the windows Axis.through places: the first starts at
    the first padded pixel, the last ends inside the padded input and (floor mode) one more
    would not; in ceil mode (pools: padding at most half the kernel) the last one starts
    inside the input or its left padding."""
    if ceil:
        padding = min(padding, kernel // 2)
    out = output_size(size, kernel, stride, padding, dilation, ceil)
    axis = Axis().through(kernel, stride, padding, dilation)
    assert axis.rf == dilation * (kernel - 1) + 1 and axis.jump == stride
    if out < 1:
        return
    assert axis.bounds(0)[0] == -padding
    if ceil:
        assert axis.bounds(out - 1)[0] < size
        assert out >= output_size(size, kernel, stride, padding, dilation)
    else:
        assert axis.bounds(out - 1)[1] <= size + padding - 1 < axis.bounds(out)[1]


CHAIN_STEP = st.builds(
    lambda op, k, s, p, d: f"{op}{k}s{s}p{min(p, k // 2)}" + (f"d{d}" if op == "conv" else ""),
    st.sampled_from(["conv", "avgpool"]),
    st.integers(1, 5),
    st.integers(1, 3),
    st.integers(0, 2),
    st.integers(1, 2),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(CHAIN_STEP, min_size=1, max_size=3))
def test_chain_fields_are_where_the_gradient_says(steps):
    """With all-ones weights an output unit's gradient is positive exactly on the input pixels
    it sees; its first and last are the ends of the field follow_chain reports (for a unit
    whose field lies inside the image, as dilation leaves holes only inside a field)."""
    try:
        rows = follow_chain(",".join(steps), 40)
    except ConfigError:
        return
    x = torch.ones(1, 1, 40, 40, dtype=torch.float64, requires_grad=True)
    y = x
    for layer in parse_chain(",".join(steps)):
        k, s, p, d = layer.kernel[0], layer.stride[0], layer.padding[0], layer.dilation[0]
        if layer.op == "conv":
            y = nn.functional.conv2d(y, torch.ones(1, 1, k, k, dtype=x.dtype), None, s, p, d)
        else:
            y = nn.functional.avg_pool2d(y, k, s, p)
    last = rows[-1]
    lo, hi = last.start[0] - (last.rf[0] - 1) / 2, last.start[0] + (last.rf[0] - 1) / 2
    units = [i for i in range(last.height) if lo + i * last.jump[0] >= 0]
    units = [i for i in units if hi + i * last.jump[0] <= 39]
    if not units:
        return
    i = units[len(units) // 2]
    y[0, 0, i, i].backward()
    seen = x.grad[0, 0].nonzero()
    assert seen[:, 0].min() == lo + i * last.jump[0]
    assert seen[:, 0].max() == hi + i * last.jump[0]
    assert tuple(y.shape[-2:]) == (last.height, last.width)


def test_lenet_chain_fields_by_hand():
    rows = follow_chain("conv5p2,pool2,conv5,pool2", 28)
    assert [r.step for r in rows] == ["input", "conv5p2", "pool2", "conv5", "pool2"]
    assert [r.rf for r in rows[1:]] == [(5, 5), (6, 6), (14, 14), (16, 16)]
    assert [r.jump for r in rows[1:]] == [(1, 1), (2, 2), (2, 2), (4, 4)]
    assert [r.start for r in rows[1:]] == [(0, 0), (0.5, 0.5), (4.5, 4.5), (5.5, 5.5)]
    assert [(r.height, r.width) for r in rows] == [(28, 28), (28, 28), (14, 14), (10, 10), (5, 5)]


def test_chain_steps_take_options_in_any_order_and_per_axis():
    layer = parse_chain("conv3x5d2s2p1x2")[0]
    assert (layer.kernel, layer.stride, layer.padding, layer.dilation) == (
        (3, 5), (2, 2), (1, 2), (2, 2),
    )  # fmt: skip
    pool, avg, same = parse_chain("pool3s2c avgpool2 conv4psame")
    assert (pool.op, pool.stride, pool.ceil) == ("maxpool", (2, 2), True)
    assert (avg.op, avg.stride, avg.ceil) == ("avgpool", (2, 2), False)
    assert same.padding == "same"
    rows = follow_chain([same], (9, 10))
    assert (rows[-1].height, rows[-1].width, rows[-1].start) == (9, 10, (0.5, 0.5))


@pytest.mark.parametrize(
    "chain, message",
    [
        ("conv5,conv5,conv5", "chain step 3 (conv5)"),
        ("conv5,pol2", "chain step 2 'pol2' is not a layer"),
        ("conv5s2s2", "chain step 1 'conv5s2s2' is not a layer"),
        ("conv3s2psame", "chain step 1 (conv3s2psame): padding same needs stride 1"),
        ("pool3p2", "chain step 1 (pool3p2): padding 2 is more than half the kernel"),
        (" , ", "--chain is empty"),
    ],
)
def test_a_bad_chain_names_its_step(chain, message):
    with pytest.raises(ConfigError, match=r"^" + message.replace("(", r"\(").replace(")", r"\)")):
        follow_chain(chain, 10)


@pytest.mark.parametrize(
    "text, counts, expected",
    [("32", (1, 2), (32,)), ("28x32", (1, 2), (28, 32)), ("3×32X32", (3,), (3, 32, 32))],
)
def test_sizes_parse_with_any_times_sign(text, counts, expected):
    assert parse_dims(text, "--size", counts) == expected


@pytest.mark.parametrize("text", ["3x", "x3", "", "3.5", "-1", "3x3x3", "a"])
def test_a_malformed_size_is_one_line(text):
    with pytest.raises(ConfigError, match="--size expects a whole number or HxW"):
        parse_dims(text, "--size")


# --- params ---


def test_params_of_the_seed_case_with_the_seeds_slips(capsys):
    p = compare_params()
    assert (p.conv_weights, p.conv_biases, p.conv_per_unit) == (432, 16, 27)
    assert (p.fc_per_unit, p.fc_units, p.fc_weights) == (3072, 16 * 32 * 32, 50_331_648)
    out = run_cli(capsys, "params")
    for number in ("432", "3,072", "50,331,648", "16,384", "116,508×"):
        assert number in out
    assert "seed 000 writes 16*3*3*3=1728 and 3*32*32=9216" in out
    assert "the products are 432 and 3,072" in out


def test_params_elsewhere_say_nothing_of_the_seed(capsys):
    out = run_cli(capsys, "params", "--in", "3x32x32", "--out-channels", "8")
    assert "seed 000" not in out


@pytest.mark.parametrize(
    "in_shape, out_channels, kernel, stride, padding",
    [((2, 9, 13), 5, (3, 5), 2, 1), ((1, 28, 28), 6, (5, 5), 1, "same"), ((4, 7, 6), 3, 2, 3, 0)],
)
def test_params_are_the_real_layers_counts(capsys, in_shape, out_channels, kernel, stride, padding):
    c, h, w = in_shape
    with torch.device("meta"):
        conv = nn.Conv2d(c, out_channels, kernel, stride, padding)
        out_h, out_w = conv(torch.zeros(1, c, h, w)).shape[-2:]
        fc = nn.Linear(c * h * w, out_channels * out_h * out_w)
    p = compare_params("x".join(map(str, in_shape)), out_channels, kernel, stride, padding)
    assert (p.conv_weights, p.conv_biases) == (conv.weight.numel(), conv.bias.numel())
    assert (p.fc_weights, p.fc_biases) == (fc.weight.numel(), fc.bias.numel())
    assert p.conv.shape == (out_h, out_w)
    assert p.conv_per_unit == conv.weight[0].numel() and p.fc_per_unit == fc.weight[0].numel()
    argv = ["params", "--in", "x".join(map(str, in_shape)), "--out-channels", str(out_channels)]
    argv += ["--kernel", "x".join(map(str, kernel)) if isinstance(kernel, tuple) else str(kernel)]
    out = run_cli(capsys, *argv, "--stride", str(stride), "--padding", str(padding))
    assert f"{fc.weight.numel():,}" in out and f"= {conv.weight.numel():,}" in out


def test_chain_of_a_model_name_follows_its_real_layers(capsys):
    assert main(["convcalc", "--chain", "conv5p2,pool2,conv5,pool2", "--size", "28"]) == 0
    by_hand = capsys.readouterr().out.splitlines()
    assert main(["convcalc", "--chain", "lenet"]) == 0
    from_model = capsys.readouterr().out.splitlines()
    numbers = lambda lines: [line.split()[-4:] for line in lines[1:6]]  # noqa: E731
    assert numbers(from_model) == numbers(by_hand)
    assert from_model[2].split()[:2] == ["0", "conv2d"]  # the module and the function
