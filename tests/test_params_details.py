"""`cnnlab params` in detail (inspect/params.py): the lines `format_params` prints, word for
word and column for column, the ratio line in both directions and at its rounding edges, and
the refusal of a zero channel count.

Everything is plain arithmetic on hand-made shapes, so each test takes microseconds;
test_convcalc.py checks the counts against real torch layers. These tests exist because
docs/TESTING.md's mutation run left the paths untested (survivors of mutmut in
cnnlab.inspect.params).
"""

from __future__ import annotations

import pytest

from cnnlab.errors import ConfigError
from cnnlab.inspect.params import compare_params, format_params

SEED_LINES = [
    "input 3x32x32 -> output 16x32x32 (kernel 3x3, stride 1, padding same)",
    "",
    "                                           weights  biases  weights per output unit",
    "convolution                         16*3*3*3 = 432      16               3*3*3 = 27",
    "fully connected  (3*32*32)*(16*32*32) = 50,331,648  16,384          3*32*32 = 3,072",
    "",
    "the convolution has 116,508× fewer weights: the fully connected layer has 50,331,648, "
    "the convolution 432",
    "seed 000 writes 16*3*3*3=1728 and 3*32*32=9216; the products are 432 and 3,072",
]


def test_the_seed_case_prints_exactly_these_lines():
    # Every word, blank line and column: the numbers columns are flush right, so the counts
    # line up under their headings; the seed's slips are quoted as the seed wrote them.
    assert format_params(compare_params()) == SEED_LINES


def test_a_numeric_padding_is_written_as_its_numbers():
    # Only padding="same" is written as the word; padding 1 must say 1.
    lines = format_params(compare_params("1x1x1", 1, 3, 1, 1))
    assert lines[0] == "input 1x1x1 -> output 1x1x1 (kernel 3x3, stride 1, padding 1)"


def test_when_the_convolution_has_more_weights_the_line_says_so():
    # A 3x3 kernel over one padded pixel: 9 conv weights against 1 fully connected weight.
    # The layers swap places in the sentence and the ratio is inverted (9, not 0.1 or 18),
    # written without a ".0".
    lines = format_params(compare_params("1x1x1", 1, 3, 1, 1))
    assert lines[-1] == (
        "the fully connected layer has 9× fewer weights: the convolution has 9, "
        "the fully connected layer 1"
    )


def test_a_ratio_between_one_and_two_keeps_the_convolution_as_the_smaller():
    # 4 fully connected weights against 3: the ratio 1.33 is above 1 (the fully connected
    # layer is bigger) and below 100, so it keeps one decimal.
    lines = format_params(compare_params("1x2x1", 1, (3, 1), 1, (1, 0)))
    assert lines[-1] == (
        "the convolution has 1.3× fewer weights: the fully connected layer has 4, the convolution 3"
    )


def test_a_ratio_of_100_or_more_is_a_whole_number():
    # 504 against 5 is 100.8: from 100 up the ratio is rounded to a whole number.
    p = compare_params("1x2x9", 1, (1, 5), 1, 1)
    assert p.ratio == pytest.approx(100.8)
    assert format_params(p)[-1] == (
        "the convolution has 101× fewer weights: the fully connected layer has 504, "
        "the convolution 5"
    )


def test_a_ratio_that_rounds_to_one_still_names_the_bigger_layer():
    # Weights 2**54 (fully connected) against 2**54 - 1 (conv): unequal, but their float
    # ratio is exactly 1.0. The fully connected layer is still the bigger one.
    h = 2**27
    p = compare_params(f"1x{h}x1", 1, (2**54 - 1, 1), 1, (2**53 - 1, 0))
    assert p.fc_weights == p.conv_weights + 1 and p.ratio == 1.0
    assert format_params(p)[-1].startswith(
        "the convolution has 1× fewer weights: the fully connected layer has 18,014,398,"
    )


def test_one_output_channel_is_allowed():
    p = compare_params("3x4x4", 1, 3, 1, "same")
    assert (p.conv_weights, p.fc_units) == (27, 16)


@pytest.mark.parametrize(
    "in_shape, out_channels, said",
    [("0x32x32", 16, "got 0 in, 16 out"), ("3x32x32", 0, "got 3 in, 0 out")],
)
def test_zero_channels_in_or_out_is_refused(in_shape, out_channels, said):
    # Either side alone being zero is enough; the message names both counts.
    with pytest.raises(ConfigError, match=f"^channels must be at least 1, {said}$"):
        compare_params(in_shape, out_channels)
