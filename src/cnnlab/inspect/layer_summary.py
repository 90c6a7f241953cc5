"""`cnnlab summary`: every layer's output shape, parameters, multiply-adds and receptive field.

torchinfo measures shapes, parameters, multiply-adds and memory in one forward pass; a second
pass (receptive.py) follows each layer's receptive field, jump and start offset. The two are
joined call by call (a module called twice is two rows in both), and a conv or pool that a
model calls in its own forward (seed 000's `F.max_pool2d` in Net) gets a row of its own, since
that is where the field grows. `summary()` returns the rows as data (the HTML report shows them)
and prints the same table as the command.
"""

from __future__ import annotations

import io
import math
import shutil
import sys
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.files import size_text
from cnnlab.inspect.field_rules import Field
from cnnlab.inspect.receptive import trace
from cnnlab.training.device import model_device

DEFAULT_DEPTH = 3
COLUMNS = (
    "layer", "type", "output shape", "params", "mult-adds", "receptive field", "jump", "start",
)  # fmt: skip


@dataclass
class LayerRow:
    """One row of the summary: a module call, or a conv / pool called in a forward."""

    name: str  # dotted module path ("" for the model); for a functional layer, its caller's
    type: str  # class name, or "F.max_pool2d" for a functional layer
    depth: int  # 0 for the model, 1 for its children, ...
    output_shape: list[int] | None  # batch first
    params: int  # of the module and everything in it
    mult_adds: int  # of the module and everything in it, for the batch
    leaf: bool  # a module without sub-modules (or a functional layer)
    repeated: bool  # a module called before: its parameters are counted once
    receptive_field: tuple[float, float] | None  # (height, width) in input pixels
    jump: tuple[float, float] | None  # input pixels between neighbouring units
    start: tuple[float, float] | None  # centre of the first unit's field
    spatial: bool  # the output still has height and width (not flattened)
    exact: bool  # False: the units' fields differ in size, the largest is given
    aligned: bool  # False: paths merging here are centred differently (their union is given)


@dataclass
class ModelSummary:
    """The rows and the totals of `summary()`; `str()` is the printed table."""

    model_name: str
    source: str  # the checkpoint it was read from, or ""
    input_shape: tuple[int, int, int]  # (C, H, W)
    batch: int
    depth: int  # rows nested deeper are left out of the table (not of the totals)
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    mult_adds: int
    input_bytes: int  # float32
    param_bytes: int
    activation_bytes: int  # every leaf layer's output, for the batch (a forward pass)
    unknown: dict[str, int] = field(default_factory=dict)  # functions treated as mixing all

    @property
    def frozen_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def shown_rows(self) -> list[LayerRow]:
        return [row for row in self.rows if row.depth <= self.depth]

    def _repr_html_(self) -> str:  # a notebook shows the table, receptive fields included
        from cnnlab.display import heading, html_table, preformatted

        rows = [self.cells(row) for row in self.shown_rows]
        return (
            heading(self.title())
            + html_table(COLUMNS, rows, numeric=range(3, len(COLUMNS)))
            + preformatted("\n".join(self.footer()))
        )

    def __str__(self) -> str:
        return self.render(width=160)

    def render(self, width: int | None = None) -> str:
        """The table and the lines below it, as printed: `width` columns (default: the
        terminal's, or 160 when the output is not a terminal)."""
        from rich.console import Console

        if width is None:
            width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 160
        buffer = io.StringIO()
        Console(file=buffer, width=width, no_color=True).print(self.table())
        lines = [line.rstrip() for line in buffer.getvalue().rstrip().splitlines()]
        for line in self.footer():
            lines += textwrap.wrap(line, width, subsequent_indent="  ")
        return "\n".join(lines) + "\n"

    def table(self):
        """The rows as a rich Table (the command prints it)."""
        from rich import box
        from rich.table import Table

        table = Table(*COLUMNS, box=box.SIMPLE_HEAD, title=self.title())
        for column in table.columns[3:]:
            column.justify = "right"
        for row in self.shown_rows:
            table.add_row(*self.cells(row))
        return table

    def cells(self, row: LayerRow) -> list[str]:
        """The row's table cells, as text (one per COLUMNS)."""
        at_limit = row.depth == self.depth
        show_totals = row.leaf or at_limit
        params = "(repeated)" if row.repeated and row.params else _count(row.params, show_totals)
        return [
            "  " * row.depth + (row.name.rsplit(".", 1)[-1] if row.depth else self.model_name),
            row.type,
            "×".join(map(str, row.output_shape)) if row.output_shape else "",
            params,
            _count(row.mult_adds, show_totals),
            self._field_text(row),
            "" if row.jump is None else ("—" if not row.spatial else _pair(row.jump)),
            "" if row.start is None else _pair(row.start),
        ]

    def _field_text(self, row: LayerRow) -> str:
        if row.receptive_field is None:
            return ""
        text = ("" if row.exact else "≤") + _pair(row.receptive_field)
        if any(
            rf > side for rf, side in zip(row.receptive_field, self.input_shape[1:], strict=True)
        ):
            text += "*"
        return text + ("" if row.aligned else "!")

    def title(self) -> str:
        source = f" from {self.source}" if self.source else ""
        return f"{self.model_name}{source}, input {self.batch}×" + "×".join(
            map(str, self.input_shape)
        )

    def footer(self) -> list[str]:
        """Totals, memory and what the marks in the receptive-field column mean."""
        height, width = self.input_shape[1:]
        lines = [
            f"parameters   {self.total_params:,} (trainable {self.trainable_params:,}, "
            f"frozen {self.frozen_params:,})",
            f"mult-adds    {self.mult_adds:,} for a batch of {self.batch}",
            f"memory       input {size_text(self.input_bytes)}, parameters "
            f"{size_text(self.param_bytes)}, activations {size_text(self.activation_bytes)} "
            f"(forward, batch of {self.batch})",
            "receptive field: the input pixels one unit sees, padding included; jump: input "
            "pixels between neighbouring units; start: centre of the first unit's field "
            "(0 is the first input pixel; — : no longer a map, every unit sees the same)",
        ]
        rows = self.shown_rows
        if any(r.receptive_field and max(r.receptive_field) > min(height, width) for r in rows):
            lines.append(f"* larger than the {height}×{width} input: it reaches into the padding")
        if any(r.spatial and r.jump == (0, 0) and _is_map(r) for r in rows):
            lines.append(
                "jump 0: every unit of the map sees the same pixels (a global pooling feeds it, "
                "as in squeeze-and-excitation)"
            )
        if not all(r.exact for r in rows):
            lines.append("≤ the units' fields differ in size (adaptive pooling): the largest")
        if not all(r.aligned for r in rows):
            lines.append("! paths merging here are centred differently: their union is shown")
        if self.unknown:
            names = ", ".join(f"{name} ×{count}" for name, count in sorted(self.unknown.items()))
            lines.append(f"not followed, taken to mix every position (an overestimate): {names}")
        return lines


