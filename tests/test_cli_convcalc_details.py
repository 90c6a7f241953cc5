"""`cnnlab convcalc` and `cnnlab params` (cli/convcalc.py): the flags reach the arithmetic, a
--chain is a chain and no --chain one layer, and each command prints its lines, word for word."""

from __future__ import annotations

from cnnlab.cli import main


def run_cli(capsys, *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    return out


def test_one_layer_prints_its_three_lines_from_the_flags_given(capsys):
    argv = ["--size", "7", "--kernel", "3", "--stride", "2", "--padding", "1"]
    assert run_cli(capsys, "convcalc", *argv) == (
        "conv on 7x7: kernel 3, stride 2, padding 1, dilation 1\n"
        "height and width: out = floor((7 + 2*1 - 1*(3-1) - 1) / 2) + 1 = 4\n"
        "output: 4x4\n"
    )


def test_a_pool_with_ceil_is_a_pool_not_the_default_conv(capsys):
    out = run_cli(capsys, "convcalc", "--op", "maxpool", "--size", "7", "--kernel", "2", "--ceil")
    assert out.splitlines() == [
        "maxpool on 7x7: kernel 2, stride 2, padding 0, dilation 1, ceil mode",
        "height and width: out = ceil((7 + 2*0 - 1*(2-1) - 1) / 2) + 1 = 4",
        "output: 4x4",
    ]


def test_a_chain_prints_a_row_per_step_then_its_legend(capsys):
    out = run_cli(capsys, "convcalc", "--chain", "conv3p1,pool2", "--size", "7")
    assert out.splitlines() == [
        "step     size  jump  receptive field  start",
        "input    7x7   1     1                0",
        "conv3p1  7x7   1     3                0",
        "pool2    3x3   2     4                0.5",
        "jump: input pixels between neighbouring units; receptive field: input pixels one unit "
        "sees;",
        "start: the centre of the first unit's field (0 is the first pixel, below 0 padding); "
        "HxW where the axes differ",
    ]


def test_params_prints_the_table_of_the_flags_given(capsys):
    argv = ["--in", "2x6x5", "--out-channels", "4", "--kernel", "3", "--stride", "2"]
    out = run_cli(capsys, "params", *argv, "--padding", "1")
    assert out.splitlines() == [
        "input 2x6x5 -> output 4x3x3 (kernel 3x3, stride 2, padding 1)",
        "",
        "                                 weights  biases  weights per output unit",
        "convolution                 4*2*3*3 = 72       4               2*3*3 = 18",
        "fully connected  (2*6*5)*(4*3*3) = 2,160      36               2*6*5 = 60",
        "",
        "the convolution has 30× fewer weights: the fully connected layer has 2,160, the "
        "convolution 72",
    ]
