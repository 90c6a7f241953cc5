"""`cnnlab summary` in detail: how the rows of torchinfo and of the receptive-field trace are
joined (a module called several times, a container that never runs, a conv or pool called in a
forward), the cells they give, the one-line errors, and where a summary's model comes from (a
module, a registered name, a checkpoint or a run folder; the `--input` text).

The models are a few layers on inputs of 5 to 12 pixels, so each summary takes milliseconds;
test_summary.py checks the registry's models. The tests came from mutmut's survivors of
inspect/layer_summary.py (its functions) and inspect/sources.py (docs/TESTING.md).
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.errors import CheckpointError, ConfigError, ModelError
from cnnlab.inspect.layer_summary import summarize, summary
from cnnlab.inspect.sources import parse_input
from cnnlab.models import registry


class Stack(nn.Module):
    """A ModuleList (never called itself) and a conv called three times."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Conv2d(1, 2, 3), nn.ReLU()])
        self.conv = nn.Conv2d(2, 2, 3)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        for _ in range(3):
            x = self.conv(x)
        return x


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, (3, 5))

    def forward(self, x):
        return F.max_pool2d(self.conv(x), 2)


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Inner()

    def forward(self, x):
        return self.inner(x)


class Pooled(nn.Module):
    """A functional pool two levels down, a 3×5 kernel, and a global pool to 1×1."""

    def __init__(self) -> None:
        super().__init__()
        self.outer, self.pool = Outer(), nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.outer(x))


def rows_named(result, name: str) -> list:
    return [row for row in result.rows if row.name == name]


def test_a_module_called_three_times_is_three_rows_whose_fields_grow():
    result = summary(Stack(), (1, 12, 12), verbose=False)
    convs = rows_named(result, "conv")
    # each call joined with its own call in the trace: 3×3 convs on a 3×3 field
    assert [row.receptive_field for row in convs] == [(5, 5), (7, 7), (9, 9)]
    assert [row.start for row in convs] == [(2, 2), (3, 3), (4, 4)]
    assert [row.output_shape for row in convs] == [[1, 2, 8, 8], [1, 2, 6, 6], [1, 2, 4, 4]]
    assert [row.repeated for row in convs] == [False, True, True]
    assert [result.cells(row)[3] for row in convs] == ["38", "(repeated)", "(repeated)"]


def test_a_container_that_never_runs_sits_before_its_children_without_a_field():
    result = summary(Stack(), (1, 12, 12), verbose=False)
    assert [(row.type, row.depth) for row in result.rows[:4]] == [
        ("Stack", 0), ("ModuleList", 1), ("Conv2d", 2), ("ReLU", 2)
    ]  # fmt: skip
    blocks = result.rows[1]
    assert (blocks.output_shape, blocks.receptive_field, blocks.jump, blocks.start) == (None,) * 4
    # nothing to flag: no "≤" (inexact) or "!" (misaligned) line for a row without a field
    assert (blocks.exact, blocks.aligned) == (True, True)
    assert not [line for line in result.footer() if line.startswith(("≤", "!"))]
    # a container's multiply-adds are its leaves': the conv's, the ReLU has none
    conv, relu = result.rows[2:4]
    assert blocks.mult_adds == conv.mult_adds == 2 * 9 * 10 * 10 + 2 * 10 * 10
    assert relu.mult_adds == 0
    assert result.rows[0].mult_adds == result.mult_adds
    # counts are shown for leaves (with thousands separators), "--" for a container above
    # the depth limit and for a leaf without any
    assert [result.cells(row)[3:5] for row in result.rows[:4]] == [
        ["--", "--"], ["--", "--"], ["20", "2,000"], ["--", "--"]
    ]  # fmt: skip


def test_nested_containers_that_never_run_keep_the_models_order():
    class Nested(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 1, 1)
            self.lists = nn.ModuleList([nn.ModuleList([nn.ModuleList([nn.Conv2d(1, 1, 3)])])])

        def forward(self, x):
            return self.lists[0][0][0](self.stem(x))

    result = summary(Nested(), (1, 6, 6), depth=9, verbose=False)
    # the three lists take places between stem and the conv they hold, in the model's order
    # (a third level went before stem), each named by its path, not its last part ("0")
    assert [(row.name, row.type, row.depth) for row in result.rows] == [
        ("", "Nested", 0), ("stem", "Conv2d", 1), ("lists", "ModuleList", 1),
        ("lists.0", "ModuleList", 2), ("lists.0.0", "ModuleList", 3),
        ("lists.0.0.0", "Conv2d", 4),
    ]  # fmt: skip


