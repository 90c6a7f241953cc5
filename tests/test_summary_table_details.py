"""The table `cnnlab summary` prints (inspect/layer_summary.py, class ModelSummary): its cells,
the marks of the receptive-field column, the lines below the table, the width it is wrapped to,
its title and the HTML a notebook shows, each written out by hand for tiny models (a conv, a pool
and a linear layer on an 8×8 image; the summary of each takes milliseconds).

test_summary.py checks the numbers (seed 001's shapes, torchinfo's counts, the fields); these
tests exist because mutmut's survivors of ModelSummary (docs/TESTING.md) showed the printed form
of those numbers unchecked.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import sys

import pytest
import torch
from torch import nn

from cnnlab.inspect.layer_summary import COLUMNS, summarize

FOOTER_KEY = [  # the key to the columns, under every table (wrapped at 160 columns)
    "receptive field: the input pixels one unit sees, padding included; jump: input pixels "
    "between neighbouring units; start: centre of the first unit's field (0 is",
    "  the first input pixel; — : no longer a map, every unit sees the same)",
]


class Excite(nn.Module):
    """Squeeze-and-excitation: every unit of the map is scaled by the mean of the whole map."""

    def __init__(self) -> None:
        super().__init__()
        self.squeeze = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return x * torch.sigmoid(self.squeeze(x))


class Marks(nn.Module):
    """Every mark: two paths centred differently (!), an adaptive pool whose windows differ (≤),
    fields past the 16×16 input (*), a map of jump 0, and two functions not followed."""

    def __init__(self) -> None:
        super().__init__()
        self.pool, self.conv = nn.AvgPool2d(2), nn.Conv2d(1, 1, 1, stride=2)
        self.adaptive = nn.AdaptiveAvgPool2d(3)  # 8 → 3: windows of 3 and 4 pixels
        self.excite = Excite()

    def forward(self, x):
        x = self.excite(self.adaptive(self.pool(x) + self.conv(x)))
        return torch.flip(torch.roll(x, 1, dims=-1), dims=[-1])


class Shared(nn.Module):
    """A conv called twice, a conv nested three deep, and a ModuleList (a row that never runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.deep = nn.Sequential(nn.Sequential(nn.Conv2d(1, 1, 1)))
        self.blocks = nn.ModuleList([nn.ReLU()])

    def forward(self, x):
        return self.blocks[0](self.deep(self.conv(self.conv(x))))


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 3))


@pytest.fixture(scope="module")
def tiny():
    return summarize(tiny_model(), (1, 8, 8), batch=2, depth=3, label="tiny")


@pytest.fixture(scope="module")
def marks():
    return summarize(Marks(), (1, 16, 16), batch=1, depth=3, label="marks")


@pytest.fixture(scope="module")
def shared():
    return summarize(Shared(), (1, 4, 4), batch=1, depth=3, label="shared")


def test_the_printed_table_of_a_conv_pool_linear_model_line_for_line(tiny):
    # conv 2×(3×3)+2 = 20 weights, 20 × 36 positions × batch 2 = 1,440 mult-adds; linear
    # 18×3+3 = 57, ×2 = 114; the container's totals are left to the footer ("--"); the field
    # of the flattened rows is the whole 8×8 image, no "*" as it is not larger than the input
    assert tiny.render(width=160).splitlines() == [
        "                                    tiny, input 2×1×8×8",
        "",
        "  layer   type         output shape   params   mult-adds   receptive field   jump   start",
        " " + "─" * 89,  # the rule under the header, as wide as the table
        "  tiny    Sequential   2×3                --          --                 8      —     3.5",
        "    0     Conv2d       2×2×6×6            20       1,440                 3      1       1",
        "    1     MaxPool2d    2×2×3×3            --          --                 4      2     1.5",
        "    2     Flatten      2×18               --          --                 8      —     3.5",
        "    3     Linear       2×3                57         114                 8      —     3.5",
        "parameters   77 (trainable 77, frozen 0)",
        "mult-adds    1,554 for a batch of 2",
        "memory       input 512 B, parameters 308 B, activations 888 B (forward, batch of 2)",
        *FOOTER_KEY,
    ]
    assert tiny.render(width=160).endswith(")\n")  # one newline after the last line, no more


def test_a_container_at_the_depth_limit_shows_its_totals(tiny):
    # depth 0 shows the model alone: its row stands for everything below it
    top = dataclasses.replace(tiny, depth=0)
    assert [top.cells(row) for row in top.shown_rows] == [
        ["tiny", "Sequential", "2×3", "77", "1,554", "8", "—", "3.5"]
    ]


