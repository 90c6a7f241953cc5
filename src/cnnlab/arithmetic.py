"""Conv and pool arithmetic: output sizes, and how receptive fields grow, in plain Python.

One side of a conv or pool output is floor((in + 2p - d(k-1) - 1) / s) + 1 (seed 000's
floor((in + 2p - k) / s) + 1 when d = 1; seed 003 prints (in + 2p - k) / (2s) + 1: a typo'd
denominator and no floor). With
PyTorch's ceil_mode (pools only) the division rounds up, but the last window must start inside
the input or its left padding, so a window that would start in the right padding is dropped.

A receptive field is followed along one axis at a time as an `Axis` (Araujo, Norris and Sim,
"Computing Receptive Fields of Convolutional Neural Networks", Distill 2019): output unit i of a
feature map sees the input pixels centred on `start + i * jump`, `rf` pixels wide. Pixel
coordinates are those of the input image (0 is its first pixel), so a field may reach into the
padding (below 0 or past the last pixel). Nothing here imports torch: `cnnlab convcalc` answers
at once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from cnnlab.errors import ConfigError


def output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1, ceil: bool = False
) -> int:
    """One side of the output, by PyTorch's rule; below 1 when nothing is left of the input."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if not ceil:
        return span // stride + 1
    out = -(-span // stride) + 1  # ceil division
    if (out - 1) * stride >= size + padding:  # the last window would start in the padding
        out -= 1
    return out


def same_padding(kernel: int, dilation: int = 1) -> int:
    """The left padding of Conv2d(padding="same"): half of d(k-1), the extra pixel on the right."""
    return dilation * (kernel - 1) // 2


def check_layer(
    op: str,
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    ceil: bool = False,
) -> int:
    """The output side of a conv / maxpool / avgpool, or a ConfigError saying why there is none.

    The rules are PyTorch's: sizes, kernels, strides and dilations are at least 1; a pool's
    padding is at most half its kernel (the kernel itself, not the dilated span: PyTorch checks
    kW/2 >= padW); ceil mode is for pools; the output is at least 1.
    """
    for name, value, least in (
        ("input size", size, 1),
        ("kernel", kernel, 1),
        ("stride", stride, 1),
        ("dilation", dilation, 1),
        ("padding", padding, 0),
    ):
        if value < least:
            raise ConfigError(f"{name} must be at least {least}, got {value}")
    effective = dilation * (kernel - 1) + 1
    if op == "conv" and ceil:
        raise ConfigError(
            "ceil mode is for pools (nn.Conv2d has none); use --op maxpool or avgpool"
        )
    if op == "avgpool" and dilation != 1:
        raise ConfigError("avgpool has no dilation; use --dilation 1 or --op maxpool")
    if op != "conv" and padding > kernel // 2:  # PyTorch: kW/2 >= padW, dilation or not
        raise ConfigError(
            f"padding {padding} is more than half the kernel ({kernel}): PyTorch's pools "
            f"refuse it; use a padding of at most {kernel // 2}"
        )
    out = output_size(size, kernel, stride, padding, dilation, ceil)
    if out < 1:
        raise ConfigError(
            f"a {effective}-wide kernel does not fit in {size} pixels padded by {padding} on "
            "each side, so no output is left; use a smaller kernel or more padding, or a larger "
            "input"
        )
    return out


@dataclass(frozen=True)
class Axis:
    """The receptive field of a feature map's units along one axis, in input pixels.

    Unit i sees pixels `start + i*jump - (rf-1)/2` to `start + i*jump + (rf-1)/2`. `jump` is the
    cumulative stride (0 when every unit sees the same pixels, as after global pooling); `exact`
    is False when the units' fields differ in size (an adaptive pool that does not divide its
    input) and `rf` is then the largest; `aligned` is False when paths that merged here had
    differently centred fields (Distill's alignment), and the field is then their union.
    """

    rf: float = 1
    jump: float = 1
    start: float = 0
    exact: bool = True
    aligned: bool = True

    def bounds(self, index: int) -> tuple[float, float]:
        """First and last input pixel seen by unit `index` (past the image: padding)."""
        centre = self.start + index * self.jump
        return centre - (self.rf - 1) / 2, centre + (self.rf - 1) / 2

    def through(self, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> Axis:
        """After a conv or pool layer: r + (k_eff - 1) j, j s, start + ((k_eff - 1)/2 - p) j."""
        effective = dilation * (kernel - 1) + 1
        return replace(
            self,
            rf=self.rf + (effective - 1) * self.jump,
            jump=self.jump * stride,
            start=self.start + ((effective - 1) / 2 - padding) * self.jump,
        )

    def padded(self, left: int) -> Axis:
        """After `left` pixels of padding are added before unit 0 (F.pad)."""
        return replace(self, start=self.start - left * self.jump)

    def windows(self, edges: list[tuple[int, int]]) -> Axis:
        """After pooling unit windows [a, b) of varying size (an adaptive pool): exact when the
        windows are equal and evenly spaced, else the largest field, flagged inexact."""
        fields = [(self.bounds(a)[0], self.bounds(b - 1)[1]) for a, b in edges]
        sizes = {hi - lo for lo, hi in fields}
        centres = [(lo + hi) / 2 for lo, hi in fields]
        steps = {b - a for a, b in itertools.pairwise(centres)}
        jump = centres[1] - centres[0] if len(centres) > 1 else 0
        return replace(
            self,
            rf=max(sizes) + 1,
            jump=jump,
            start=centres[0],
            exact=self.exact and len(sizes) == 1 and len(steps) <= 1,
        )

    def whole(self, size: int) -> Axis:
        """One unit that sees all `size` units of this axis (flatten, global pooling, Linear)."""
        return self.windows([(0, size)])


def merge(a: Axis, b: Axis, size: int, a_size: int, b_size: int) -> Axis:
    """The field of an output that reads both `a` and `b` at each of its `size` units (an
    addition, a product, a concatenation of channels): per unit, the union of the two fields.

    An operand whose axis has one unit (a broadcast, as in squeeze-and-excitation) gives every
    output unit the same field. The union's bounds are linear in the unit index when both
    operands step alike, or when one contains the other at both ends; otherwise its size varies
    and the largest is kept, flagged inexact. Fields with the same jump must be centred alike.
    """
    a = a if a_size > 1 else replace(a, jump=0)
    b = b if b_size > 1 else replace(b, jump=0)
    ends = [(min(a.bounds(i)[0], b.bounds(i)[0]), max(a.bounds(i)[1], b.bounds(i)[1]))
            for i in (0, max(size - 1, 0))]  # fmt: skip
    widths = {hi - lo for lo, hi in ends}
    linear = a.jump == b.jump or any(
        all(outer.bounds(i) == ends[n] for n, i in enumerate((0, max(size - 1, 0))))
        for outer in (a, b)
    )
    (lo0, hi0), (lo1, hi1) = ends
    centre0, centre1 = (lo0 + hi0) / 2, (lo1 + hi1) / 2
    jump = (centre1 - centre0) / (size - 1) if size > 1 else max(a.jump, b.jump)
    return Axis(
        rf=max(widths) + 1,
        jump=jump,
        start=centre0,
        exact=a.exact and b.exact and linear and len(widths) == 1,
        aligned=a.aligned and b.aligned and not (a.jump == b.jump != 0 and a.start != b.start),
    )
