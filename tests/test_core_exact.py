"""The training core's small pieces against plain torch written here: the fast CPU ops
(fast_ops.py: which layers they take, and their numbers on odd shapes), the CPU slices
(cpu_split.py: how many, which models, one thread each) and the loss and schedules (optim.py)."""

from __future__ import annotations

import os
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.training.cpu_split import SplitStep, can_split, default_slices
from cnnlab.training.fast_ops import FastAvgPool2d, FastConv2d, use_fast_cpu_ops
from cnnlab.training.optim import make_loss, make_optimizer, make_scheduler, steps_per_batch

# --- fast_ops.py: which layers are swapped -------------------------------------------------------


class MyPool(nn.AvgPool2d):
    """A subclass may have a forward of its own: never swapped."""


class MyConv(nn.Conv2d):
    """A subclass may have a forward of its own: never swapped."""


# the layers are built anew for each run: use_fast_cpu_ops changes the class of those it takes
LAYERS = [
    pytest.param(lambda: nn.AvgPool2d(2), True, id="AvgPool2d(2)"),  # stride: the kernel size
    pytest.param(lambda: nn.AvgPool2d((2, 2), (2, 2), 0), True, id="AvgPool2d((2, 2), (2, 2), 0)"),
    pytest.param(lambda: nn.AvgPool2d(2, 2, padding=1), False, id="AvgPool2d(2, 2, padding=1)"),
    pytest.param(
        lambda: nn.AvgPool2d(2, 2, divisor_override=3),
        False,
        id="AvgPool2d(2, 2, divisor_override=3)",
    ),
    # without padding, count_include_pad changes nothing
    pytest.param(
        lambda: nn.AvgPool2d(2, 2, count_include_pad=False),
        True,
        id="AvgPool2d(2, 2, count_include_pad=False)",
    ),
    pytest.param(lambda: MyPool(2, 2), False, id="MyPool(2, 2)"),
    pytest.param(lambda: nn.MaxPool2d(2, 2), False, id="MaxPool2d(2, 2)"),
    pytest.param(lambda: nn.Conv2d(1, 4, 3), True, id="Conv2d(1, 4, 3)"),
    pytest.param(
        lambda: nn.Conv2d(1, 4, (3, 5), padding=(1, 2), bias=False),
        True,
        id="Conv2d(1, 4, (3, 5), padding=(1, 2), bias=False)",
    ),
    pytest.param(lambda: nn.Conv2d(1, 4, 3, stride=2), False, id="Conv2d(1, 4, 3, stride=2)"),
    pytest.param(lambda: nn.Conv2d(1, 4, 3, dilation=2), False, id="Conv2d(1, 4, 3, dilation=2)"),
    pytest.param(
        lambda: nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect"),
        False,
        id='Conv2d(1, 4, 3, padding=1, padding_mode="reflect")',
    ),
    pytest.param(
        lambda: nn.Conv2d(1, 4, 3, padding="same"), False, id='Conv2d(1, 4, 3, padding="same")'
    ),
    pytest.param(lambda: nn.Conv2d(2, 4, 3), False, id="Conv2d(2, 4, 3)"),
    pytest.param(lambda: nn.Conv2d(2, 2, 3, groups=2), False, id="Conv2d(2, 2, 3, groups=2)"),
    pytest.param(lambda: MyConv(1, 4, 3), False, id="MyConv(1, 4, 3)"),
]


@pytest.mark.parametrize(("make", "swapped"), LAYERS)
def test_only_layers_the_fast_forms_compute_exactly_are_swapped(make, swapped):
    """A fast form takes a layer only when its arithmetic is the layer's (2×2/2 pool, 1-channel
    stride-1 zero-padded conv); anything else keeps its own class and forward."""
    layer = make()
    kind = type(layer)
    assert use_fast_cpu_ops(nn.Sequential(layer)) == (["0"] if swapped else [])
    if swapped:
        assert type(layer) in (FastAvgPool2d, FastConv2d) and isinstance(layer, kind)
    else:
        assert type(layer) is kind


# --- fast_ops.py: the numbers ------------------------------------------------------------------


def backward_name(out: torch.Tensor) -> str:
    return type(out.grad_fn).__name__


@pytest.mark.parametrize(
    "shape", [(2, 3, 7, 8), (2, 3, 8, 9), (3, 7, 9), (1, 1, 3, 2), (2, 2, 5, 5)]
)
def test_fast_pool_runs_its_own_op_and_matches_avg_pool2d_on_odd_sides(shape):
    """Only one side odd, or an unbatched odd input: the dropped row/column gets a zero
    gradient, everything else a quarter of its window's, bit for bit as avg_pool2d."""
    torch.manual_seed(0)
    pool = nn.AvgPool2d(2, 2)
    assert use_fast_cpu_ops(nn.Sequential(pool)) == ["0"]
    x = torch.randn(shape) * 3
    x_fast, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    fast, ref = pool(x_fast), F.avg_pool2d(x_ref, 2, 2)
    assert backward_name(fast) == "_AvgPool2x2Backward"  # the strided adds, not torch's kernel
    assert fast.shape == ref.shape and torch.equal(fast, ref)
    grad = torch.randn_like(ref)
    fast.backward(grad)
    ref.backward(grad)
    assert torch.equal(x_fast.grad, x_ref.grad)


