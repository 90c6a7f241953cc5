"""Faster CPU forms of two kernels that torch runs slowly for small CNNs, with the same numbers.

Why: on a 2-core CPU, LeNet's step spends about half its time in two places where torch's
kernels are far from what the arithmetic needs (torch 2.14.1 with oneDNN 3.12, AVX2, 2-core
AMD EPYC VM; 1 thread, batch 256):

- 2×2 average pooling (stride 2): `avg_pool2d` 4.9 ms forward and 6.0 ms backward on LeNet's
  first pool; the same sum as four strided tensor adds takes 1.2 ms, and the backward (each
  input gets a quarter of its window's gradient) as one broadcast copy 2.6 ms. Bit-identical:
  the adds run in the kernel's order (top-left, top-right, bottom-left, bottom-right), and
  × 0.25 equals ÷ 4 exactly in floating point.
- The weight gradient of a convolution whose input has one channel (the first layer of every
  MNIST-style net): oneDNN takes 14-23 ms for LeNet's first conv. That gradient is itself a
  convolution — of the input, with the batch taken as channels, by the output gradient as the
  kernel — which oneDNN runs in 7 ms (mnist-cnn's first conv: 5.5 → 1.1 ms). Same sum in
  another order: equal up to float rounding (relative difference ~1e-5). For inputs with more
  channels this form is slower (CIFAR's 3-channel conv: 8 → 35 ms), so it is used only for 1.
  The bias gradient is then a plain sum of the output gradient: asked for the bias alone,
  torch's convolution_backward still costs as much as a weight gradient.

`use_fast_cpu_ops(model)` swaps the classes of the modules it applies to (parameters and
state_dict unchanged); tests/test_fast_ops.py checks both against torch's own ops. Measured
dead ends, for the record: pooling as reshape + mean (2.4× slower than avg_pool2d), and the
batch-as-channels weight gradient for inputs with 3 or more channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.shapes import as_pair


class _AvgPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.input_shape = x.shape
        height, width = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # floor mode drops the rest
        x = x[..., :height, :width]
        out = x[..., 0::2, 0::2] + x[..., 0::2, 1::2]
        out += x[..., 1::2, 0::2]
        out += x[..., 1::2, 1::2]
        return out.mul_(0.25)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        *lead, h, w = grad.shape
        spread = (grad * 0.25)[..., :, None, :, None].expand(*lead, h, 2, w, 2)
        grad_in = spread.reshape(*lead, 2 * h, 2 * w)
        height, width = ctx.input_shape[-2:]
        if grad_in.shape != ctx.input_shape:  # odd sizes: the dropped row/column gets zero
            grad_in = F.pad(grad_in, (0, width - 2 * w, 0, height - 2 * h))
        return grad_in


class FastAvgPool2d(nn.AvgPool2d):
    """A 2×2 stride-2 nn.AvgPool2d as strided adds on CPU; made by `use_fast_cpu_ops` only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            return _AvgPool2x2.apply(x)
        return super().forward(x)


def _pool_fits(pool: nn.Module) -> bool:
    return type(pool) is nn.AvgPool2d and (
        as_pair(pool.kernel_size) == (2, 2)
        and as_pair(pool.stride) == (2, 2)
        and as_pair(pool.padding) == (0, 0)
        and not pool.ceil_mode
        and pool.divisor_override is None
    )


class _OneChannelConv(torch.autograd.Function):
    """conv2d (stride 1, no dilation, one group) with the weight gradient as a convolution."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding: tuple[int, int]):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_x:  # torch's own kernel (arguments: stride, padding, dilation, transposed,
            # output_padding, groups, which gradients); a data batch never needs it
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, (1, 1), ctx.padding, (1, 1), False, (0, 0), 1,
                (True, False, False),
            )[0]  # fmt: skip
        if need_b:  # False without a bias (None needs no gradient)
            # not convolution_backward: asked for the bias alone it still costs a weight gradient
            grad_b = grad.sum((0, 2, 3))
        if need_w and x.shape[0] == 0:  # a torchrun process's empty part of a small batch
            grad_w = torch.zeros_like(weight)
        elif need_w:
            # dW[o, 0, i, j] = Σ_b Σ_p grad[b, o, p] · x_padded[b, 0, p + (i, j)]: a convolution
            # of x (batch as channels) by grad (batch as input channels, outputs as filters)
            grad_w = F.conv2d(x.transpose(0, 1), grad.transpose(0, 1), padding=ctx.padding)
            # (1, O, kh, kw) → (O, 1, kh, kw) with the weight's own strides (DDP checks them)
            grad_w = grad_w.view(weight.shape)
        return grad_x, grad_w, grad_b, None


class FastConv2d(nn.Conv2d):
    """A 1-channel nn.Conv2d whose weight gradient on CPU is a convolution; made by
    `use_fast_cpu_ops` only (it checks the layer's settings once)."""

    def _conv_forward(self, x, weight, bias):
        cpu_training = x.device.type == "cpu" and weight.requires_grad and torch.is_grad_enabled()
        if cpu_training and x.dim() == 4:
            return _OneChannelConv.apply(x, weight, bias, self.padding)
        return super()._conv_forward(x, weight, bias)


def _conv_fits(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and conv.in_channels == 1
        and conv.groups == 1
        and as_pair(conv.stride) == (1, 1)
        and as_pair(conv.dilation) == (1, 1)
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)  # "same" / "valid"
    )


def use_fast_cpu_ops(model: nn.Module) -> list[str]:
    """Swap nn.AvgPool2d / nn.Conv2d modules for their fast forms; the names of those swapped.

    Only the exact classes are swapped (a subclass may have its own forward), and the swap is
    of the class alone: parameters, buffers and state_dict keys stay as they were.
    """
    swapped = []
    for name, module in model.named_modules():
        fast = FastAvgPool2d if _pool_fits(module) else FastConv2d if _conv_fits(module) else None
        if fast is not None:
            module.__class__ = fast
            swapped.append(name)
    return swapped