def summary(
    model: nn.Module | str,
    input_shape: tuple[int, int, int] | str | None = None,
    *,
    batch: int = 1,
    depth: int = DEFAULT_DEPTH,
    model_args: dict[str, Any] | None = None,
    verbose: bool = True,
) -> ModelSummary:
    """Summarise `model` (a module, a registered model name, a checkpoint or a run folder).

    `input_shape` is (C, H, W) or "CxHxW"; by default the model's own (a registry model's, or
    the size a checkpoint was trained at). Prints the table unless `verbose=False`.
    """
    from cnnlab.inspect.sources import open_model, parse_input

    shape = parse_input(input_shape) if isinstance(input_shape, str) else input_shape
    model, shape, name, source = open_model(model, shape, model_args or {})
    result = summarize(model, shape, batch=batch, depth=depth, label=name, source=source)
    if verbose:
        print(result.render(), end="")
    return result


def summarize(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    batch: int,
    depth: int,
    label: str,
    source: str = "",
) -> ModelSummary:
    """The summary of a built model at `input_shape` (C, H, W); `label` names it, `source`
    is the checkpoint it came from."""
    stats, fields = _measure(model, input_shape, batch, label)
    names = {id(module): name for name, module in model.named_modules()}
    rows = _module_rows(stats.summary_list, fields, names) + _functional_rows(fields, batch)
    rows.sort(key=lambda pair: pair[0])  # stable: rows with one key keep torchinfo's order
    leaves = [info for info in stats.summary_list if info.is_leaf_layer and info.executed]
    return ModelSummary(
        model_name=label,
        source=source,
        input_shape=tuple(input_shape),
        batch=batch,
        depth=depth,
        rows=_with_subtree_mult_adds([row for _, row in rows]),
        total_params=stats.total_params,
        trainable_params=stats.trainable_params,
        mult_adds=stats.total_mult_adds,
        input_bytes=batch * math.prod(input_shape) * 4,  # float32
        param_bytes=stats.total_param_bytes,
        activation_bytes=sum(info.output_bytes for info in leaves),
        unknown=dict(fields.unknown),
    )


