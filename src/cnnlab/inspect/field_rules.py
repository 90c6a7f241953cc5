"""How each torch function moves a receptive field: the rules `receptive.trace` applies to
every tensor a forward pass makes (see receptive.py for the whole picture).

A `Field` is one `arithmetic.Axis` for the image's height and one for its width, plus the tensor
dimensions those are. `propagate(name, ...)` gives the Field of a function's output from its
tracked inputs': conv and pool grow it, element-wise functions keep it (the union where paths
meet), reshapes and permutes follow its dimensions, and everything else, unknown functions
included, gives every unit the whole map's field (an overestimate, never an underestimate).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.arithmetic import Axis, merge, same_padding
from cnnlab.models.shapes import as_pair

SPATIAL_OPS = ("conv2d", "max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "lp_pool2d",
               "adaptive_avg_pool2d", "adaptive_max_pool2d")  # fmt: skip


@dataclass(frozen=True)
class Field:
    """The receptive field of every unit of a tensor: one Axis for the image's height, one for
    its width, and the tensor dimensions (negative indices) that are height and width; None
    once a dimension is gone (flattened): every unit then sees that axis's whole field."""

    height: Axis
    width: Axis
    dims: tuple[int | None, int | None] = (-2, -1)

    @property
    def axes(self) -> tuple[Axis, Axis]:
        return (self.height, self.width)


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a nest of tuples, lists and dicts, in order."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)


def function_name(func: Any) -> str:
    """`relu_`, `__iadd__`, `__radd__` and `add` → their plain names: the field is alike."""
    name = getattr(func, "__name__", "")
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name[:1] in ("i", "r") and name[1:] in ARITHMETIC:
            name = name[1:]
    return name.rstrip("_")


ARITHMETIC = {"add", "sub", "mul", "truediv", "div", "floordiv", "mod", "pow", "and", "or",
              "xor", "neg", "pos", "abs", "matmul"}  # fmt: skip
# functions whose output unit depends only on the same position of its inputs
POINTWISE = ARITHMETIC - {"matmul"} | {
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid",
    "tanh", "hardtanh", "hardswish", "hardsigmoid", "softplus", "softsign", "tanhshrink",
    "threshold", "prelu", "rrelu", "logsigmoid", "exp", "log", "sqrt", "rsqrt", "square", "clamp",
    "clip", "minimum", "maximum", "where", "dropout", "dropout1d", "dropout2d", "dropout3d",
    "alpha_dropout", "feature_alpha_dropout", "contiguous", "clone", "to", "float", "double",
    "half", "bfloat16", "type", "type_as", "detach", "cpu", "cuda", "requires_grad", "copy",
    "local_response_norm", "sign", "reciprocal", "lerp", "addcmul", "addcdiv", "erf",
}  # fmt: skip
# functions that keep each spatial dimension while the trailing block from it is unchanged
RESHAPES = {"view", "reshape", "view_as", "reshape_as", "getitem", "select", "narrow", "chunk",
            "split", "split_with_sizes", "tensor_split", "unbind", "squeeze", "unsqueeze",
            "expand", "expand_as", "unflatten", "flatten"}  # fmt: skip
# functions whose outputs do not depend on the values of their inputs
FACTORIES = {"new_empty", "new_zeros", "new_ones", "new_full", "new_tensor", "zeros_like",
             "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like",
             "size", "dim", "numel", "bernoulli"}  # fmt: skip
REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "norm",
              "prod", "softmax", "log_softmax", "argmax", "argmin", "nansum",
              "nanmean"}  # fmt: skip
# functions that mix every position (or whose effect on positions is not followed here)
MIXING = {"group_norm", "instance_norm", "matmul", "bmm", "mm", "baddbmm", "einsum",
          "scaled_dot_product_attention", "multi_head_attention_forward"}  # fmt: skip


def propagate(
    name: str,
    args: tuple,
    kwargs: dict,
    sources: list[tuple[torch.Tensor, Field]],
    out: torch.Tensor,
    unknown: Counter,
) -> Field | None:
    """The Field of `out`, made by the function `name` from tracked `sources`; None: its
    values do not come from the input."""
    first, field_ = sources[0]
    if name in FACTORIES:
        return None
    if name in SPATIAL_OPS:
        return _spatial(name, args, kwargs, first, field_, out)
    if name == "pad":
        return _pad(args, kwargs, field_, first, out)
    if name == "batch_norm":
        training = _arg(args, kwargs, 5, "training", False)
        return _mixed(field_, first) if training else _pointwise(sources, out)
    if name == "layer_norm":
        normalized = len(tuple(_arg(args, kwargs, 1, "normalized_shape", ())))
        return _mix_dims(field_, first, out, range(-normalized, 0))
    if name == "linear":
        return _mix_dims(field_, first, out, (-1,))
    if name in ("max", "min", "maximum", "minimum") and len(sources) > 1:
        return _pointwise(sources, out)  # element-wise, of two tensors
    if name in REDUCTIONS:
        return _reduce(args, kwargs, field_, first, out)
    if name in ("cat", "concat", "concatenate", "stack"):
        return _concatenate(name, args, kwargs, sources, out)
    if name in ("permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis"):
        return _permute(name, args, kwargs, field_, first, out)
    if name in RESHAPES:
        return _reshape(field_, first, out)
    if name in POINTWISE:
        return _pointwise(sources, out)
    if name not in MIXING:
        unknown[name] += 1
    return _mixed(field_, first)