def test_a_functional_pool_in_a_nested_block_is_a_leaf_row_below_its_caller():
    result = summary(Pooled(), (1, 9, 9), depth=5, verbose=False)
    assert [(row.name, row.type, row.depth) for row in result.rows] == [
        ("", "Pooled", 0), ("outer", "Outer", 1), ("outer.inner", "Inner", 2),
        ("outer.inner.conv", "Conv2d", 3), ("outer.inner", "F.max_pool2d", 3),
        ("pool", "AdaptiveAvgPool2d", 1),
    ]  # fmt: skip
    pool = result.rows[4]
    assert (pool.leaf, pool.repeated, pool.params, pool.mult_adds) == (True, False, 0, 0)
    assert pool.leaf is True and pool.repeated is False
    assert pool.output_shape == [1, 1, 3, 2]
    # the blocks' multiply-adds are the conv's alone (15 weights × 7×5 outputs, and the bias)
    conv = result.rows[3]
    assert conv.mult_adds == 15 * 35 + 35
    assert [row.mult_adds for row in result.rows[:3]] == [conv.mult_adds] * 3


def test_fields_print_whole_pixels_as_ints_and_one_number_for_a_square():
    result = summary(Pooled(), (1, 9, 9), depth=5, verbose=False)
    conv, pool, global_pool = result.rows[3], result.rows[4], result.rows[5]
    assert str(conv.receptive_field) == "(3, 5)" and str(conv.start) == "(1, 2)"
    assert pool.start == (1.5, 2.5)  # a 2×2 pool centres its units between pixels
    # cells: receptive field, jump, start; height×width unless they are the same
    assert result.cells(conv)[5:] == ["3×5", "1", "1×2"]
    assert result.cells(pool)[5:] == ["4×6", "2", "1.5×2.5"]
    assert result.cells(global_pool)[5:] == ["8", "0", "3.5"]
    assert global_pool.mult_adds == 0 and result.cells(global_pool)[4] == "--"


def test_a_jump_of_0_on_a_1x1_output_is_not_explained_as_a_map():
    result = summary(Pooled(), (1, 9, 9), verbose=False)
    pool = rows_named(result, "pool")[0]
    assert pool.spatial and pool.jump == (0, 0) and pool.output_shape == [1, 1, 1, 1]
    assert not any(line.startswith("jump 0") for line in result.footer())


def test_summary_prints_the_table_once_and_nothing_when_not_verbose(capsys):
    result = summary(Pooled(), (1, 9, 9))
    assert capsys.readouterr().out == result.render()  # ends with one newline
    summary(Pooled(), (1, 9, 9), verbose=False)
    assert capsys.readouterr().out == ""  # torchinfo's own table is not printed either


def test_summarize_names_no_source_unless_given():
    result = summarize(Pooled(), (1, 9, 9), batch=1, depth=1, label="pooled")
    assert result.source == "" and result.title() == "pooled, input 1×1×9×9"


class Fails(nn.Module):
    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def forward(self, x):
        raise RuntimeError(self.message)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("first line\nsecond line", "first line"),  # the first line of the model's error
        ("", "it fails"),
        ("x" * 200, "x" * 160),  # cut at 160 characters
    ],
)
def test_a_model_that_cannot_run_is_one_line_naming_it_and_the_input(message, reason):
    with pytest.raises(ModelError) as caught:
        summary(Fails(message), (1, 5, 5), verbose=False)
    assert str(caught.value) == (
        f"Fails cannot take a 1×5×5 input ({reason}); give the input it was made for with "
        "--input CxHxW"
    )


def test_a_model_made_for_one_image_is_traced_with_one():
    class OneImage(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(2 * 3 * 3, 4)

        def forward(self, x):
            return self.fc(self.conv(x).reshape(1, -1))  # a batch of one, always

    result = summary(OneImage(), (1, 5, 5), verbose=False)
    assert rows_named(result, "fc")[0].output_shape == [1, 4]


def test_a_model_that_runs_image_by_image_gets_a_row_per_call():
    class PerImage(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x):
            return torch.cat([self.conv(image[None]) for image in x])

    # torchinfo sees two calls at batch 2, the trace of one image one: no row is lost
    result = summary(PerImage(), (1, 6, 6), batch=2, verbose=False)
    convs = rows_named(result, "conv")
    assert [row.repeated for row in convs] == [False, True]
    assert convs[0].receptive_field == (3, 3)
    assert result.rows[0].output_shape == [2, 1, 4, 4]


def test_a_model_on_the_meta_device_is_summarised_where_it_is():
    # a model too big for memory can be built on "meta" (no weights) and still summarised
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    result = summary(model, (1, 8, 8), verbose=False)
    assert result.total_params == 20
    assert result.rows[1].output_shape == [1, 2, 6, 6]
    assert result.rows[1].receptive_field == (3, 3)
    assert next(model.parameters()).device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_is_summarised_on_its_own_device_where_cuda_is_there():
    # torchinfo alone would move a CPU model to the GPU; the trace's image goes to the model's
    for device in ("cuda", "cpu"):
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).to(device)
        result = summary(model, (1, 8, 8), verbose=False)
        assert result.rows[1].receptive_field == (3, 3)
        assert next(model.parameters()).device.type == device


