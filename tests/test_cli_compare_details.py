"""`cnnlab compare RUN...` as the command runs it (cli/compare.py): every RUN given reaches the
comparison, --html and --out are written and named on stdout, what reading the folders left
out goes to stderr (not into the table), and when no folder is usable each one's reason comes
before the one-line error.

compare reads only config.json and metrics.jsonl, so the run folders here are those two files
of the session's `tiny_run`, copied (and edited); the curves are made but not encoded as PNG.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cnnlab.cli import main
from cnnlab.report.compare import CURVES, compare
from helpers import cut_last_row, skip_png_encoding


def run_copy(tiny_run: Path, dest: Path, **config) -> Path:
    """tiny_run's config.json (with `config` changes) and metrics.jsonl in `dest`."""
    dest.mkdir()
    shutil.copy(tiny_run / "metrics.jsonl", dest / "metrics.jsonl")
    info = json.loads((tiny_run / "config.json").read_text())
    info["config"].update(config)
    (dest / "config.json").write_text(json.dumps(info))
    return dest


def test_every_run_is_compared_and_html_and_out_are_written_and_named(
    tiny_run, tmp_path, capsys, monkeypatch
):
    skip_png_encoding(monkeypatch)
    a = run_copy(tiny_run, tmp_path / "a")
    b = run_copy(tiny_run, tmp_path / "b", lr=0.5)
    page, plots = tmp_path / "c.html", tmp_path / "plots"
    assert main(["compare", str(a), str(b), "--html", str(page), "--out", str(plots)]) == 0
    out = capsys.readouterr().out.splitlines()
    table = compare([a, b]).text(folder_warnings=False).splitlines()
    assert out == [*table, f"wrote {plots / CURVES}", f"wrote {page}"]
    assert {line.split()[0] for line in out[2:4]} == {"a", "b"}  # two runs, two rows
    assert (plots / CURVES).read_bytes() == b"png"
    assert "<table>" in page.read_text()


def test_without_html_or_out_nothing_is_written(tiny_run, tmp_path, capsys):
    a = run_copy(tiny_run, tmp_path / "a")
    assert main(["compare", str(a)]) == 0
    out = capsys.readouterr().out
    assert "wrote" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_a_cut_row_is_a_warning_on_stderr_and_not_below_the_table(tiny_run, tmp_path, capsys):
    good = run_copy(tiny_run, tmp_path / "good")
    cut = cut_last_row(run_copy(tiny_run, tmp_path / "cut", lr=0.5))
    assert main(["compare", str(good), str(cut)]) == 0
    captured = capsys.readouterr()
    [warning] = compare([good, cut]).folder_warnings
    assert captured.err.splitlines() == [f"warning: {warning}"]
    assert warning in captured.err and "line 3" in warning
    assert warning not in captured.out
    assert captured.out.splitlines() == compare([good, cut]).text(False).splitlines()


def test_when_every_folder_is_skipped_each_reason_comes_before_the_error(
    tiny_run, tmp_path, capsys
):
    starting = []
    for name in ("s1", "s2"):  # stopped while starting: config.json and nothing else
        (tmp_path / name).mkdir()
        shutil.copy(tiny_run / "config.json", tmp_path / name / "config.json")
        starting.append(tmp_path / name)
    assert main(["compare", *map(str, starting)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    reason = (
        "holds no finished epoch (no metrics.jsonl); train it again (it saved no checkpoint "
        "to resume from)"
    )
    assert captured.err.splitlines() == [
        f"warning: skipped {starting[0]}: {reason}",
        f"warning: skipped {starting[1]}: {reason}",
        "error: nothing to compare: all 2 run folders above were skipped; give run folders "
        "that finished at least one epoch",
    ]