def _measure(model: nn.Module, input_shape: tuple[int, int, int], batch: int, label: str):
    """torchinfo's statistics for the batch, and the receptive-field trace of one image."""
    import torchinfo

    device = model_device(model)
    was_training = model.training
    try:
        stats = torchinfo.summary(
            model, input_size=(batch, *input_shape), depth=64, device=device, verbose=0,
            col_names=("output_size", "num_params", "mult_adds"),
        )  # fmt: skip
        with torch.no_grad():  # eval mode: the fields of inference (see receptive.trace)
            fields = trace(model.eval(), torch.rand(1, *input_shape, device=device))
    except RuntimeError as err:
        cause = err.__cause__ or err
        reason = str(cause).strip().splitlines()[0][:160] if str(cause).strip() else "it fails"
        raise ModelError(
            f"{label} cannot take a {'×'.join(map(str, input_shape))} input ({reason}); "
            "give the input it was made for with --input CxHxW"
        ) from None
    finally:
        model.train(was_training)
    return stats, fields


def _module_rows(summary_list: list, fields, names: dict[int, str]) -> list[tuple[float, LayerRow]]:
    """torchinfo's rows, each with the receptive field of the same call; rows of modules
    that never ran (a ModuleList holding others) go just before the next row. `names`: each
    module's dotted path (torchinfo's var_name is its last part only)."""
    calls = defaultdict(list)
    for call in sorted(fields.calls, key=lambda c: c.order):
        calls[id(call.module)].append(call)
    seen: dict[int, int] = defaultdict(int)
    rows: list[tuple[float | None, LayerRow]] = []
    for info in summary_list:
        call = None
        if info.executed and seen[id(info.module)] < len(calls[id(info.module)]):
            call = calls[id(info.module)][seen[id(info.module)]]
            seen[id(info.module)] += 1
        name = call.name if call else names.get(id(info.module), info.var_name)
        row = _row(
            name, info.class_name, info.depth, info.output_size if info.executed else None,
            info.num_params, info.macs if info.is_leaf_layer else 0, info.is_leaf_layer,
            info.is_recursive, call.field if call else None,
        )  # fmt: skip
        rows.append((call.order if call else None, row))
    ordered: list[tuple[float, LayerRow]] = []
    following = float("inf")
    for order, row in reversed(rows):
        if order is not None:
            following = order
        # a row that never ran goes just before the next row that did; orders are whole
        # numbers, so all such rows share that place, in torchinfo's order (a stable sort)
        ordered.append((order if order is not None else following - 0.5, row))
    return ordered[::-1]


def _functional_rows(fields, batch: int) -> list[tuple[float, LayerRow]]:
    rows = []
    for op in fields.ops:
        if op.direct:
            depth = op.module.count(".") + 2 if op.module else 1
            shape = [batch, *op.shape[1:]]
            row = _row(op.module, f"F.{op.kind}", depth, shape, 0, 0, True, False, op.field)
            rows.append((op.order, row))
    return rows


def _row(
    name: str,
    kind: str,
    depth: int,
    shape: list[int] | None,
    params: int,
    mult_adds: int,
    leaf: bool,
    repeated: bool,
    field_: Field | None,
) -> LayerRow:
    axes = field_.axes if field_ else None
    return LayerRow(
        name=name,
        type=kind,
        depth=depth,
        output_shape=list(shape) if shape else None,
        params=max(params, 0),
        mult_adds=max(mult_adds, 0),
        leaf=leaf,
        repeated=repeated,
        receptive_field=tuple(_number(a.rf) for a in axes) if axes else None,
        jump=tuple(_number(a.jump) for a in axes) if axes else None,
        start=tuple(_number(a.start) for a in axes) if axes else None,
        spatial=bool(field_) and field_.dims != (None, None),
        exact=all(a.exact for a in axes) if axes else True,
        aligned=all(a.aligned for a in axes) if axes else True,
    )


def _with_subtree_mult_adds(rows: list[LayerRow]) -> list[LayerRow]:
    """A container's multiply-adds are those of the leaves below it (rows in pre-order)."""
    for i, row in enumerate(rows):
        if row.leaf:
            continue
        below = []
        for later in rows[i + 1 :]:
            if later.depth <= row.depth:
                break
            below.append(later)
        row.mult_adds = sum(r.mult_adds for r in below if r.leaf)
    return rows


def _is_map(row: LayerRow) -> bool:
    """More than one unit per channel: a jump can be seen."""
    return bool(row.output_shape) and len(row.output_shape) == 4 and row.output_shape[2:] != [1, 1]


def _number(value: float) -> float:
    """3.0 → 3 (an int), 0.5 stays: fields are whole or half pixels."""
    return int(value) if float(value).is_integer() else float(value)


def _pair(values: tuple[float, float]) -> str:
    first, second = (f"{v:g}" for v in values)
    return first if first == second else f"{first}×{second}"


def _count(value: int, show: bool) -> str:
    return f"{value:,}" if show and value else "--"
