"""`cnnlab report RUN` as the command runs it (cli/report.py): its flags reach the report's
config, each warning about the run folder is one `warning: ...` line on stderr, and stdout
names the page written and its size.

The page itself (drawn from a run, seconds) is checked in test_report.py and
test_damaged_runs.py; here write_report is replaced by one that records what it was given,
warns once and writes a page of 1234 bytes.
"""

from __future__ import annotations

from cnnlab.cli import main
from cnnlab.config import ReportConfig
from cnnlab.report import run_report


def test_report_passes_its_flags_on_warns_on_stderr_and_names_the_page(
    tmp_path, monkeypatch, capsys
):
    run, page = tmp_path / "run", tmp_path / "page.html"
    run.mkdir()
    given: list[ReportConfig] = []

    def by_hand(cfg, warn):
        given.append(cfg)
        warn(f"{run}/metrics.jsonl line 3 is not a complete JSON row")
        page.write_bytes(b"x" * 1234)
        return page

    monkeypatch.setattr(run_report, "write_report", by_hand)
    argv = ["report", str(run), "--out", str(page), "--device", "cpu", "--data-dir", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"wrote {page} (1.2 kB)"]
    assert captured.err.splitlines() == [
        f"warning: {run}/metrics.jsonl line 3 is not a complete JSON row"
    ]
    expected = ReportConfig(run=str(run), out=str(page), device="cpu", data_dir=str(tmp_path))
    assert given == [expected]
