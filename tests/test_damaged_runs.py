"""Runs that never break: a run folder killed while starting or while writing, and a damaged
checkpoint, each get one clear line; `cnnlab compare` skips what it cannot use; every file a run
writes follows the umask; a library's message is never cut mid-word.

Every test damages a copy of the session's `tiny_run` (3 epochs, best.pt and last.pt), never
the run itself, and trains nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import CheckpointError, RunFolderError, first_line
from cnnlab.files import atomic_write, atomic_write_bytes, atomic_write_text, publish_text
from cnnlab.report import run_report
from cnnlab.report.compare import NothingToCompare, compare
from cnnlab.report.run_folder import RunFolderWarning, UnusableRun, read_run
from cnnlab.report.run_report import write_report
from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from helpers import cut_last_row, skip_png_encoding

CUT = "cut short by a kill while it was written"


# --- run folders as a kill leaves them -------------------------------------------------------


def copy_run(tiny_run: Path, dest: Path) -> Path:
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns("predictions.npz", "plots"))
    return dest


def started_only(tiny_run: Path, dest: Path) -> Path:
    """A run Ctrl-C'd while starting: config.json, nothing else."""
    dest.mkdir()
    shutil.copy(tiny_run / "config.json", dest / "config.json")
    return dest


def damaged_runs(tiny_run: Path, root: Path) -> dict[str, Path]:
    """One good run and every kind of run folder compare leaves out."""
    runs = {"good": copy_run(tiny_run, root / "good")}
    runs["starting"] = started_only(tiny_run, root / "starting")
    runs["empty"] = root / "empty"
    runs["empty"].mkdir()
    runs["middle"] = copy_run(tiny_run, root / "middle")  # row 2 of 3 damaged
    lines = (runs["middle"] / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[1] = lines[1][:20] + "\n"
    (runs["middle"] / "metrics.jsonl").write_text("".join(lines))
    runs["config"] = copy_run(tiny_run, root / "config")  # config.json cut short
    text = (runs["config"] / "config.json").read_text()
    (runs["config"] / "config.json").write_text(text[: len(text) // 2])
    return runs


def err_lines(capsys) -> tuple[list[str], list[str]]:
    captured = capsys.readouterr()
    return captured.out.splitlines(), [line for line in captured.err.splitlines() if line]


def test_compare_skips_each_unusable_folder_with_one_warning_on_stderr(tiny_run, tmp_path, capsys):
    runs = damaged_runs(tiny_run, tmp_path)
    assert main(["compare", *map(str, runs.values())]) == 0
    out, err = err_lines(capsys)
    assert err == [
        f"warning: skipped {runs['starting']}: holds no finished epoch (no metrics.jsonl); "
        "train it again (it saved no checkpoint to resume from)",
        f"warning: skipped {runs['empty']}: is not a cnnlab run folder yet: it holds no "
        "config.json and no finished epoch (a run stopped while starting); train it again",
        f"warning: skipped {runs['middle']}: {runs['middle'] / 'metrics.jsonl'} line 2 is not a "
        "complete JSON row (damaged or edited); restore the file or train the run again",
        f"warning: skipped {runs['config']}: {runs['config'] / 'config.json'} is damaged "
        f"({json_error(runs['config'] / 'config.json')}); restore it or train the run again",
    ]
    table = out[2:3]  # header, rule, one row
    assert len(out) > 2 and out[0].split()[:2] == ["run", "n"]
    assert table[0].split()[:2] == ["good", "1"]
    assert not any(name in "\n".join(out) for name in ("starting", "empty", "middle", "config"))


def json_error(path: Path) -> str:
    try:
        json.loads(path.read_text())
    except json.JSONDecodeError as err:
        return first_line(err, 100)
    raise AssertionError(f"{path} is whole")


def test_a_cut_last_row_is_read_as_the_rows_before_it_with_one_warning(tiny_run, tmp_path, capsys):
    good = copy_run(tiny_run, tmp_path / "good")
    cut = cut_last_row(copy_run(tiny_run, tmp_path / "cut"))
    info = json.loads((cut / "config.json").read_text())
    info["config"]["lr"] = 0.5  # its own row
    (cut / "config.json").write_text(json.dumps(info))
    assert main(["compare", str(good), str(cut)]) == 0
    out, err = err_lines(capsys)
    assert err == [
        f"warning: {cut / 'metrics.jsonl'} line 3 is not a complete JSON row ({CUT}); read the "
        "2 epochs before it"
    ]
    rows = {line.split()[0]: line.split() for line in out[2:] if line.split()[0] in ("good", "cut")}
    assert rows["good"][1] == "1" and rows["cut"][1] == "1"
    assert "2/3" in rows["cut"]  # the epochs read, of the epochs planned
    assert "stopped after" not in "\n".join(out)  # said once, by the warning above


def test_compare_in_python_says_what_it_left_out_in_folder_warnings(tiny_run, tmp_path):
    runs = damaged_runs(tiny_run, tmp_path)
    cut = cut_last_row(copy_run(tiny_run, tmp_path / "cut"))
    c = compare([*runs.values(), runs["starting"], cut])  # a folder given twice: one warning
    assert sorted(run.name for row in c.rows for run in row.runs) == ["cut", "good"]
    assert len(c.folder_warnings) == 5
    assert [w.split(":")[0] for w in c.folder_warnings[:4]] == [
        f"skipped {runs[name]}" for name in ("starting", "empty", "middle", "config")
    ]
    assert CUT in c.folder_warnings[4]
    text = str(c)  # the table, then every warning, folder warnings first
    assert f"warning: {c.folder_warnings[0]}" in text
    assert c.text(folder_warnings=False).count("warning: skipped") == 0


def test_when_no_folder_is_usable_compare_is_an_error(tiny_run, tmp_path, capsys):
    runs = damaged_runs(tiny_run, tmp_path)
    assert main(["compare", str(runs["starting"]), str(runs["empty"])]) == 2
    _, err = err_lines(capsys)
    assert err[0].startswith(f"warning: skipped {runs['starting']}: holds no finished epoch")
    assert err[1].startswith(f"warning: skipped {runs['empty']}: is not a cnnlab run folder yet")
    assert err[2:] == [
        "error: nothing to compare: all 2 run folders above were skipped; give run folders "
        "that finished at least one epoch"
    ]
    with pytest.raises(NothingToCompare) as info:
        compare([runs["middle"], runs["config"]])
    assert [s.split(":")[0] for s in info.value.skipped] == [
        f"skipped {runs['middle']}", f"skipped {runs['config']}",
    ]  # fmt: skip


def test_a_lone_unusable_folder_is_its_own_one_line_error(tiny_run, tmp_path, capsys):
    starting = started_only(tiny_run, tmp_path / "starting")
    assert main(["compare", str(starting)]) == 2
    _, err = err_lines(capsys)
    assert err == [
        f"error: run folder {starting} holds no finished epoch (no metrics.jsonl); train it "
        "again (it saved no checkpoint to resume from)"
    ]


def test_a_folder_that_is_no_run_folder_still_stops_compare(tiny_run, tmp_path, capsys):
    good = copy_run(tiny_run, tmp_path / "good")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("not a run")
    assert main(["compare", str(good), str(other)]) == 2
    _, err = err_lines(capsys)
    assert err == [
        f"error: {other} is not a cnnlab run folder (no config.json); give the folder "
        "`cnnlab train` printed"
    ]
    with pytest.raises(RunFolderError) as info:
        compare([good, other])
    assert not isinstance(info.value, UnusableRun)


def test_read_run_takes_a_cut_last_row_only_when_asked(tiny_run, tmp_path):
    cut = cut_last_row(copy_run(tiny_run, tmp_path / "cut"))
    with pytest.raises(UnusableRun, match=r"line 3 is not a complete JSON row \(cut short\)"):
        read_run(cut)  # plot's strict reading
    record = read_run(cut, partial=True)
    assert [row["epoch"] for row in record.metrics] == [1, 2]
    assert len(record.warnings) == 1 and CUT in record.warnings[0]
    whole = read_run(copy_run(tiny_run, tmp_path / "whole"), partial=True)
    assert len(whole.metrics) == 3 and whole.warnings == []


def test_report_reads_a_cut_last_row_with_one_warning(tiny_run, tmp_path, capsys, monkeypatch):
    skip_png_encoding(monkeypatch)  # the figures of the 2 epochs read are made; text is read
    cut = cut_last_row(copy_run(tiny_run, tmp_path / "cut"))
    assert main(["report", str(cut)]) == 0
    out, err = err_lines(capsys)
    assert err == [
        f"warning: {cut / 'metrics.jsonl'} line 3 is not a complete JSON row ({CUT}); read the "
        "2 epochs before it"
    ]
    assert out[-1].startswith(f"wrote {cut / 'report.html'}")
    page = (cut / "report.html").read_text()
    assert "2 epochs" in page and CUT in page  # the page says so too
    # from Python, the same warning as a RunFolderWarning (the page itself is checked above:
    # drawn again it would cost seconds and show nothing new)
    monkeypatch.setattr(run_report, "render_report", lambda *args, **kwargs: "page")
    with pytest.warns(RunFolderWarning, match="read the 2 epochs before it"):
        assert write_report(cut, tmp_path / "again.html").read_text() == "page"
    umask = current_umask()
    for name in ("report.html", "predictions.npz"):
        assert mode_of(cut / name) == 0o666 & ~umask, name


def test_report_of_a_run_with_no_finished_epoch_is_one_line(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "killed")
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train_lo')  # its only row, cut
    assert main(["report", str(run)]) == 2
    _, err = err_lines(capsys)
    assert err == [
        f"error: run folder {run} holds no finished epoch (metrics.jsonl line 1 is not a "
        f"complete JSON row: cut short); resume it with `cnnlab train --resume {run}` or train "
        "again"
    ]
    assert not (run / "report.html").exists()
    (run / "metrics.jsonl").unlink()
    assert main(["report", str(run)]) == 2
    _, err = err_lines(capsys)
    assert err == [
        f"error: run folder {run} holds no finished epoch (no metrics.jsonl); resume it with "
        f"`cnnlab train --resume {run}` or train again"
    ]


# --- checkpoints --------------------------------------------------------------------------


def flip_two_bytes(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    data[at + 1] ^= 0xFF
    path.write_bytes(bytes(data))


def entry_at(path: Path, offset: int) -> str:
    """The zip entry whose bytes hold `offset`."""
    with zipfile.ZipFile(path) as archive:
        starts = sorted((info.header_offset, info.filename) for info in archive.infolist())
    return [name for start, name in starts if start <= offset][-1]


def test_two_bytes_flipped_in_the_middle_of_last_pt_is_damaged_not_unsafe(
    tiny_run, tmp_path, capsys
):
    run = copy_run(tiny_run, tmp_path / "run")
    last = run / "last.pt"
    middle = last.stat().st_size // 2
    entry = entry_at(last, middle)
    flip_two_bytes(last, middle)
    expected = (
        f"{last} is not a readable checkpoint: it is damaged (entry '{entry}' fails its CRC "
        "check); use the run's best.pt or train again"
    )
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(last)  # torch itself would load it, with two wrong weights
    assert str(info.value) == expected
    for argv in (["eval", str(last)], ["train", "--resume", str(run)]):
        assert main(argv) == 2
        _, err = err_lines(capsys)
        assert err == [f"error: {expected}"], argv


def test_a_damaged_pickle_is_damaged_not_unsafe(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    best = run / "best.pt"
    with zipfile.ZipFile(best) as archive:
        pickle_entry = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
    flip_two_bytes(best, pickle_entry.header_offset + 200)  # inside data.pkl's bytes
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(best)
    message = str(info.value)
    assert f"it is damaged (entry '{pickle_entry.filename}' fails its CRC check)" in message
    assert message.endswith("use the run's last.pt or train again")
    assert "objects other than" not in message


def test_a_truncated_checkpoint_is_damaged(tiny_run, tmp_path):
    path = tmp_path / "model.pt"  # no other checkpoint beside it
    data = (tiny_run / "last.pt").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == (
        f"{path} is not a readable checkpoint: it is damaged (truncated: the end of the zip file "
        "is missing); use another checkpoint or train again"
    )


class Evil:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_whole_checkpoint_with_pickled_objects_is_still_refused_as_unsafe(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    torch.save({"format": "cnnlab-checkpoint", "version": 1, "x": Evil(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value).startswith(
        f"refused to load {path}: it holds objects other than tensors and plain values ("
    )
    assert "damaged" not in str(info.value)
    assert not marker.exists()


# --- a library's message, cut -----------------------------------------------------------


MINIZ = (
    "PytorchStreamReader failed reading zip archive: failed finding central directory. This "
    "is an internal miniz error. If you are seeing this error, there is a high likelihood"
)


@pytest.mark.parametrize("limit", [20, 60, 100, 120, 121, len(MINIZ) - 1])
def test_first_line_cuts_at_a_word_boundary_and_says_so(limit):
    assert len(MINIZ) > limit
    text = first_line(RuntimeError(MINIZ + "\nsecond line"), limit)
    assert len(text) <= limit
    assert text.endswith("…")
    kept = text[:-1]
    assert MINIZ.startswith(kept)
    assert MINIZ[len(kept)] == " "  # the next character starts a new word


def test_first_line_keeps_what_fits_and_cuts_a_lone_long_word_where_it_must():
    assert first_line(RuntimeError("short message\nmore"), 120) == "short message"
    assert first_line(RuntimeError("x" * 150), 100) == "x" * 99 + "…"
    assert first_line(RuntimeError("y" * 100), 100) == "y" * 100
    assert first_line(RuntimeError("   "), 100) == "RuntimeError"
    assert first_line(RuntimeError("abc defg hij"), 9) == "abc defg…"
    assert first_line(RuntimeError("abc defg hij"), 8) == "abc…"  # "abc defg…" is 9 long
    assert first_line(RuntimeError(MINIZ), len(MINIZ)) == MINIZ


def test_a_checkpoint_error_quoting_torch_is_cut_at_a_word(tmp_path, monkeypatch):
    path = tmp_path / "torn.pt"
    path.write_bytes(b"not a zip file")

    def load(*args, **kwargs):
        raise RuntimeError(MINIZ)

    monkeypatch.setattr(torch, "load", load)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    quoted = re.search(r"truncated or corrupt: (.*)\)$", str(info.value)).group(1)
    assert quoted.endswith(" directory. This is an…")  # not "...This is an interna"
    assert len(quoted) <= 100


# --- file modes -------------------------------------------------------------------------


def current_umask() -> int:
    umask = os.umask(0o022)  # tests run in one thread: setting it back at once is safe
    os.umask(umask)
    return umask


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture(params=[0o022, 0o077], ids=["umask 022", "umask 077"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_every_atomic_write_follows_the_umask(umask, tmp_path):
    expected = 0o666 & ~umask
    atomic_write_text(tmp_path / "config.json", "{}")
    atomic_write_bytes(tmp_path / "metrics.jsonl", b"{}\n")
    publish_text(tmp_path / "report.html", "<p>")
    save_checkpoint({"w": torch.zeros(2)}, tmp_path / "last.pt")
    atomic_write_text(tmp_path / "config.json", "{}")  # replaced: the same mode again
    for name in ("config.json", "metrics.jsonl", "report.html", "last.pt"):
        assert mode_of(tmp_path / name) == expected, (name, oct(mode_of(tmp_path / name)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json", "last.pt", "metrics.jsonl", "report.html",
    ]  # no temporary file left  # fmt: skip


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640])
def test_a_mode_asked_for_is_the_mode_whatever_the_umask(umask, tmp_path, mode):
    atomic_write(tmp_path / "f", lambda f: f.write(b"x"), mode=mode)
    assert mode_of(tmp_path / "f") == mode


def test_the_files_of_a_trained_run_follow_the_umask(tiny_run):
    expected = 0o666 & ~current_umask()
    for name in ("config.json", "metrics.jsonl", "best.pt", "last.pt"):
        assert mode_of(tiny_run / name) == expected, (name, oct(mode_of(tiny_run / name)))
