"""Receptive fields of the model as it is: follow them through one real forward pass.

A TorchFunctionMode sees every torch function the forward pass calls (`F.conv2d` inside an
nn.Conv2d, the `F.max_pool2d` a seed model calls in its own forward, the `out += identity` of a
residual block) and gives each tensor it makes a `Field`: the receptive field of its units along
the image's height and width (an `arithmetic.Axis` each) and which of its dimensions those are.
So the fields hold for any model and input size, torchvision's included, with no table per model:
- conv and pool layers grow the field (`Axis.through`), adaptive pools pool windows of the map;
- element-wise functions (activations, eval-mode batch norm, dropout, +, *) keep it, and where
  two paths meet (a residual addition, a concatenation of branches) each unit's field is the
  union over the paths, flagged when the paths are centred differently (`Axis.aligned`);
- reshapes keep it while the spatial dimensions stay the trailing block, permutes follow it;
- anything that mixes positions (flatten, Linear over a spatial dimension, global pooling,
  normalisation over H and W, batch norm in training) gives every unit the whole map's field;
- a function not known here does the same (an overestimate, never an underestimate), and is
  named in `Trace.unknown` so a summary can say so.
The fields are checked against autograd for every registered model in
tests/test_receptive_fields.py: the input pixels with a non-zero gradient of a unit span exactly
its field.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from cnnlab.arithmetic import Axis
from cnnlab.inspect.field_rules import SPATIAL_OPS, Field, function_name, propagate, tensors_in


@dataclass
class SpatialOp:
    """One conv or pool applied during the forward pass, with the field of its output."""

    kind: str  # "conv2d", "max_pool2d", ...: the torch function's name
    module: str  # dotted path of the innermost module running it ("" for the model itself)
    field: Field
    shape: tuple[int, ...]  # output shape
    # called in the forward of a module with sub-modules (seed 000's F.max_pool2d in Net),
    # so it is a layer of its own rather than the body of an nn.Conv2d or nn.MaxPool2d
    direct: bool
    order: int  # place among module calls and direct ops, in call order
    output: torch.Tensor | None = None  # kept only with trace(..., keep_outputs=True)


@dataclass
class ModuleCall:
    """One call of a module: its output's field (None when the output is not from the input)."""

    module: nn.Module
    name: str
    field: Field | None
    order: int  # place among module calls and direct ops, in call order
    output: torch.Tensor | None = None  # kept only with trace(..., keep_outputs=True)


@dataclass
class Trace:
    """What one forward pass showed: each module call, each conv and pool, unknown functions."""

    input_shape: tuple[int, ...]
    calls: list[ModuleCall] = field(default_factory=list)
    ops: list[SpatialOp] = field(default_factory=list)
    unknown: Counter = field(default_factory=Counter)  # function name → times treated as mixing


def trace(model: nn.Module, images: torch.Tensor, *, keep_outputs: bool = False) -> Trace:
    """Run `model(images)` once and follow the receptive field of every tensor it makes.

    `images` is (N, C, H, W); the model runs as it is (call `model.eval()` first for the
    fields of inference: batch norm in training mixes every position of the batch). Gradients
    flow when `images` requires them, so `keep_outputs=True` lets a caller backpropagate from
    any conv or pool output, or any module's (the test of these fields does).
    """
    tracker = _Tracker(Trace(tuple(images.shape)), model, keep_outputs)
    tracker.fields[images] = Field(Axis(), Axis())
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(tracker.enter))
        handles.append(module.register_forward_hook(tracker.leave))
    try:
        with tracker:
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return tracker.result


class _Tracker(TorchFunctionMode):
    """Gives each tensor a torch function makes from tracked tensors its Field."""

    def __init__(self, result: Trace, model: nn.Module, keep_outputs: bool) -> None:
        super().__init__()
        self.result = result
        self.keep_outputs = keep_outputs
        self.names = {id(module): name for name, module in model.named_modules()}
        self.fields = WeakIdKeyDictionary()  # tensor → Field, forgotten with the tensor
        self.running: list[tuple[int, nn.Module]] = []  # module calls under way, outermost first
        self.count = 0

    def _next_order(self) -> int:
        self.count += 1
        return self.count

    def enter(self, module: nn.Module, inputs: Any) -> None:
        self.running.append((self._next_order(), module))

    def leave(self, module: nn.Module, inputs: Any, output: Any) -> None:
        order, _ = self.running.pop()
        found = next(tensors_in(output), None)
        field_ = self.fields.get(found) if found is not None else None
        name = self.names.get(id(module), "?")
        kept = found if self.keep_outputs else None
        self.result.calls.append(ModuleCall(module, name, field_, order, kept))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tracked = [t for t in tensors_in((args, kwargs)) if t in self.fields]
        shapes = [t.shape for t in tracked]
        out = func(*args, **kwargs)  # torch runs it with this mode off: no recursion
        if not tracked:
            return out
        # an in-place view (squeeze_, unsqueeze_) changed its input's shape: the rules read
        # the input as it was
        sources = [
            (t if t.shape == shape else torch.empty(shape, device="meta"), self.fields[t])
            for t, shape in zip(tracked, shapes, strict=True)
        ]
        name = function_name(func)
        for result in tensors_in(out):
            made = propagate(name, args, kwargs, sources, result, self.result.unknown)
            if made is not None:
                self.fields[result] = made
                if name in SPATIAL_OPS and result.is_floating_point():  # not a pool's indices
                    self._note_spatial(name, made, result)
        return out

    def _note_spatial(self, kind: str, made: Field, output: torch.Tensor) -> None:
        module = self.running[-1][1] if self.running else None
        direct = module is not None and next(module.children(), None) is not None
        name = "" if module is None else self.names.get(id(module), "?")
        order = self._next_order() if direct else 0
        op = SpatialOp(kind, name, made, tuple(output.shape), direct, order)
        op.output = output if self.keep_outputs else None
        self.result.ops.append(op)


def model_chain(name: str, size: Any = None) -> list:
    """`cnnlab convcalc --chain MODEL`: the input, then every conv and pool the registered
    model applies (in call order), as convcalc.ChainRows; at `size` (N or HxW) or its own."""
    from cnnlab.inspect.convcalc import ChainRow, parse_pair
    from cnnlab.models import create_model

    model = create_model(name, image_size=parse_pair(size, "--size") if size else None).eval()
    channels, (height, width) = model.model_args["in_channels"], model.model_args["image_size"]
    with torch.no_grad():
        result = trace(model, torch.rand(1, channels, height, width))
    rows = [ChainRow("input", height, width, (1, 1), (1, 1), (0, 0))]
    for op in result.ops:
        axes = op.field.axes
        rows.append(ChainRow(f"{op.module or name} {op.kind}", op.shape[-2], op.shape[-1],
                             tuple(a.jump for a in axes), tuple(a.rf for a in axes),
                             tuple(a.start for a in axes)))  # fmt: skip
    return rows