def conv_pair(out_channels: int, kernel, padding, bias: bool) -> tuple[nn.Conv2d, nn.Conv2d]:
    """A fast 1-channel conv and a plain one with the same weights."""
    torch.manual_seed(1)
    ref = nn.Conv2d(1, out_channels, kernel, padding=padding, bias=bias)
    fast = nn.Conv2d(1, out_channels, kernel, padding=padding, bias=bias)
    fast.load_state_dict(ref.state_dict())
    assert use_fast_cpu_ops(nn.Sequential(fast)) == ["0"]
    return fast, ref


@pytest.mark.parametrize(
    ("batch", "size", "kernel", "padding", "bias"),
    [
        (1, (9, 11), 3, 1, True),  # one example: batch-as-channels has one channel
        (1, (6, 6), (2, 3), 0, False),
        (3, (7, 10), (3, 5), (2, 1), True),
        (5, (8, 8), 3, 0, False),
    ],
)
def test_one_channel_conv_gradients_equal_conv2d_autograd(batch, size, kernel, padding, bias):
    """Weight, bias and input gradients of the fast conv are F.conv2d's, for a batch of one,
    rectangular kernels and inputs, and uneven padding; the weight gradient keeps its strides."""
    fast, ref = conv_pair(4, kernel, padding, bias)
    x = torch.randn(batch, 1, *size)
    x_fast, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = fast(x_fast)
    expected = F.conv2d(x_ref, ref.weight, ref.bias, padding=padding)
    assert backward_name(out) == "_OneChannelConvBackward"
    assert torch.equal(out, expected)
    grad = torch.randn_like(expected)
    out.backward(grad)
    expected.backward(grad)
    scale = ref.weight.grad.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad, rtol=0, atol=1e-5 * scale)
    assert fast.weight.grad.stride() == fast.weight.stride()
    assert torch.equal(x_fast.grad, x_ref.grad)
    if bias:
        torch.testing.assert_close(fast.bias.grad, ref.bias.grad, rtol=1e-5, atol=1e-5)


def test_one_channel_conv_with_a_frozen_bias_trains_the_weight_alone():
    """A frozen bias gets no gradient; the weight's is still conv2d's."""
    fast, ref = conv_pair(3, 3, 1, bias=True)
    for conv in (fast, ref):
        conv.bias.requires_grad_(False)
    x = torch.randn(4, 1, 6, 7)
    out = fast(x)
    assert backward_name(out) == "_OneChannelConvBackward"
    out.square().sum().backward()
    ref(x).square().sum().backward()
    assert fast.bias.grad is None
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)


def test_one_channel_conv_on_an_empty_batch_gives_zero_weight_and_bias_gradients():
    """A torchrun process's empty part still has gradients to all-reduce: zeros, not None."""
    fast, _ = conv_pair(3, 3, 1, bias=True)
    out = fast(torch.zeros(0, 1, 6, 6))
    assert out.shape == (0, 3, 6, 6)
    out.sum().backward()
    assert torch.equal(fast.weight.grad, torch.zeros_like(fast.weight))
    assert torch.equal(fast.bias.grad, torch.zeros_like(fast.bias))


def test_fast_conv_takes_an_unbatched_input_through_torchs_conv():
    """A (1, H, W) input is not the fast form's case: torch's conv, torch's gradients."""
    fast, ref = conv_pair(2, 3, 0, bias=True)
    x = torch.randn(1, 7, 7)
    out = fast(x)
    assert "OneChannel" not in backward_name(out)
    assert torch.equal(out, ref(x))
    out.sum().backward()
    ref(x).sum().backward()
    assert torch.equal(fast.weight.grad, ref.weight.grad)


# --- cpu_split.py ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("affinity", "cpu_count", "deterministic", "expected"),
    [
        (5, 64, False, 5),  # the cores this process may use, not the machine's
        (12, 64, False, 8),  # at most 8
        (1, 64, False, 1),
        (5, 64, True, 2),  # bit-exact reruns: two slices
        (None, 3, False, 3),  # no sched_getaffinity (macOS, Windows): the machine's count
        (None, None, False, 1),  # cpu_count unknown
        (None, None, True, 2),
    ],
)
def test_default_slices_is_one_per_usable_core_up_to_8(
    monkeypatch, affinity, cpu_count, deterministic, expected
):
    """One slice per core the process may run on, 1-8, or 2 for --deterministic."""
    if affinity is None:
        monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    else:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)))
    monkeypatch.setattr(os, "cpu_count", lambda: cpu_count)
    assert default_slices(deterministic) == expected