def _arg(args: tuple, kwargs: dict, index: int, key: str, default: Any) -> Any:
    if key in kwargs:
        return kwargs[key]
    return args[index] if len(args) > index else default


def _mixed(field_: Field, source: torch.Tensor) -> Field:
    """Every unit sees the whole map: the union of all units' fields, along both axes."""
    return _mix_dims(field_, source, None, field_.dims)


def _mix_dims(field_: Field, source: torch.Tensor, out: torch.Tensor | None, dims: Any) -> Field:
    """`source`'s field after a function that mixes its dimensions `dims` (negative indices):
    a spatial axis among them is collapsed to one field, the others keep their dimension."""
    ndim = source.dim()
    mixed = {d - ndim if d >= 0 else d for d in dims if d is not None}
    axes, kept = [], []
    for axis, dim in zip(field_.axes, field_.dims, strict=True):
        if dim is not None and (dim in mixed or out is None):
            axes.append(axis.whole(source.shape[dim]))
            kept.append(None)
        else:
            axes.append(axis)
            kept.append(dim)
    if out is not None and out.dim() != ndim:  # the dims left are not where they were
        return _mixed(field_, source)
    return Field(axes[0], axes[1], (kept[0], kept[1]))


def _spatial(
    name: str, args: tuple, kwargs: dict, source: torch.Tensor, field_: Field, out: torch.Tensor
) -> Field:
    """A conv or pool over the last two dimensions."""
    if field_.dims not in ((-2, -1), (None, None)):
        return _mixed(field_, source)  # a 2-D layer over other dimensions: not followed
    if name.startswith("adaptive"):
        axes = [axis.windows(_adaptive_windows(source.shape[d], out.shape[d]))
                for axis, d in zip(field_.axes, (-2, -1), strict=True)]  # fmt: skip
        return Field(axes[0], axes[1])
    if name == "conv2d":
        kernel = as_pair(tuple(args[1].shape[-2:]))
        stride = as_pair(_arg(args, kwargs, 3, "stride", 1))
        dilation = as_pair(_arg(args, kwargs, 5, "dilation", 1))
        padding = _arg(args, kwargs, 4, "padding", 0)
        if padding == "valid":
            padding = 0
        if padding == "same":
            padding = tuple(same_padding(k, d) for k, d in zip(kernel, dilation, strict=True))
    else:
        offset = 1 if name == "lp_pool2d" else 0  # lp_pool2d(input, norm_type, kernel_size, ...)
        kernel = as_pair(_arg(args, kwargs, 1 + offset, "kernel_size", 1))
        stride = _arg(args, kwargs, 2 + offset, "stride", None)
        stride = as_pair(stride) if stride else kernel  # a pool's stride defaults to its kernel
        padding = 0 if name == "lp_pool2d" else _arg(args, kwargs, 3, "padding", 0)
        is_max = name.startswith("max_pool2d")  # avg and lp pools have no dilation
        dilation = as_pair(_arg(args, kwargs, 4, "dilation", 1) if is_max else 1)
    padding = as_pair(padding)
    axes = [axis.through(kernel[i], stride[i], padding[i], dilation[i])
            for i, axis in enumerate(field_.axes)]  # fmt: skip
    return Field(axes[0], axes[1])


