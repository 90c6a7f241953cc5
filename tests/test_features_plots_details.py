"""The figures of `cnnlab features` in detail (inspect/features.py's plot_filters, plot_image,
plot_feature_maps, _coloured, layer_title, conv_filters): which layer's filters are drawn and how
it is numbered, the colours each tile gets (RGB filters on their own range, grey filters on one
scale around 0, feature maps on their own range or one shared one), the labels, layouts,
titles and subtitles, and the input image's axes, colour map and pixels.

Everything runs on tiny hand-made convs and maps (no training, milliseconds each). The tiles
given to `tile_figure` are recorded by wrapping it, so a test compares them with colours made
here straight from matplotlib's colour maps. These tests exist because docs/TESTING.md's
mutation run left these paths untested (survivors of `mutmut run "cnnlab.inspect.features*"`).
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.figures import DPI, TITLE
from cnnlab.inspect import features
from cnnlab.inspect.features import (
    INPUT_SIZE,
    _coloured,
    conv_filters,
    layer_title,
    plot_feature_maps,
    plot_filters,
    plot_image,
)

GREY_SCALE = "grey: 0, white: +max |w|, black: -max |w|"


def _colours(norm, cmap: str) -> np.ndarray:
    """The uint8 RGB colours of values already on 0..1, straight from matplotlib."""
    return matplotlib.colormaps[cmap](np.asarray(norm, dtype=float), bytes=True)[..., :3]


@pytest.fixture
def drawn(monkeypatch) -> list[dict]:
    """Every tile_figure call of the test (layout, tiles, labels, title, subtitle); the figure
    is still drawn by the real tile_figure."""
    calls = []
    real = features.tile_figure

    def record(layout, tiles, labels, title, subtitle):
        calls.append(dict(layout=layout, tiles=tiles, labels=labels, title=title, sub=subtitle))
        return real(layout, tiles, labels, title, subtitle)

    monkeypatch.setattr(features, "tile_figure", record)
    return calls


def _conv(c_in: int, c_out: int, kernel, weight=None) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel, bias=False)
    if weight is not None:
        with torch.no_grad():
            conv.weight.copy_(torch.tensor(weight, dtype=torch.float32))
    return conv


def _two_convs() -> nn.Sequential:
    """Conv2d modules "0" (3 → 2) and "2" (2 → 3)."""
    return nn.Sequential(_conv(3, 2, (1, 2)), nn.ReLU(), _conv(2, 3, (1, 2)))


# --- which layer, and its number ---------------------------------------------------------------


def test_conv_filters_of_a_named_layer_are_that_layers_weights():
    model = _two_convs()
    assert torch.equal(conv_filters(model, "2"), model[2].weight.detach())
    assert torch.equal(conv_filters(model), model[0].weight.detach())  # default: the first


def test_plot_filters_of_a_named_layer_draws_it_numbered_by_its_place(drawn):
    model = _two_convs()
    fig = plot_filters(model, "2")
    assert drawn[0]["title"] == "conv layer 2 of 2 (module 2): 3 filters, each 2×1×2"
    assert fig.texts[-2].get_text() == drawn[0]["title"]
    # a second call of the same module ("2#2" in feature_maps) is numbered as the module
    plot_filters(model, "2#2")
    assert drawn[1]["title"] == "conv layer 2 of 2 (module 2#2): 3 filters, each 2×1×2"


def test_layer_title_shortens_module_paths_longer_than_24_characters():
    assert layer_title("a" * 24, 1, 2) == f"conv layer 1 of 2 (module {'a' * 24})"
    name = "abcdefghijklmnopqrstuvwxy"  # 25 characters: 11, an ellipsis, 11
    assert layer_title(name, 3, 4) == "conv layer 3 of 4 (module abcdefghijk…opqrstuvwxy)"


# --- filters -----------------------------------------------------------------------------------


def test_rgb_filters_are_each_scaled_to_their_own_range(drawn):
    # filter 0 spans -0.5..0.25 (a range under 1), filter 1 is 1..3
    weight = [
        [[[-0.5, 0.0]], [[0.25, -0.25]], [[-0.5, -0.5]]],
        [[[1.0, 3.0]], [[2.0, 2.0]], [[3.0, 1.0]]],
    ]
    plot_filters(nn.Sequential(_conv(3, 2, (1, 2), weight)))
    [call] = drawn
    assert call["title"] == "conv layer 1 of 1 (module 0): 2 filters, each 3×1×2"
    assert call["sub"] == "RGB, each filter scaled to its own range"
    assert call["labels"] == ["filter 0", "filter 1"]
    # (value - min) / range × 255, one (1, 2, RGB) tile per filter
    expected = [[[[0, 255, 0], [170, 85, 0]]], [[[0, 128, 255], [255, 128, 0]]]]
    for tile, pixels in zip(call["tiles"], expected, strict=True):
        assert tile.dtype == np.uint8  # a float tile could not be shrunk by PIL for big kernels
        assert tile.tolist() == pixels


def test_grey_filters_share_one_scale_centred_on_zero(drawn):
    # the largest |w| is 2: -2 is black, 0 mid-grey, +2 white, in every tile
    weight = [
        [[[-2.0, 2.0]], [[0.0, 1.0]]],
        [[[0.5, -0.5]], [[-1.0, 0.0]]],
        [[[0.0, 0.0]], [[1.5, -1.5]]],
    ]
    plot_filters(nn.Sequential(_conv(2, 3, (1, 2), weight)))
    [call] = drawn
    assert call["sub"] == GREY_SCALE  # all the input channels are shown: no "input channels"
    assert call["labels"] == ["f0 ch 0", "f0 ch 1", "f1 ch 0", "f1 ch 1", "f2 ch 0", "f2 ch 1"]
    expected = [_colours((np.array(w[0]) + 2) / 4, "gray") for f in weight for w in f]
    assert len(call["tiles"]) == 6
    for tile, colours in zip(call["tiles"], expected, strict=True):
        assert np.array_equal(tile, colours[None])
    assert call["tiles"][1].tolist() == [[[128, 128, 128], [192, 192, 192]]]  # 0 and +1
    # a filter per row: its two input channels side by side
    assert (call["layout"].columns, call["layout"].rows) == (2, 3)


def test_one_input_channel_labels_each_tile_by_its_filter(drawn):
    plot_filters(nn.Sequential(_conv(1, 2, 1)))
    assert drawn[0]["labels"] == ["filter 0", "filter 1"]
    assert drawn[0]["sub"] == GREY_SCALE


def test_more_than_eight_input_channels_shows_the_first_eight(drawn):
    plot_filters(nn.Sequential(_conv(10, 2, 1)))
    [call] = drawn
    assert call["sub"] == f"{GREY_SCALE}; input channels 0-7 of 10"
    assert len(call["tiles"]) == 16 and call["layout"].columns == 8


def test_at_least_one_filter_is_shown_however_small_max_tiles(drawn):
    plot_filters(nn.Sequential(_conv(3, 4, 1)), max_tiles=1)
    plot_filters(nn.Sequential(_conv(2, 4, 1)), max_tiles=1)  # 1 // 2 tiles per filter is 0
    assert [len(call["tiles"]) for call in drawn] == [1, 2]
    assert drawn[0]["title"].endswith("4 filters, each 3×1×1 (first 1 shown)")
    assert drawn[1]["title"].endswith("4 filters, each 2×1×1 (first 1 shown)")


# --- feature maps ------------------------------------------------------------------------------


def test_a_batch_of_maps_draws_its_first_image(drawn):
    first = torch.tensor(
        [[[0.0, 1.0], [2.0, 3.0]], [[5.0, 4.0], [4.0, 4.0]], [[1.0, 1.0], [0.0, 1.0]]]
    )
    maps = {"a": torch.stack([first, -first])}  # (N=2, C=3, 2, 2)
    [fig] = plot_feature_maps(maps)
    [call] = drawn
    assert call["title"] == "conv layer 1 of 1 (module a): output 3×2×2 (C×H×W)"
    sub = "feature maps before activation, all 3 channels, each scaled to its own range"
    assert call["sub"] == sub
    assert fig.texts[-1].get_text() == sub
    assert call["labels"] == ["a[0]", "a[1]", "a[2]"]
    for c, tile in enumerate(call["tiles"]):  # own range: min is the lowest colour, max the top
        norm = (first[c] - first[c].min()) / (first[c].max() - first[c].min())
        assert np.array_equal(tile, _colours(norm, "viridis"))


def test_only_the_first_max_tiles_channels_are_drawn(drawn):
    plot_feature_maps({"a": torch.randn(5, 2, 2)}, max_tiles=3)
    assert drawn[0]["sub"].endswith(", first 3 of 5 channels, each scaled to its own range")
    assert len(drawn[0]["tiles"]) == 3


def test_one_by_one_maps_share_the_layers_colour_scale(drawn):
    plot_feature_maps({"fc": torch.tensor([0.0, 1.0, 2.0]).reshape(3, 1, 1)})
    [call] = drawn
    assert call["sub"].endswith(", all 3 channels, one colour scale for all")
    # 0, 1 and 2 on the range 0..2: bottom, middle and top of viridis
    expected = _colours([0.0, 0.5, 1.0], "viridis")
    assert [tile.tolist() for tile in call["tiles"]] == [[[list(c)]] for c in expected]


@pytest.mark.parametrize("shape", [(2, 2, 1), (2, 1, 2)])
def test_maps_of_two_values_are_each_scaled_to_their_own_range(drawn, shape):
    plot_feature_maps({"a": torch.arange(4.0).reshape(shape)})
    assert drawn[0]["sub"].endswith(", all 2 channels, each scaled to its own range")


def test_channel_labels_give_up_the_layer_name_beyond_15_characters(drawn):
    # "abcdefghijkl[0]" is 15 characters, "abcdefghijklm[0]" 16
    plot_feature_maps({"abcdefghijkl": torch.ones(1, 2, 2), "abcdefghijklm": torch.ones(1, 2, 2)})
    assert [call["labels"] for call in drawn] == [["abcdefghijkl[0]"], ["channel 0"]]


# --- _coloured ---------------------------------------------------------------------------------


def test_coloured_maps_values_from_low_to_high():
    values = torch.tensor([[-1.0, 1.0]])
    assert np.array_equal(_coloured(values, "viridis", -2, 2), _colours([[0.25, 0.75]], "viridis"))
    # by default the map's own range, here one under 1 wide
    values = torch.tensor([[0.0, 0.25, 0.5]])
    assert np.array_equal(_coloured(values, "viridis"), _colours([[0.0, 0.5, 1.0]], "viridis"))


def test_a_constant_map_gets_the_lowest_colour():
    tile = _coloured(torch.full((2, 2), 3.0), "viridis")
    assert np.array_equal(tile, _colours(np.zeros((2, 2)), "viridis"))
    assert tile[0, 0].tolist() == [68, 1, 84]  # viridis's dark purple, not "bad" black


# --- the input image ---------------------------------------------------------------------------


def test_a_grey_image_is_drawn_in_grey_from_0_to_255_pixel_for_pixel():
    image = torch.tensor([[[10, 20, 30], [40, 50, 250]]], dtype=torch.uint8)  # (1, 2, 3)
    fig = plot_image(image, "the title", "the subtitle")
    [ax] = fig.axes
    [shown] = ax.images
    assert np.array_equal(shown.get_array(), image[0].numpy())
    assert shown.get_cmap().name == "gray"
    assert (shown.norm.vmin, shown.norm.vmax) == (0, 255)  # not the image's own 10..250
    assert shown.get_interpolation() == "nearest"
    assert [t.get_text() for t in fig.texts] == ["the title", "the subtitle"]


def test_an_image_of_three_or_more_channels_is_drawn_as_rgb_of_the_first_three():
    image = torch.arange(16, dtype=torch.uint8).reshape(4, 2, 2)
    fig = plot_image(image)
    [shown] = fig.axes[0].images
    assert np.array_equal(shown.get_array(), image[:3].permute(1, 2, 0).numpy())
    assert shown.get_interpolation() == "nearest"
    assert [t.get_text() for t in fig.texts] == ["", ""]  # no title by default


def test_input_png_keeps_its_size_and_layout_whatever_matplotlibs_settings():
    # a notebook may set another figure.dpi: input.png's pixel size must not follow it
    with matplotlib.rc_context({"figure.dpi": 72}):
        fig = plot_image(torch.zeros(1, 2, 2, dtype=torch.uint8))
    assert fig.dpi == DPI
    assert tuple(fig.get_size_inches()) == INPUT_SIZE
    # a square image box of the height left under the title band, centred across the width
    width, height = INPUT_SIZE
    side = height - TITLE
    expected = ((width - side) / 2 / width, 0.05 / height, side / width, (side - 0.1) / height)
    assert fig.axes[0].get_position(original=True).bounds == pytest.approx(expected)
