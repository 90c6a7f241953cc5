"""`cnnlab summary` (cli/summary.py): --input, --batch, --depth and --model-arg reach the table
the library prints, no --input means the model's own size, and a bad --input is one line with
exit code 2 before anything is built."""

from __future__ import annotations

import pytest

from cnnlab.cli import main
from cnnlab.inspect.layer_summary import summary


def printed(capsys, *argv: str) -> str:
    code = main(["summary", *argv])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    return out


def test_input_batch_and_depth_reach_the_table(capsys):
    # 1x32x32: a side of 1 is allowed, and 32 is not lenet's own 28
    out = printed(capsys, "lenet", "--input", "1x32x32", "--batch", "2", "--depth", "0")
    table = summary("lenet", (1, 32, 32), batch=2, depth=0, verbose=False)
    assert out == table.render()
    assert "lenet, input 2×1×32×32" in out
    assert "Conv2d" not in out  # depth 0: the model's row alone, not a row per layer


def test_without_input_the_model_is_summarised_at_its_own_size(capsys):
    out = printed(capsys, "lenet", "--depth", "0")
    assert out == summary("lenet", (1, 28, 28), depth=0, verbose=False).render()
    assert "lenet, input 1×1×28×28" in out


def test_model_args_reach_the_builder(capsys):
    out = printed(capsys, "net_width", "--model-arg", "n_chans1=8", "--depth", "0")
    table = summary("net_width", depth=0, model_args={"n_chans1": 8}, verbose=False)
    assert out == table.render()
    assert "parameters   8,806 (trainable 8,806, frozen 0)" in out  # 38,386 with n_chans1=32


@pytest.mark.parametrize(
    "text, message",
    [
        ("0x28x28", "--input must be positive, got '0x28x28'"),
        ("28x28", "--input expects CxHxW, like 3x32x32, got '28x28'"),
        ("1x2x3x4", "--input expects CxHxW, like 3x32x32, got '1x2x3x4'"),
    ],
)
def test_a_bad_input_is_one_line_and_exit_2(capsys, text, message):
    assert main(["summary", "lenet", "--input", text]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"error: {message}\n")
