"""`cnnlab summary`: seed 001's shapes, torchinfo's counts, receptive fields, any model source."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.cli import main
from cnnlab.inspect.layer_summary import summary
from helpers import write_learnable_npz

# seed 001: `for layer in net: X = layer(X); print(layer.__class__.__name__, X.shape)`
LENET_SHAPES = [
    ("Conv2d", [1, 6, 28, 28]),
    ("Sigmoid", [1, 6, 28, 28]),
    ("AvgPool2d", [1, 6, 14, 14]),
    ("Conv2d", [1, 16, 10, 10]),
    ("Sigmoid", [1, 16, 10, 10]),
    ("AvgPool2d", [1, 16, 5, 5]),
    ("Flatten", [1, 400]),
    ("Linear", [1, 120]),
    ("Sigmoid", [1, 120]),
    ("Linear", [1, 84]),
    ("Sigmoid", [1, 84]),
    ("Linear", [1, 10]),
]
# by hand: conv5 p2 → 5; pool2 → 5 + 1 = 6, jump 2; conv5 → 6 + 4*2 = 14; pool2 → 16, jump 4;
# then every unit sees all 5×5 units: 16 + 4*4 = 32 pixels, more than the 28 of the image
LENET_FIELDS = [5, 5, 6, 14, 14, 16, 32, 32, 32, 32, 32, 32]
LENET_JUMPS = [1, 1, 2, 2, 2, 4]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("summary")
    data = write_learnable_npz(root / "data", size=32, train=64, test=32)
    result = cnnlab.train(
        model="lenet", dataset=f"npz:{data}", epochs=1, batch_size=32, out_dir=str(root),
        name="run", progress="none", tensorboard=False,
    )  # fmt: skip
    return result.run_dir


def test_lenet_rows_are_seed_001s_shapes_with_61706_parameters():
    result = summary("lenet", verbose=False)
    layers = [row for row in result.rows if row.depth == 1]
    assert [(row.type, row.output_shape) for row in layers] == LENET_SHAPES
    assert result.total_params == 61_706 == result.trainable_params
    assert [row.receptive_field[0] for row in layers] == LENET_FIELDS
    assert [row.jump[0] for row in layers[:6]] == LENET_JUMPS
    assert [row.spatial for row in layers] == [True] * 6 + [False] * 6
    model = cnnlab.create_model("lenet")
    for row, layer in zip(layers, model, strict=True):
        assert row.params == sum(p.numel() for p in layer.parameters())
    # multiply-adds of a conv: weights × output positions (torchinfo's count)
    assert layers[0].mult_adds == 6 * 25 * 28 * 28 + 6 * 28 * 28


def test_command_prints_the_table_the_function_prints(capsys):
    assert main(["summary", "lenet"]) == 0
    printed = capsys.readouterr().out
    assert "61,706" in printed and "receptive field" in printed
    assert "32*" in printed and "larger than the 28×28 input" in printed
    summary("lenet")
    from_python = capsys.readouterr().out
    assert [line.rstrip() for line in printed.splitlines()] == [
        line.rstrip() for line in from_python.splitlines()
    ]
    assert cnnlab.summary is summary


def test_batch_and_input_size_change_shapes_memory_and_the_model_built():
    small = summary("lenet", verbose=False)
    large = summary("lenet", "3x32x32", batch=8, verbose=False)
    assert large.rows[1].output_shape == [8, 6, 32, 32]
    assert large.input_shape == (3, 32, 32)
    assert large.total_params == 61_706 + 2 * 6 * 25 + 16 * (36 - 25) * 120  # 3 channels, 6×6
    # every layer's output, counted by running the layers one by one
    x, floats = torch.zeros(8, 3, 32, 32), 0
    for layer in cnnlab.create_model("lenet", in_channels=3, image_size=32):
        x = layer(x)
        floats += x.numel()
    assert large.activation_bytes == 4 * floats
    assert small.activation_bytes == 4 * 15_002  # seed 001's shapes, added up by hand
    assert large.input_bytes == 8 * 3 * 32 * 32 * 4


def test_depth_hides_nested_rows_but_not_totals():
    deep = summary("tv_resnet18", "3x64x64", depth=3, verbose=False)
    shallow = summary("tv_resnet18", "3x64x64", depth=1, verbose=False)
    assert {row.depth for row in shallow.shown_rows} == {0, 1}
    assert max(row.depth for row in deep.shown_rows) == 3
    assert shallow.total_params == deep.total_params == 11_689_512
    layer4 = next(row for row in shallow.rows if row.name == "layer4")
    assert layer4.receptive_field == (435, 435)  # ResNet-18's well-known field at any size
    assert layer4.mult_adds == sum(
        row.mult_adds for row in shallow.rows if row.leaf and row.name.startswith("layer4.")
    )


def test_functional_pools_of_a_seed_model_get_rows_of_their_own():
    result = summary("net", depth=1, verbose=False)
    types = [row.type for row in result.shown_rows]
    assert types.count("F.max_pool2d") == 2
    pools = [row for row in result.rows if row.type == "F.max_pool2d"]
    assert [row.receptive_field for row in pools] == [(4, 4), (10, 10)]
    assert [row.output_shape for row in pools] == [[1, 16, 16, 16], [1, 8, 8, 8]]
    assert types.index("F.max_pool2d") == types.index("Conv2d") + 2  # after conv1 and its BN


def test_frozen_parameters_are_counted_apart():
    model = cnnlab.create_model("lenet")
    model[0].requires_grad_(False)
    result = summary(model, (1, 28, 28), verbose=False)
    assert result.frozen_params == 156
    assert result.trainable_params == 61_706 - 156


def test_marks_for_misaligned_paths_inexact_fields_and_unknown_functions(capsys):
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool, self.conv = nn.AvgPool2d(2), nn.Conv2d(1, 1, 1, stride=2)
            self.adaptive = nn.AdaptiveAvgPool2d(3)

        def forward(self, x):
            x = self.pool(x) + self.conv(x)
            return torch.roll(self.adaptive(x), 1, dims=-1)

    result = summary(Odd(), (1, 16, 16))
    printed = capsys.readouterr().out
    assert not result.rows[0].aligned
    adaptive = next(row for row in result.rows if row.name == "adaptive")
    assert not adaptive.exact
    assert result.unknown == {"roll": 1}
    assert "!" in printed and "≤" in printed and "roll ×1" in printed


def test_a_run_folder_and_a_checkpoint_are_summarised_at_their_training_size(run_dir, capsys):
    assert main(["summary", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "lenet" in printed and "1×1×32×32" in printed
    result = summary(run_dir / "best.pt", verbose=False)
    assert result.input_shape == (1, 32, 32)
    layers = [row for row in result.rows if row.depth == 1]
    assert layers[6].output_shape == [1, 576]  # the Linear layer built for 32×32
    built = summary("lenet", "1x32x32", model_args={"num_classes": 4}, verbose=False)
    assert result.total_params == built.total_params


def test_summary_of_a_module_needs_its_input_shape():
    with pytest.raises(cnnlab.ModelError, match="input shape"):
        summary(nn.Sequential(nn.Conv2d(1, 1, 3)), verbose=False)


def test_squeeze_and_excitation_makes_every_unit_see_the_whole_image():
    result = summary("tv_mobilenet_v3_small", "3x64x64", depth=2, verbose=False)
    first_block = next(row for row in result.rows if row.name == "features.1")
    assert first_block.jump == (0, 0) and first_block.output_shape[2:] == [16, 16]
    assert first_block.receptive_field[0] > 64
    stem = next(row for row in result.rows if row.name == "features.0")
    assert stem.jump == (2, 2) and stem.receptive_field == (3, 3)
    assert "jump 0: every unit of the map sees the same pixels" in str(result)


def test_model_args_from_the_command_line_reach_the_builder(capsys):
    assert main(["summary", "net_width", "--model-arg", "n_chans1=8", "--depth", "0"]) == 0
    narrow = capsys.readouterr().out
    built = cnnlab.create_model("net_width", n_chans1=8)
    count = sum(p.numel() for p in built.parameters())
    assert f"parameters   {count:,} " in narrow
    assert count != sum(p.numel() for p in cnnlab.create_model("net_width").parameters())