def _adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """The input windows [start, end) of an adaptive pool's outputs, by PyTorch's rule."""
    return [(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]


def _pad(args: tuple, kwargs: dict, field_: Field, source: torch.Tensor, out: torch.Tensor):
    """F.pad: pad = (left, right, top, bottom, ...) from the last dimension backwards."""
    pad = list(_arg(args, kwargs, 1, "pad", ()))
    axes = list(field_.axes)
    for i, dim in enumerate(field_.dims):
        if dim is not None and len(pad) >= -2 * dim:
            axes[i] = axes[i].padded(pad[-2 * dim - 2])
    return _reshape(Field(axes[0], axes[1], field_.dims), source, out, sizes_may_change=True)


def _pointwise(sources: list[tuple[torch.Tensor, Field]], out: torch.Tensor) -> Field:
    """An element-wise function of one or more tensors (broadcast): per unit, the union."""
    result: Field | None = None
    result_tensor: torch.Tensor | None = None
    for tensor, field_ in sources:
        if result is None:
            result, result_tensor = field_, tensor
            continue
        if any(a is not None and b is not None and a != b
               for a, b in zip(result.dims, field_.dims, strict=True)):  # fmt: skip
            return _mixed(result, result_tensor)
        axes, dims = [], []
        for i in range(2):
            dim = result.dims[i] if result.dims[i] is not None else field_.dims[i]
            out_size = out.shape[dim] if dim is not None and out.dim() >= -dim else 1
            axes.append(merge(result.axes[i], field_.axes[i], out_size,
                              _size(result_tensor, result.dims[i]),
                              _size(tensor, field_.dims[i])))  # fmt: skip
            dims.append(dim)
        result = Field(axes[0], axes[1], (dims[0], dims[1]))
        result_tensor = out
    assert result is not None
    return _reshape(result, result_tensor, out) if result_tensor is not out else result


def _size(tensor: torch.Tensor | None, dim: int | None) -> int:
    if tensor is None or dim is None or tensor.dim() < -dim:
        return 1  # a dimension that is not there: broadcast
    return tensor.shape[dim]


def _reduce(args: tuple, kwargs: dict, field_: Field, source, out) -> Field:
    """A reduction (or softmax) over `dim`: the spatial dimensions among them are mixed."""
    dim = _arg(args, kwargs, 1, "dim", None)
    if dim is None:
        return _mixed(field_, source)
    dims = dim if isinstance(dim, list | tuple) else [dim]
    mixed = _mix_dims(field_, source, source, dims)
    if out.dim() == source.dim() or mixed.dims == (None, None):
        return mixed
    return _reshape(mixed, source, out)  # keepdim=False: the dimensions after `dim` moved


def _concatenate(name: str, args: tuple, kwargs: dict, sources, out: torch.Tensor) -> Field:
    """cat along a channel (or batch) dimension, or stack into a new leading one: per unit, the
    union of the fields; cat along a spatial dimension, or stack after one, mixes it."""
    dim = _arg(args, kwargs, 1, "dim", 0)
    first, field_ = sources[0]
    if name == "stack":  # the new dimension, counted from the end of `out`
        dim = dim - out.dim() if dim >= 0 else dim
        spatial = [d for d in field_.dims if d is not None]
        if spatial and dim >= min(spatial):  # it lands among or after the spatial dims
            return _mixed(field_, first)
    elif (dim - first.dim() if dim >= 0 else dim) in field_.dims:
        return _mixed(field_, first)
    merged = _pointwise(sources, first) if len(sources) > 1 else field_
    return _reshape(merged, first, out, sizes_may_change=True)


def _permute(name: str, args: tuple, kwargs: dict, field_: Field, source, out) -> Field:
    """permute / transpose / movedim: the spatial dimensions move with the others."""
    ndim = source.dim()
    order = list(range(ndim))
    if name == "permute":
        dims = args[1:] if len(args) > 2 else _arg(args, kwargs, 1, "dims", ())
        order = [d % ndim for d in dims]
    elif name in ("movedim", "moveaxis"):  # one dimension or a tuple of them
        src, dst = (_arg(args, kwargs, i, key, 0) for i, key in ((1, "source"), (2, "destination")))
        src, dst = (
            [d % ndim for d in (v if isinstance(v, tuple | list) else [v])] for v in (src, dst)
        )
        placed, rest = dict(zip(dst, src, strict=True)), [d for d in order if d not in src]
        order = [placed[i] if i in placed else rest.pop(0) for i in range(ndim)]
    else:  # swapaxes names its arguments axis0 and axis1, transpose and swapdims dim0 and dim1
        keys = ("axis0", "axis1") if name == "swapaxes" else ("dim0", "dim1")
        a, b = (_arg(args, kwargs, i + 1, key, 0) % ndim for i, key in enumerate(keys))
        order[a], order[b] = order[b], order[a]
    dims = tuple(None if d is None else order.index(d % ndim) - ndim for d in field_.dims)
    return Field(field_.height, field_.width, (dims[0], dims[1]))


def _reshape(
    field_: Field, source: torch.Tensor, out: torch.Tensor, sizes_may_change: bool = False
) -> Field:
    """A view, reshape, slice or split: a spatial dimension survives when the block of
    dimensions from it to the end is unchanged (NCHW → (N, groups, C/groups, H, W) keeps H and
    W; flatten(1) or a slice of H does not). `sizes_may_change` is for F.pad and cat, which
    keep the dimensions but change their sizes."""
    axes, dims = list(field_.axes), list(field_.dims)
    for i, dim in enumerate(field_.dims):
        if dim is None:
            continue
        same = (
            source.dim() >= -dim
            and out.dim() >= -dim
            and (sizes_may_change or tuple(source.shape[dim:]) == tuple(out.shape[dim:]))
        )
        if not same:
            axes[i], dims[i] = axes[i].whole(source.shape[dim]), None
    return Field(axes[0], axes[1], (dims[0], dims[1]))