def test_repeated_nested_and_never_run_rows(shared):
    # the second call of `conv` shares the first one's weights: counted once, marked; the
    # nested conv is named by the last part of "deep.0.0"; the ModuleList never runs itself,
    # so it has no shape and no field, while the ReLU it holds does
    assert [shared.cells(row) for row in shared.shown_rows] == [
        ["shared", "Shared", "1×1×4×4", "--", "--", "5*", "1", "0"],
        ["  conv", "Conv2d", "1×1×4×4", "10", "160", "3", "1", "0"],
        ["  conv", "Conv2d", "1×1×4×4", "(repeated)", "160", "5*", "1", "0"],
        ["  deep", "Sequential", "1×1×4×4", "--", "--", "5*", "1", "0"],
        ["    0", "Sequential", "1×1×4×4", "--", "--", "5*", "1", "0"],
        ["      0", "Conv2d", "1×1×4×4", "2", "32", "5*", "1", "0"],
        ["  blocks", "ModuleList", "", "--", "--", "", "", ""],
        ["    0", "ReLU", "1×1×4×4", "--", "--", "5*", "1", "0"],
    ]
    assert shared.footer()[4:] == ["* larger than the 4×4 input: it reaches into the padding"]


def test_marks_of_the_field_column_and_the_lines_that_explain_them(marks):
    assert [marks.cells(row)[5:] for row in marks.shown_rows] == [
        ["≤18*!", "—", "7.5"],  # after roll and flip: no longer a map
        ["2", "2", "0.5"],
        ["1", "2", "0"],
        ["≤8!", "5", "2.5"],
        ["≤18*!", "0", "7.5"],  # a 3×3 map whose units all see the same pixels
        ["≤18*!", "0", "7.5"],
    ]
    assert marks.footer()[4:] == [
        "* larger than the 16×16 input: it reaches into the padding",
        "jump 0: every unit of the map sees the same pixels (a global pooling feeds it, "
        "as in squeeze-and-excitation)",
        "≤ the units' fields differ in size (adaptive pooling): the largest",
        "! paths merging here are centred differently: their union is shown",
        "not followed, taken to mix every position (an overestimate): flip ×1, roll ×1",
    ]


def test_the_title_names_the_checkpoint_the_model_came_from(tiny):
    assert tiny.title() == "tiny, input 2×1×8×8"
    checkpoint = dataclasses.replace(tiny, source="runs/a/best.pt")
    assert checkpoint.title() == "tiny from runs/a/best.pt, input 2×1×8×8"


def test_the_notebook_table_right_aligns_the_numbers(tiny):
    page = tiny._repr_html_()
    assert page.startswith("<p><strong>tiny, input 2×1×8×8</strong></p><table>")
    header = re.findall(r'<th style="([^"]*)">([^<]*)</th>', page)
    assert [name for _, name in header] == list(COLUMNS)
    # layer, type and shape are text; params, mult-adds and the field columns are numbers
    right = [style.startswith("text-align: right") for style, _ in header]
    assert right == [False, False, False, True, True, True, True, True]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", page)
    assert cells[8:16] == ["  0", "Conv2d", "2×2×6×6", "20", "1,440", "3", "1", "1"]
    footer = re.search(r"<pre>(.*)</pre>", page, re.S).group(1)
    assert footer.splitlines()[:3] == [
        "parameters   77 (trainable 77, frozen 0)",
        "mult-adds    1,554 for a batch of 2",
        "memory       input 512 B, parameters 308 B, activations 888 B (forward, batch of 2)",
    ]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_width_is_the_terminals_or_160_and_str_is_always_160(tiny, monkeypatch):
    # a name that makes the last footer line 161 characters long: wrapped at 160 columns
    long_line = dataclasses.replace(tiny, unknown={"x" * 97: 1})
    at_160 = ["not followed, taken to mix every position (an overestimate): " + "x" * 97, "  ×1"]
    monkeypatch.setattr(shutil, "get_terminal_size", lambda: os.terminal_size((100, 24)))
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a pipe or a file: 160
    assert long_line.render().splitlines()[-2:] == at_160
    assert long_line.render(width=161).splitlines()[-1] == at_160[0] + " ×1"  # fits in 161
    monkeypatch.setattr(sys, "stdout", Terminal())  # a terminal: its 100 columns
    assert long_line.render() == long_line.render(width=100)
    assert max(map(len, long_line.render().splitlines())) <= 100
    assert str(long_line) == long_line.render(width=160)  # printing an object is not a terminal
    assert str(long_line).splitlines()[-2:] == at_160
