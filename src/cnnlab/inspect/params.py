"""`cnnlab params`: the weights of a convolution vs the fully connected layer that maps the same
input to an output of the same size (seed 000's argument for convolutions). `compare_params`
counts both, the output size being the convolution's by convcalc.py's `apply_layer`;
`format_params` writes them as the lines the command prints, products written out. No torch
here: the command answers at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab.config import ParamsConfig
from cnnlab.errors import ConfigError
from cnnlab.inspect.convcalc import (
    LayerOutput,
    Pair,
    aligned,
    apply_layer,
    make_layer,
    pair_text,
    parse_dims,
)


@dataclass(frozen=True)
class ParamsComparison:
    """Weights of a convolution vs a fully connected layer with the same input and an output
    of the same size (out_channels x out_height x out_width)."""

    in_shape: tuple[int, int, int]  # C, H, W
    out_channels: int
    kernel: Pair
    conv: LayerOutput  # the convolution's size arithmetic
    conv_weights: int  # out_channels * C * kh * kw
    conv_biases: int  # out_channels
    conv_per_unit: int  # C * kh * kw: the weights one output unit uses
    fc_per_unit: int  # C * H * W: one fully connected unit sees every input value
    fc_units: int  # out_channels * out_height * out_width
    fc_weights: int  # fc_per_unit * fc_units
    fc_biases: int  # fc_units

    @property
    def ratio(self) -> float:
        """How many times more weights the fully connected layer has."""
        return self.fc_weights / self.conv_weights

    @property
    def is_seed_case(self) -> bool:
        """Seed 000's example: a 3x3 conv from 3x32x32 to 16 channels."""
        return self.in_shape == (3, 32, 32) and self.out_channels == 16 and self.kernel == (3, 3)


def compare_params(
    in_shape: Any = "3x32x32",
    out_channels: int = 16,
    kernel: Any = 3,
    stride: Any = 1,
    padding: Any = "same",
) -> ParamsComparison:
    """Count both layers' weights; the output size is the convolution's (`apply_layer`)."""
    channels, height, width = parse_dims(in_shape, "--in", counts=(3,))
    if channels < 1 or out_channels < 1:
        raise ConfigError(f"channels must be at least 1, got {channels} in, {out_channels} out")
    conv = apply_layer(make_layer("conv", kernel, stride, padding), (height, width))
    kh, kw = conv.layer.kernel
    fc_units = out_channels * conv.height.out * conv.width.out
    fc_per_unit = channels * height * width
    return ParamsComparison(
        in_shape=(channels, height, width),
        out_channels=out_channels,
        kernel=(kh, kw),
        conv=conv,
        conv_weights=out_channels * channels * kh * kw,
        conv_biases=out_channels,
        conv_per_unit=channels * kh * kw,
        fc_per_unit=fc_per_unit,
        fc_units=fc_units,
        fc_weights=fc_per_unit * fc_units,
        fc_biases=fc_units,
    )


def params_from_config(cfg: ParamsConfig) -> ParamsComparison:
    """`cnnlab params` (a ParamsConfig) as a ParamsComparison."""
    return compare_params(cfg.in_shape, cfg.out_channels, cfg.kernel, cfg.stride, cfg.padding)


def format_params(p: ParamsComparison) -> list[str]:
    """The two layers' counts with their products written out, and the ratio."""
    (c, h, w), (kh, kw), n = p.in_shape, p.kernel, p.out_channels
    out_h, out_w = p.conv.shape
    layer = p.conv.layer
    padding = "same" if layer.padding == "same" else pair_text(layer.padding)
    table = [
        ("", "weights", "biases", "weights per output unit"),
        (
            "convolution",
            f"{n}*{c}*{kh}*{kw} = {p.conv_weights:,}",
            f"{p.conv_biases:,}",
            f"{c}*{kh}*{kw} = {p.conv_per_unit:,}",
        ),
        (
            "fully connected",
            f"({c}*{h}*{w})*({n}*{out_h}*{out_w}) = {p.fc_weights:,}",
            f"{p.fc_biases:,}",
            f"{c}*{h}*{w} = {p.fc_per_unit:,}",
        ),
    ]
    lines = [
        f"input {c}x{h}x{w} -> output {n}x{out_h}x{out_w} (kernel {kh}x{kw}, stride "
        f"{pair_text(layer.stride)}, padding {padding})",
        "",
        *aligned(table, right=(1, 2, 3)),
        "",
        _ratio_line(p),
    ]
    if p.is_seed_case:
        lines.append(
            "seed 000 writes 16*3*3*3=1728 and 3*32*32=9216; "
            f"the products are {p.conv_weights:,} and {p.fc_per_unit:,}"
        )
    return lines


def _ratio_line(p: ParamsComparison) -> str:
    if p.fc_weights == p.conv_weights:
        return f"both layers have {p.conv_weights:,} weights"
    more, fewer, ratio = ("fully connected layer", "convolution", p.ratio)
    if ratio < 1:
        more, fewer, ratio = ("convolution", "fully connected layer", 1 / ratio)
    times = f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:,.1f}".removesuffix(".0")
    return (
        f"the {fewer} has {times}× fewer weights: the {more} has "
        f"{max(p.fc_weights, p.conv_weights):,}, the {fewer} {min(p.fc_weights, p.conv_weights):,}"
    )
