"""Receptive fields' rules and tracer, in detail (inspect/field_rules.py's propagate,
_pointwise, function_name and tensors_in; receptive.py's trace and _Tracker): which rule each
traced function gets (batch norm in training or not, layer norm, max and min of two maps,
concat, swapaxes, operators written with the tensor on the right), element-wise functions of
two maps whose spatial dimensions differ, broadcasts that stretch a one-row map, unknown
functions counted, and what a Trace records: each call's module, name and order, each conv or
pool's module, `direct` and order, outputs kept only when asked.

Like test_receptive_details.py, each test traces a tiny forward on one small random map
(1x2x5x6) and compares what trace reports with what is worked out by hand: the input's units
each see one pixel (Axis()), and a map that mixes an axis gives every unit all of it (`whole`).
So the file takes milliseconds; test_receptive_fields.py proves the rules against autograd.
Each test exists because docs/TESTING.md's mutation run showed the path untested (a survivor
of `mutmut run "cnnlab.inspect*"`).
"""

from __future__ import annotations

import functools
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.arithmetic import Axis
from cnnlab.inspect.field_rules import Field, function_name
from cnnlab.inspect.receptive import trace
from traced import HEIGHT, MIXED, PIXEL, WIDTH, Lambda, field_of, images, whole

KEPT = Field(PIXEL, PIXEL, (-2, -1))


# --- which rule a function gets ---


def test_batch_norm_in_training_mixes_the_map_and_in_eval_keeps_it():
    # F.batch_norm hands `training` to the tracer by keyword
    norm = nn.BatchNorm2d(2)
    assert field_of(None, norm.train()) == MIXED  # the batch statistics of every position
    assert field_of(None, norm.eval()) == KEPT  # running statistics: element-wise


@pytest.mark.parametrize("training, expected", [(True, MIXED), (False, KEPT)])
def test_torch_batch_norm_reads_training_by_position(training, expected):
    # torch.batch_norm(input, weight, bias, mean, var, training, momentum, eps, cudnn): all
    # by position, and momentum (the next one) is truthy: it must not be read as training
    mean, var = torch.zeros(2), torch.ones(2)

    def norm(x):
        return torch.batch_norm(x, None, None, mean, var, training, 0.1, 1e-5, False)

    assert field_of(norm) == expected


@pytest.mark.parametrize(
    "norm, expected",
    [
        (lambda x: F.layer_norm(x, (2, HEIGHT, WIDTH)), MIXED),
        (lambda x: F.layer_norm(x, (WIDTH,)), Field(PIXEL, whole(WIDTH), (-2, None))),
        # an (H, W) map normalised over W: H is the first dimension, and stays apart
        (lambda x: F.layer_norm(x[0, 0], (WIDTH,)), Field(PIXEL, whole(WIDTH), (-2, None))),
    ],
    ids=["over C, H, W", "over W", "over W of a 2-D map"],
)
def test_layer_norm_mixes_the_dimensions_it_normalises(norm, expected):
    assert field_of(norm) == expected


@pytest.mark.parametrize(
    "both",
    [lambda x: torch.max(x, -x), lambda x: torch.min(x, -x), lambda x: x.max(-x)],
    ids=["max", "min", "method"],
)
def test_max_and_min_of_two_maps_are_element_wise(both):
    assert field_of(both) == KEPT


def test_max_over_the_width_mixes_only_the_width():
    # one tracked tensor: a reduction, not the element-wise max of two maps
    field = field_of(lambda x: x.max(3, keepdim=True))
    assert field == Field(PIXEL, whole(WIDTH), (-2, None))


@pytest.mark.parametrize(
    "join",
    [
        lambda x: torch.concat([x, x], 1),
        lambda x: torch.concatenate([x, x], 1),
        lambda x: torch.swapaxes(x, 1, 3).swapaxes(3, 1),
    ],
    ids=["concat", "concatenate", "swapaxes"],
)
def test_the_other_names_of_cat_and_transpose_are_followed(join):
    assert field_of(join) == KEPT