@pytest.mark.parametrize(
    ("layer", "splits"),
    [
        (nn.ReLU(), True),
        (nn.MaxPool2d(2), True),
        (nn.BatchNorm2d(4), False),
        (nn.BatchNorm1d(4), False),
        (nn.Dropout(0.5), False),
        (nn.Dropout2d(0.5), False),
        (nn.GroupNorm(2, 4), False),
        (nn.LayerNorm([4, 6, 6]), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else str(v),
)
def test_can_split_refuses_models_whose_step_depends_on_the_whole_batch_or_the_rng(layer, splits):
    """Batch statistics (per slice) and dropout (threads racing for the RNG) rule slicing out,
    also deep inside a model."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sequential(nn.Identity(), layer), nn.Flatten())
    assert can_split(model) is splits


class Rendezvous(nn.Module):
    """A model whose forward waits until every slice is in it at once, and notes the thread."""

    def __init__(self, parties: int):
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)
        self.threads: set[str] = set()
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.threads.add(threading.current_thread().name)
        self.barrier.wait()  # breaks (an error) unless `parties` slices run side by side
        return self.linear(x)


@pytest.mark.parametrize("slices", [2, 8])
def test_every_slice_runs_at_the_same_time_in_a_thread_of_its_own(slices):
    """One thread per slice, all at once (8 slices on a 2-core machine too): the step's
    parallelism is the thread pool's size. The threads are named for profilers and stack dumps."""
    model = Rendezvous(slices)
    split = SplitStep(model, nn.CrossEntropyLoss(), slices)
    try:
        x, y = torch.randn(2 * slices, 3), torch.randint(0, 2, (2 * slices,))
        logits, loss = split.forward_backward(x, y)
        assert len(model.threads) == slices
        assert all(name.startswith("cnnlab-slice_") for name in model.threads), model.threads
        assert threading.current_thread().name not in model.threads
        # each slice's rows exactly as the layer gives them for that slice (a 16-row matmul
        # may round differently from eight 2-row ones)
        by_slice = torch.cat([model.linear(part) for part in x.tensor_split(slices)])
        torch.testing.assert_close(logits, by_slice, rtol=0, atol=0)
        assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    finally:
        split.close()


def test_sliced_inference_is_the_models_output_in_batch_order():
    """SplitStep.forward (evaluation) gives the whole batch's logits, with no autograd graph."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3), nn.Tanh())
    split = SplitStep(model, nn.CrossEntropyLoss(), 3)
    try:
        x = torch.randn(7, 5)
        out = split.forward(x)
    finally:
        split.close()
    assert torch.equal(out, model(x).detach())
    assert out.grad_fn is None and not out.requires_grad


class UnweightedLoss(nn.Module):
    """A loss with no `weight` attribute at all (CrossEntropyLoss has one, set to None)."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)


def test_a_loss_without_class_weights_weighs_each_part_by_its_count():
    """Any loss module may be split, whether or not it has a `weight`: each slice, and each
    torchrun process, counts by its number of examples (share = n_part / n_batch)."""
    from types import SimpleNamespace

    from cnnlab.training.cpu_split import loss_weight
    from cnnlab.training.distributed import ShardStep

    labels = torch.tensor([0, 1, 1])
    assert loss_weight(UnweightedLoss(), labels) == 3
    assert loss_weight(nn.CrossEntropyLoss(), labels) == 3
    shard = SimpleNamespace(loss_fn=UnweightedLoss(), loader=SimpleNamespace(batch_total=8))
    assert ShardStep.share(shard, labels) == 3 / 8
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    split = SplitStep(model, UnweightedLoss(), 2)
    try:
        x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
        _, loss = split.forward_backward(x, y)
        assert loss.item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-6)
    finally:
        split.close()


# --- optim.py ----------------------------------------------------------------------------------


def weighted_smoothed_cross_entropy(logits, labels, weight, smoothing):
    """torch's documented mean: Σ_i [(1-ε) w_yi (-log p_iyi) + ε/C Σ_c w_c (-log p_ic)] / Σ_i w_yi,
    in float64."""
    log_p = logits.double().log_softmax(1)
    w = weight.double()
    classes = logits.shape[1]
    nll = -(w[labels] * log_p.gather(1, labels[:, None])[:, 0])
    smooth = -(log_p * w).sum(1)
    return (((1 - smoothing) * nll + smoothing / classes * smooth).sum() / w[labels].sum()).item()


def test_make_loss_is_cross_entropy_with_the_class_weights_and_label_smoothing():
    """The loss a run minimizes: weighted (whole-number weights are fine too), smoothed."""
    torch.manual_seed(0)
    logits, labels = torch.randn(9, 3), torch.tensor([0, 1, 2, 2, 1, 0, 2, 2, 1])
    cfg = TrainConfig(class_weights=[1, 2, 4], label_smoothing=0.2)
    loss_fn = make_loss(cfg, 3, torch.device("cpu"))
    expected = weighted_smoothed_cross_entropy(logits, labels, torch.tensor([1, 2, 4]), 0.2)
    assert loss_fn(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    plain = make_loss(TrainConfig(), 3, torch.device("cpu"))
    uniform = weighted_smoothed_cross_entropy(logits, labels, torch.ones(3), 0.0)
    assert plain(logits, labels).item() == pytest.approx(uniform, rel=1e-6)
    assert uniform != pytest.approx(expected, rel=1e-3)  # the settings matter here


def test_make_loss_refuses_a_weight_count_other_than_the_class_count():
    """One weight per class, or a clear error before training."""
    with pytest.raises(ConfigError, match=r"class_weights has 2 values .* has 3 classes"):
        make_loss(TrainConfig(class_weights=[1.0, 2.0]), 3, torch.device("cpu"))


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"optimizer": "sgd", "momentum": 0.9}, "momentum"),
        ({"optimizer": "rmsprop", "momentum": 0.5}, "momentum"),
        ({"optimizer": "adam", "betas": (0.8, 0.99)}, "betas"),
        ({"optimizer": "adamw"}, "betas"),
        ({"optimizer": "adagrad"}, None),
        ({"optimizer": "adadelta"}, None),
        ({"optimizer": "sgd"}, None),  # momentum 0 stays 0 (torch's OneCycleLR would set 0.95)
        ({"optimizer": "rmsprop"}, None),
    ],
    ids=lambda v: v.get("optimizer") if isinstance(v, dict) else str(v),
)
def test_onecycle_is_torchs_onecycle_and_cycles_momentum_where_there_is_one(settings, field):
    """lr (peak --lr) and momentum or beta1 follow torch's OneCycleLR step by step; optimizers
    without momentum, or with a momentum of 0, have none cycled."""
    cfg = TrainConfig(lr=0.3, scheduler="onecycle", epochs=2, **settings)
    assert steps_per_batch(cfg)
    model = nn.Linear(3, 2)
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer, batches_per_epoch=5)
    twin = make_optimizer(cfg, nn.Linear(3, 2))
    expected = torch.optim.lr_scheduler.OneCycleLR(
        twin, max_lr=0.3, epochs=2, steps_per_epoch=5, cycle_momentum=field is not None
    )
    seen = []
    for _ in range(10):
        group, want = optimizer.param_groups[0], twin.param_groups[0]
        assert group["lr"] == pytest.approx(want["lr"])
        assert group.get("momentum") == want.get("momentum")
        assert group.get("betas") == want.get("betas")
        seen.append(group[field] if field else None)
        optimizer.step()
        scheduler.step()
        twin.step()
        expected.step()
    if field is not None:
        assert len({repr(v) for v in seen}) > 1  # it moved
    else:
        assert optimizer.param_groups[0].get("momentum", 0) == 0


