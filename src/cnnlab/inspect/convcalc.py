"""`cnnlab convcalc`: conv and pool arithmetic a learner can follow.

A `Layer` is one conv or pool as PyTorch is given it, per axis (height, width). `apply_layer`
gives its output size with the formula of arithmetic.py filled in for each axis (`Side`), so
the numbers can be checked by hand. `follow_chain` runs a chain like "conv5p2,pool2,conv5,pool2"
(the grammar is `GRAMMAR`) and returns one `ChainRow` per layer: the size, and the jump,
receptive field and start of an `Axis` per axis. Each computation returns data; the `format_*`
functions turn it into the lines the command prints (`pair_text` and `aligned` write those of
params.py, `cnnlab params`, too). No torch here: the command answers at once.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from cnnlab.arithmetic import Axis, check_layer, same_padding
from cnnlab.config import ConvcalcConfig
from cnnlab.errors import ConfigError

OPS = ("conv", "maxpool", "avgpool")
Pair = tuple[int, int]

GRAMMAR = (
    "conv{k}[s{stride}][p{pad}|psame][d{dil}], pool{k}[s{stride}][p{pad}][d{dil}][c] "
    "(a max pool; maxpool{k} too), avgpool{k}[s{stride}][p{pad}][c]"
)
CHAIN_HELP = (
    f"Chain steps, separated by commas or spaces: {GRAMMAR}. Each number is N or HxW; a "
    "conv's stride is 1 and a pool's stride its kernel unless given, padding is 0 unless given, "
    "psame keeps the size (stride 1 only), c is a pool's ceil mode; options in any order. "
    "Example (LeNet): cnnlab convcalc --size 28 --chain conv5p2,pool2,conv5,pool2"
)

_SHAPES = {(1, 2): "a whole number or HxW, like 3 or 3x5", (3,): "CxHxW, like 3x32x32"}
_NUMBER = r"[0-9]+(?:[xX×][0-9]+)?"
_STEP = re.compile(
    rf"(conv|maxpool|avgpool|pool)({_NUMBER})((?:[sd]{_NUMBER}|p(?:same|{_NUMBER})|c)*)"
)
_OPTION = re.compile(rf"([sdp])(same|{_NUMBER})|(c)")


def parse_dims(value: Any, what: str, counts: tuple[int, ...] = (1, 2)) -> tuple[int, ...]:
    """A size written "32", "28x32" or "3x32x32" (x, X or ×), or given as ints, as a tuple of
    ints; anything else is a one-line ConfigError naming `what`, so "3x" never becomes a size."""
    if isinstance(value, int) and not isinstance(value, bool):
        parts: tuple[int, ...] = (value,)
    elif isinstance(value, tuple | list) and all(type(v) is int for v in value):
        parts = tuple(value)
    else:
        texts = re.split("[xX×]", str(value).strip())
        if not all(re.fullmatch("[0-9]+", t.strip()) for t in texts):
            raise ConfigError(f"{what} expects {_SHAPES.get(counts, 'numbers')}, got {value!r}")
        parts = tuple(int(t) for t in texts)
    if len(parts) not in counts:
        raise ConfigError(f"{what} expects {_SHAPES.get(counts, 'numbers')}, got {value!r}")
    return parts


def parse_pair(value: Any, what: str) -> Pair:
    """A side the user gave as one number (square) or HxW, parsed as (height, width)."""
    parts = parse_dims(value, what)
    return (parts[0], parts[-1])


def padding_pair(value: Any, what: str) -> Pair | str:
    """Padding as (height, width), or "same" (PyTorch's padding="same")."""
    if isinstance(value, str) and value.strip().lower() == "same":
        return "same"
    return parse_pair(value, what)


@dataclass(frozen=True)
class Layer:
    """One conv or pool as PyTorch's layer is given it, per axis (height, width)."""

    op: str  # conv, maxpool or avgpool
    kernel: Pair
    stride: Pair
    padding: Pair | str  # or "same"
    dilation: Pair = (1, 1)
    ceil: bool = False
    text: str = ""  # the step as written in a chain


def make_layer(
    op: str = "conv",
    kernel: Any = 3,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil: bool = False,
    text: str = "",
) -> Layer:
    """A Layer from numbers or "HxW" texts; stride None is PyTorch's default (1 for a conv, the
    kernel for a pool). Ranges are checked when it is applied to a size (`apply_layer`)."""
    if op not in OPS:
        raise ConfigError(f"unknown op {op!r}; choose one of: {', '.join(OPS)}")
    kernel = parse_pair(kernel, "--kernel")
    if stride is None:
        stride = (1, 1) if op == "conv" else kernel
    return Layer(
        op=op,
        kernel=kernel,
        stride=parse_pair(stride, "--stride"),
        padding=padding_pair(padding, "--padding"),
        dilation=parse_pair(dilation, "--dilation"),
        ceil=ceil,
        text=text,
    )


@dataclass(frozen=True)
class Side:
    """One axis of a layer: the numbers that go into the output-size formula, and the result."""

    size: int
    kernel: int
    stride: int
    left: int  # padding before the first pixel
    right: int  # and after the last (they differ only for an even `same`)
    dilation: int
    ceil: bool
    out: int

    @property
    def formula(self) -> str:
        """`out = floor((32 + 2*1 - 1*(3-1) - 1) / 1) + 1 = 32`, evaluated as written; with
        ceil mode, PyTorch's dropped last window is shown as an extra `- 1`."""
        pad = f"2*{self.left}" if self.left == self.right else f"{self.left} + {self.right}"
        span = f"{self.size} + {pad} - {self.dilation}*({self.kernel}-1) - 1"
        rounding = "ceil" if self.ceil else "floor"
        text = f"out = {rounding}(({span}) / {self.stride}) + 1"
        numerator = self.size + self.left + self.right - self.dilation * (self.kernel - 1) - 1
        written = (math.ceil if self.ceil else math.floor)(numerator / self.stride) + 1
        if written == self.out:
            return f"{text} = {self.out}"
        return (
            f"{text} - 1 = {self.out} (the last window would start in the right padding, "
            "so PyTorch drops it)"
        )


@dataclass(frozen=True)
class LayerOutput:
    """A layer applied to an input of a given size: both axes' arithmetic."""

    layer: Layer
    height: Side
    width: Side

    @property
    def shape(self) -> Pair:
        return (self.height.out, self.width.out)


def apply_layer(layer: Layer, size: Any) -> LayerOutput:
    """The output of `layer` on an input of `size` (N or HxW), by PyTorch's rules, or a
    one-line ConfigError saying why PyTorch would refuse it."""
    height, width = parse_pair(size, "--size")
    return LayerOutput(layer, _side(layer, 0, height), _side(layer, 1, width))


def _side(layer: Layer, axis: int, size: int) -> Side:
    kernel, stride, dilation = layer.kernel[axis], layer.stride[axis], layer.dilation[axis]
    if layer.padding == "same":
        _check_same(layer)
        left = same_padding(kernel, dilation)
        right = dilation * (kernel - 1) - left
        check_layer("conv", size, kernel, 1, right, dilation, layer.ceil)  # the ranges
        out = size  # PyTorch pads d(k-1) pixels in all: the size is kept
    else:
        left = right = layer.padding[axis]
        out = check_layer(layer.op, size, kernel, stride, left, dilation, layer.ceil)
    return Side(size, kernel, stride, left, right, dilation, layer.ceil, out)


def _check_same(layer: Layer) -> None:
    if layer.op != "conv":
        raise ConfigError(f"padding same is for conv only ({layer.op} has none); give a number")
    if layer.stride != (1, 1):
        raise ConfigError(
            "padding same needs stride 1 (PyTorch refuses it for strided convolutions); "
            "give a number instead (--padding 1, or p1 in a chain)"
        )


def layer_from_config(cfg: ConvcalcConfig) -> LayerOutput:
    """`cnnlab convcalc --size ... --kernel ...` (a ConvcalcConfig) as a LayerOutput."""
    if cfg.size is None or cfg.kernel is None:
        raise ConfigError(
            "give --size and --kernel (like --size 32 --kernel 3), or --chain; "
            "see `cnnlab convcalc --help`"
        )
    layer = make_layer(cfg.op, cfg.kernel, cfg.stride, cfg.padding, cfg.dilation, cfg.ceil)
    return apply_layer(layer, cfg.size)


def format_layer(result: LayerOutput) -> list[str]:
    """The layer, its formula per axis (once when both are alike) and the output HxW."""
    layer, (h, w) = result.layer, (result.height, result.width)
    numbers = (
        f"kernel {pair_text(layer.kernel)}, stride {pair_text(layer.stride)}, "
        f"padding {_padding_text(result)}, dilation {pair_text(layer.dilation)}"
    )
    lines = [f"{layer.op} on {h.size}x{w.size}: {numbers}" + (", ceil mode" if layer.ceil else "")]
    if h.formula == w.formula:
        lines.append(f"height and width: {h.formula}")
    else:
        lines += [f"height: {h.formula}", f"width:  {w.formula}"]
    lines.append(f"output: {h.out}x{w.out}")
    return lines


def _padding_text(result: LayerOutput) -> str:
    """1, or 1x2, or for same the padding it stands for: 1 each side, or 1 before, 2 after."""
    if result.layer.padding != "same":
        return pair_text(result.layer.padding)
    texts = [
        f"{s.left} each side" if s.left == s.right else f"{s.left} before, {s.right} after"
        for s in (result.height, result.width)
    ]
    return f"same ({texts[0] if texts[0] == texts[1] else f'height {texts[0]}; width {texts[1]}'})"


def parse_step(text: str, number: int = 1) -> Layer:
    """One chain step, like conv5p2, pool3s2c or conv3x5psame (see GRAMMAR)."""
    found = _STEP.fullmatch(text.lower())
    options: dict[str, str] = {}
    for match in _OPTION.finditer(found.group(3) if found else ""):
        letter, value = (match.group(1), match.group(2)) if match.group(1) else ("c", "")
        if letter in options:
            found = None  # an option given twice
        options[letter] = value
    if found is None:
        raise ConfigError(
            f"chain step {number} {text!r} is not a layer; write steps as {GRAMMAR}, "
            "like conv5p2,pool2"
        )
    op = {"pool": "maxpool"}.get(found.group(1), found.group(1))
    return make_layer(
        op,
        found.group(2),
        options.get("s"),
        options.get("p", 0),
        options.get("d", 1),
        ceil="c" in options,
        text=text,
    )


def parse_chain(text: str) -> list[Layer]:
    """Steps separated by commas or spaces; an empty chain or a bad step is a ConfigError."""
    steps = [step for step in re.split(r"[,\s]+", text) if step]
    if not steps:
        raise ConfigError(f"--chain is empty; write steps as {GRAMMAR}, like conv5p2,pool2")
    return [parse_step(step, number) for number, step in enumerate(steps, 1)]


@dataclass(frozen=True)
class ChainRow:
    """A feature map after a step of a chain: its size, and per axis (height, width) the
    jump, receptive field and start of its units' fields (see arithmetic.Axis)."""

    step: str
    height: int
    width: int
    jump: tuple[float, float]
    rf: tuple[float, float]
    start: tuple[float, float]


def follow_chain(chain: str | list[Layer], size: Any) -> list[ChainRow]:
    """One row for the input, then one after each layer of `chain` (text or Layers) applied to
    an input of `size`; a layer that cannot be applied is a ConfigError naming its step."""
    layers = parse_chain(chain) if isinstance(chain, str) else chain
    shape = parse_pair(size, "--size")
    if min(shape) < 1:
        raise ConfigError(f"--size must be at least 1, got {size}")
    axes = (Axis(), Axis())
    rows = [_row("input", shape, axes)]
    for number, layer in enumerate(layers, 1):
        try:
            result = apply_layer(layer, shape)
        except ConfigError as err:
            raise ConfigError(f"chain step {number} ({layer.text or layer.op}): {err}") from None
        axes = tuple(
            axis.through(side.kernel, side.stride, side.left, side.dilation)
            for axis, side in zip(axes, (result.height, result.width), strict=True)
        )
        shape = result.shape
        rows.append(_row(layer.text or layer.op, shape, axes))
    return rows


def _row(step: str, shape: Pair, axes: tuple[Axis, ...]) -> ChainRow:
    h, w = axes
    return ChainRow(step, *shape, (h.jump, w.jump), (h.rf, w.rf), (h.start, w.start))


def chain_from_config(cfg: ConvcalcConfig) -> list[ChainRow]:
    """`cnnlab convcalc --chain ... --size ...` (a ConvcalcConfig) as ChainRows; the options
    of a single layer are refused, as each step carries its own."""
    layer_options = ("kernel", "stride", "padding", "dilation", "op", "ceil")
    given = [
        "--" + f.name
        for f in dataclasses.fields(cfg)
        if f.name in layer_options and getattr(cfg, f.name) != f.default
    ]
    if given:
        raise ConfigError(
            f"--chain gives each step its own layer; leave out {', '.join(given)} "
            "(like conv3s2p1 for a strided conv)"
        )
    try:
        layers = parse_chain(cfg.chain)
    except ConfigError:
        if not _is_model_name(cfg.chain):
            raise
        from cnnlab.inspect.receptive import model_chain  # torch: only for a model

        return model_chain(cfg.chain.strip(), cfg.size)
    if cfg.size is None:
        raise ConfigError("--chain needs --size, the input's side or HxW (like --size 28)")
    return follow_chain(layers, cfg.size)


def _is_model_name(text: str) -> bool:
    from cnnlab.models import list_models

    return text.strip() in list_models()


def format_chain(rows: list[ChainRow]) -> list[str]:
    """An aligned table of the rows, and what its columns mean."""
    table = [("step", "size", "jump", "receptive field", "start")] + [
        (
            row.step,
            f"{row.height}x{row.width}",
            pair_text(row.jump),
            pair_text(row.rf),
            pair_text(row.start),
        )
        for row in rows
    ]
    lines = aligned(table)
    return [
        *lines,
        "jump: input pixels between neighbouring units; receptive field: input pixels one unit "
        "sees;",
        "start: the centre of the first unit's field (0 is the first pixel, below 0 padding); "
        "HxW where the axes differ",
    ]


def pair_text(values: Any) -> str:
    """(3, 3) as 3, (3, 5) as 3x5; 4.0 as 4 and 5.5 as 5.5."""
    texts = [str(int(v)) if float(v).is_integer() else str(v) for v in values]
    return texts[0] if texts[0] == texts[1] else "x".join(texts)


def aligned(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> list[str]:
    """Columns padded to their widest cell, two spaces apart; `right` columns flush right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