@pytest.mark.parametrize(
    "right",
    [lambda x: 2 / x, lambda x: 2**x, lambda x: 2 // (x + 9), lambda x: 2 % x, lambda x: 2 - x],
    ids=["__rdiv__", "__rpow__", "__rfloordiv__", "__rmod__", "__rsub__"],
)
def test_operators_with_the_map_on_the_right_are_element_wise(right):
    # torch hands these to the tracer as Tensor.__rdiv__ and so on
    assert field_of(right) == KEPT


@pytest.mark.parametrize(
    "func, name",
    [
        (torch.Tensor.__rdiv__, "div"),
        (torch.Tensor.__iand__, "and"),
        (torch.Tensor.__ior__, "or"),
        (torch.Tensor.add_, "add"),
        (torch.Tensor.__getitem__, "getitem"),
        # not arithmetic: the leading i or r is part of the name
        (torch.Tensor.__invert__, "invert"),
        (torch.Tensor.__irshift__, "irshift"),
        (torch.Tensor.__rrshift__, "rrshift"),
        (functools.partial(torch.relu), ""),  # no __name__ at all
    ],
)
def test_function_names(func, name):
    # the name picks the rule, and names the function in Trace.unknown
    assert function_name(func) == name


def test_an_unknown_function_is_counted_each_time():
    result = trace(Lambda(lambda x: x.cumsum(3).cumsum(2)), images())
    assert result.unknown == Counter(cumsum=2)
    assert result.calls[-1].field == MIXED  # an overestimate, never an underestimate


# --- element-wise functions of two maps ---


def test_a_map_plus_its_column_maxima_sees_its_whole_column():
    # the row-pooled operand comes first: its height is gone, the other operand's is not
    field = field_of(lambda x: x.amax(2, keepdim=True) + x)
    assert field == Field(whole(HEIGHT), PIXEL, (-2, -1))


def test_a_2d_map_plus_its_column_means_sees_its_whole_column():
    # (H, W): the height is the output's first dimension, which is still the height
    field = field_of(lambda x: x[0, 0] + x[0, 0].mean(0, keepdim=True))
    assert field == Field(whole(HEIGHT), PIXEL, (-2, -1))


def test_two_globally_pooled_vectors_see_the_whole_map():
    assert field_of(lambda x: x.mean((2, 3)) * x.amax((2, 3))) == MIXED


def test_maps_whose_spatial_dimensions_differ_mix_the_map():
    # (1, 1, H, W) + (1, H, 1, W): the height of one is the other's channel-like dimension,
    # which is not followed: every unit gets the whole map (an overestimate)
    def add(x):
        a = x[:, :1]
        return a + a.transpose(1, 2)

    assert field_of(add) == MIXED


def test_a_one_row_map_stretched_by_a_broadcast_repeats_its_field():
    # pooled to one row (rows 0-4), then broadcast back to 5 rows: every row sees rows 0-4,
    # not rows 5-9, 10-14... as the pool's stride would say
    field = field_of(lambda x: F.max_pool2d(x, (HEIGHT, 1)) + torch.zeros(HEIGHT, 1))
    assert field == Field(whole(HEIGHT), PIXEL, (None, -1))


# --- what a Trace records ---


class Net(nn.Module):
    """A conv layer, a pool called in the model's own forward, an activation layer, and a
    probe whose output holds no tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.probe = Lambda(lambda x: tuple(x.shape))
        self.act = nn.ReLU()

    def forward(self, x):
        self.probe(x)
        return self.act(F.max_pool2d(self.conv(x), 2))


def test_a_trace_records_each_call_and_each_spatial_op_in_call_order():
    net = Net()
    result = trace(net, images())
    assert result.input_shape == (1, 2, HEIGHT, WIDTH)
    # orders: net enters 1, probe 2, conv 3, the pool in net's own forward 4, act 5
    calls = [(call.module, call.name, call.order) for call in result.calls]
    assert calls == [(net.probe, "probe", 2), (net.conv, "conv", 3), (net.act, "act", 5),
                     (net, "", 1)]  # fmt: skip
    # a call returns its output's field; the probe's output holds no tensor
    assert [call.field is None for call in result.calls] == [True, False, False, False]
    # the conv is the body of nn.Conv2d (no order of its own); the pool is a layer of its own
    ops = [(op.kind, op.module, op.direct, op.order, op.shape) for op in result.ops]
    assert ops == [("conv2d", "conv", False, 0, (1, 3, HEIGHT, WIDTH)),
                   ("max_pool2d", "", True, 4, (1, 3, 2, 3))]  # fmt: skip


def test_outputs_are_kept_only_when_asked():
    net = Net()
    result = trace(net, images())
    assert [call.output for call in result.calls] == [None] * 4
    assert [op.output for op in result.ops] == [None] * 2
    kept = trace(net, images(), keep_outputs=True)
    assert [op.output.shape for op in kept.ops] == [op.shape for op in result.ops]
    assert [call.output is None for call in kept.calls] == [True, False, False, False]


def test_a_pool_in_a_forward_pre_hook_runs_outside_every_module():
    # the user's hook runs before the tracer's: no module is running yet
    net = nn.Sequential(nn.Conv2d(2, 2, 1))
    net.register_forward_pre_hook(lambda module, args: (F.avg_pool2d(args[0], 2),))
    result = trace(net, images())
    op = result.ops[0]
    assert (op.kind, op.module, op.direct, op.order) == ("avg_pool2d", "", False, 0)
    assert op.field == Field(Axis(rf=2, jump=2, start=0.5), Axis(rf=2, jump=2, start=0.5))


def test_a_map_given_by_keyword_is_followed_as_one_given_by_position():
    """The tracer finds the map among the keyword arguments too (F.avg_pool2d(input=x))."""
    by_position = field_of(lambda x: F.avg_pool2d(x, 3, 1, 1))
    by_keyword = field_of(lambda x: F.avg_pool2d(input=x, kernel_size=3, stride=1, padding=1))
    assert by_keyword == by_position
    assert by_position.height.rf == by_position.width.rf == 3