# --- where the model comes from (sources.py) -----------------------------------------------------
def test_parse_input_names_the_option_in_its_errors():
    assert parse_input("3x64x48") == (3, 64, 48)
    with pytest.raises(ConfigError) as caught:
        parse_input("3x4")
    assert str(caught.value) == "--input expects CxHxW, like 3x32x32, got '3x4'"
    with pytest.raises(ConfigError) as caught:
        parse_input("0x4x4")
    assert str(caught.value) == "--input must be positive, got '0x4x4'"


def test_a_module_built_by_cnnlab_brings_its_name_and_input_shape():
    result = summary(cnnlab.create_model("mnist_cnn"), verbose=False)
    assert (result.model_name, result.input_shape, result.source) == ("mnist_cnn", (1, 28, 28), "")


def test_another_module_is_named_by_its_class_and_needs_an_input_shape():
    assert summary(Pooled(), (1, 9, 9), verbose=False).model_name == "Pooled"
    with pytest.raises(ModelError) as caught:
        summary(Pooled(), verbose=False)
    assert str(caught.value) == (
        "give the input shape (C, H, W): this model was not built by cnnlab"
    )


def test_a_registered_name_is_built_and_a_builders_type_error_is_one_line(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # undone after the test

    @cnnlab.register_model(input_shape=(1, 6, 6), num_classes=2)
    def loose_conv(*, num_classes, in_channels, image_size, init="default", **kwargs):
        return nn.Conv2d(in_channels, num_classes, 3, **kwargs)  # any keyword reaches Conv2d

    result = summary("loose_conv", verbose=False)
    assert (result.model_name, result.input_shape, result.source) == ("loose_conv", (1, 6, 6), "")
    with pytest.raises(ModelError) as caught:
        summary("loose_conv", model_args={"bogus": 1}, verbose=False)
    assert re.fullmatch(
        r"loose_conv: .*unexpected keyword argument 'bogus'; see its builder's arguments",
        str(caught.value),
    )


def test_a_path_that_is_not_there_is_a_checkpoint_error_not_an_unknown_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a .pt name without a folder, and a folder path without .pt: both are files, not names
    for text in ("missing.pt", f"{tmp_path}/run"):
        with pytest.raises(CheckpointError) as caught:
            summary(text, verbose=False)
        assert str(caught.value) == (
            f"{text} does not exist; give a model name, a .pt file or a run folder "
            "(`cnnlab models` lists the names)"
        )
    with pytest.raises(ConfigError) as caught:
        summary("missing.pt", model_args={"width": 2}, verbose=False)
    assert str(caught.value) == "--model-arg is for a model name; a checkpoint holds its own"


def test_a_run_folder_is_summarised_from_its_best_checkpoint_at_any_given_size(tiny_run):
    result = summary(tiny_run, "1x29x29", verbose=False)
    assert result.model_name == "mnist_cnn" and result.input_shape == (1, 29, 29)
    assert result.source == str(tiny_run / "best.pt")
    assert result.title() == f"mnist_cnn from {tiny_run / 'best.pt'}, input 1×1×29×29"
    assert rows_named(result, "conv1")[0].output_shape == [1, 10, 25, 25]


def test_a_checkpoint_that_cannot_be_rebuilt_names_its_file(tiny_run, tmp_path):
    from cnnlab.training.checkpoint import save_checkpoint

    state = cnnlab.load_checkpoint(tiny_run / "best.pt")
    crafted = tmp_path / "crafted.pt"
    name = f"{tmp_path / 'net.py'}:Net"
    save_checkpoint({**state, "model_name": name, "model_source": None}, crafted)
    with pytest.raises(ModelError, match=f"^{re.escape(str(crafted))} names its model"):
        summary(crafted, verbose=False)
