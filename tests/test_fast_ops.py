"""The fast CPU forms in training/fast_ops.py give torch's numbers (see that module for why)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models import create_model
from cnnlab.training.fast_ops import FastAvgPool2d, FastConv2d, use_fast_cpu_ops
from helpers import write_learnable_npz


@pytest.mark.parametrize("shape", [(4, 6, 28, 28), (3, 16, 10, 10), (2, 3, 7, 9), (5, 8, 8)])
def test_avg_pool_2x2_is_bit_identical_forward_and_backward(shape):
    x = torch.randn(shape, dtype=torch.float32) * 3
    x_ref, x_fast = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = nn.AvgPool2d(2, 2)(x_ref)
    fast = FastAvgPool2d(2, 2)(x_fast)
    assert fast.shape == ref.shape
    assert torch.equal(fast, ref)
    grad = torch.randn_like(ref)
    ref.backward(grad)
    fast.backward(grad)
    assert torch.equal(x_fast.grad, x_ref.grad)


@pytest.mark.parametrize(
    "pool", [nn.AvgPool2d(3, 2), nn.AvgPool2d(2, 1), nn.AvgPool2d(2, 2, ceil_mode=True)]
)
def test_other_pools_keep_torchs_kernel(pool):
    model = nn.Sequential(pool)
    assert use_fast_cpu_ops(model) == []
    assert type(model[0]) is nn.AvgPool2d


@pytest.mark.parametrize("padding", [0, 2, (1, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_one_channel_conv_gradients_match_torch(padding, bias):
    torch.manual_seed(0)
    ref_conv = nn.Conv2d(1, 6, 5, padding=padding, bias=bias)
    fast_conv = nn.Conv2d(1, 6, 5, padding=padding, bias=bias)
    fast_conv.load_state_dict(ref_conv.state_dict())
    assert use_fast_cpu_ops(nn.Sequential(fast_conv)) == ["0"]
    assert isinstance(fast_conv, FastConv2d)
    x = torch.randn(7, 1, 12, 12)
    x_ref, x_fast = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref, fast = ref_conv(x_ref), fast_conv(x_fast)
    assert torch.equal(fast, ref)  # the forward is torch's own
    grad = torch.randn_like(ref)
    ref.backward(grad)
    fast.backward(grad)
    # the weight gradient is the same sum (~1000 terms) in another order: equal up to rounding
    scale = ref_conv.weight.grad.abs().max().item()
    torch.testing.assert_close(
        fast_conv.weight.grad, ref_conv.weight.grad, rtol=0, atol=1e-5 * scale
    )
    assert not torch.equal(fast_conv.weight.grad, torch.zeros_like(fast_conv.weight))
    assert torch.equal(x_fast.grad, x_ref.grad)  # the input gradient is torch's own
    if bias:  # a plain sum over batch and positions
        torch.testing.assert_close(fast_conv.bias.grad, ref_conv.bias.grad, rtol=1e-5, atol=1e-5)


def test_lenet_step_with_fast_ops_matches_plain_step():
    torch.manual_seed(0)
    plain = create_model("lenet", num_classes=10, in_channels=1, init="xavier")
    fast = create_model("lenet", num_classes=10, in_channels=1, init="xavier")
    fast.load_state_dict(plain.state_dict())
    assert use_fast_cpu_ops(fast) == ["0", "2", "5"]  # conv1 and both pools
    assert fast.state_dict().keys() == plain.state_dict().keys()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    for model in (plain, fast):
        F.cross_entropy(model(x), y).backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_evaluation_and_frozen_weights_use_torchs_conv():
    conv = nn.Conv2d(1, 4, 3)
    use_fast_cpu_ops(nn.Sequential(conv))
    x = torch.randn(2, 1, 8, 8)
    with torch.inference_mode():
        assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias))
    conv.weight.requires_grad_(False)
    out = conv(x)
    assert out.grad_fn is not None and "OneChannel" not in type(out.grad_fn).__name__


def test_multi_channel_convs_are_left_alone():
    model = create_model("cifar10_cnn", num_classes=10, in_channels=3)
    assert use_fast_cpu_ops(model) == []
    assert not any(isinstance(m, FastConv2d | FastAvgPool2d) for m in model.modules())


@pytest.mark.parametrize("fast", [True, False])
def test_cpu_training_uses_the_fast_forms_unless_switched_off(tmp_path, fast):
    import cnnlab

    data = "npz:" + str(write_learnable_npz(tmp_path / "data", train=64, test=32))
    result = cnnlab.train(
        model="lenet",
        dataset=data,
        epochs=1,
        batch_size=32,
        device="cpu",
        fast_cpu_ops=fast,
        out_dir=str(tmp_path / "runs"),
        progress="none",
        tensorboard=False,
    )
    kinds = {type(m) for m in result.model.modules()}
    assert (FastConv2d in kinds and FastAvgPool2d in kinds) is fast
    assert (nn.Conv2d in kinds) is True  # LeNet's second conv has 6 input channels
    assert (result.run_dir / "last.pt").exists()


# One process per setting (mallopt is process-wide and cannot be undone). 200 tensors, 1 MB
# growing to 16 MB, each filled and freed; prints the pages filled and the minor page
# faults the loop took.
FAULTS_CHILD = """
import ctypes, resource, sys
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: a fault is one page, always
import torch
from cnnlab.process import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.set_num_threads(1)
sizes = [(256 + i * 15 * 256 // 199) * 1024 for i in range(200)]  # float32s, 4 KB steps
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for n in sizes:
    torch.ones(n)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(4 * sum(sizes) // resource.getpagesize(), faults)
"""


def test_keep_freed_memory_reuses_freed_blocks_instead_of_faulting_in_fresh_pages():
    """glibc's default gives a freed block back to the OS when it is larger than any freed
    before (its mmap threshold only rises to the largest freed block), so each new size arrives
    as fresh pages that fault on first touch: ~435k faults for these 1.7 GB. With the 32 MB
    threshold the freed block stays in the heap and the next one reuses it: 5-10k faults.
    (A loop of one fixed size is no test: the rising threshold already reuses it by default.)"""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        libc = ""
    if not (sys.platform == "linux" and libc.startswith("glibc")):
        found = f"{libc or 'not glibc'} on {sys.platform}"
        pytest.skip(f"mallopt's thresholds are glibc's on Linux; this is {found}")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD")
    }  # glibc's defaults, unchanged
    runs = {
        setting: subprocess.Popen(
            [sys.executable, "-c", FAULTS_CHILD, setting], env=env, stdout=subprocess.PIPE
        )
        for setting in ("default", "keep")
    }  # side by side: each is mostly torch's import
    faults = {}
    for setting, process in runs.items():
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0, setting
        pages, faults[setting] = map(int, out.split())
    assert faults["default"] > pages // 2, faults  # the defaults fault in most of them
    assert faults["keep"] < faults["default"] / 3, faults