@pytest.mark.parametrize("kind", ["none", "step", "cosine"])
def test_only_onecycle_steps_every_batch(kind):
    """The other schedules (or none) step once per epoch."""
    assert not steps_per_batch(TrainConfig(scheduler=kind))


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        ({"optimizer": "sgd", "eps": 1e-8}, "--eps"),
        ({"optimizer": "lbfgs", "weight_decay": 0.1}, "--weight-decay"),
        ({"optimizer": "lbfgs", "backbone_lr_scale": 0.5}, "--backbone-lr-scale"),
    ],
)
def test_a_setting_the_optimizer_lacks_is_refused_naming_the_flag_to_remove(settings, flag):
    """The error names the command-line flag (dashes, not the field's underscores)."""
    with pytest.raises(ConfigError) as info:
        make_optimizer(TrainConfig(**settings), nn.Linear(3, 2), 2)
    message = str(info.value)
    assert message.startswith(settings["optimizer"] + " ")  # what the complaint is about first
    assert f"remove {flag} " in message and message.endswith("or choose another optimizer")


def test_fine_tuning_groups_need_the_class_count_to_find_the_head():
    """Without num_classes the head cannot be told from the backbone: a TypeError that says so,
    not a wrong split."""
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(TypeError, match=r"^make_optimizer needs num_classes to tell the head"):
        make_optimizer(TrainConfig(freeze_backbone=True), model)
    head, backbone = make_optimizer(TrainConfig(freeze_backbone=True), model, 2).param_groups
    assert [id(p) for p in head["params"]] == [id(p) for p in model[2].parameters()]
    assert [id(p) for p in backbone["params"]] == [id(p) for p in model[0].parameters()]
