"""Runs side by side: `cnnlab compare RUN...`, and the table `cnnlab train --seeds` ends with.

    c = compare(["runs/lenet-seed0", "runs/lenet-seed1", "runs/lenet-wd-seed0"], html="c.html")
    print(c)                        # the table, then the warnings
    c.rows[0].final.mean, c.rows[0].final.std, c.differing

`compare` reads the run folders, checks where its files go, and writes them. How runs become
rows and what the warnings say is comparison.py's; the curves and the HTML page compare_page.py's.

Only files are read (config.json, metrics.jsonl): no torch, no model, no data. matplotlib is
imported only when curves are drawn (`html=` or `out=`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cnnlab.errors import ConfigError, RunFolderError
from cnnlab.figures import render_png
from cnnlab.files import (
    check_output_file,
    check_output_folder,
    publish_bytes,
    write_failure_as_config_error,
)
from cnnlab.report.compare_page import html_page, plot_curves
from cnnlab.report.comparison import Comparison, build_comparison
from cnnlab.report.run_folder import RunRecord, UnusableRun, read_run

CURVES = "compare-curves.png"  # the file `out=` gets


def compare(
    runs: Iterable[str | Path | RunRecord],
    *,
    html: str | Path | None = None,
    out: str | Path | None = None,
) -> Comparison:
    """Compare run folders: the table (and warnings), and, when asked, the overlaid curves as
    `out/compare-curves.png` and a self-contained HTML page `html`.

    Every folder is read first and every output place checked before anything is computed or
    written: a bad place is a ConfigError, a folder that is no run folder a RunFolderError,
    both in one line. A run folder that holds no finished epoch or a damaged file is left out,
    with one line in the result's `folder_warnings`; when no folder is left, a lone folder's
    own error is raised, else NothingToCompare (its `skipped` lists each one's warning).
    """
    records, folder_warnings = _read_all(runs)
    html_path, out_dir = _check_outputs(html, out)
    comparison = build_comparison(records)
    comparison.folder_warnings = folder_warnings
    if html_path is None and out_dir is None:
        return comparison
    png = render_png(plot_curves(comparison))
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"cannot create {out_dir}: {err.strerror}; choose another --out"
            ) from None
        _write(out_dir / CURVES, png)
        comparison.written.append(out_dir / CURVES)
    if html_path is not None:
        _write(html_path, html_page(comparison, png).encode("utf-8"))
        comparison.written.append(html_path)
    return comparison


def _write(path: Path, data: bytes) -> None:
    """Atomically, or a one-line error."""
    with write_failure_as_config_error(path):
        publish_bytes(path, data)


class NothingToCompare(RunFolderError):
    """Every run folder given was skipped: `skipped` holds the warning of each (the CLI prints
    them before this error's line)."""

    def __init__(self, skipped: list[str]):
        super().__init__(
            f"nothing to compare: all {len(skipped)} run folders above were skipped; give run "
            "folders that finished at least one epoch"
        )
        self.skipped = skipped


def _read_all(runs: Iterable[str | Path | RunRecord]) -> tuple[list[RunRecord], list[str]]:
    """The usable runs, and the folder warnings: one per run folder skipped (no finished
    epoch, a damaged file), one per metrics.jsonl read without its cut last row."""
    records: list[RunRecord] = []
    notes: list[str] = []
    errors: list[UnusableRun] = []
    seen: set[Path] = set()
    for run in runs:
        folder = run.path if isinstance(run, RunRecord) else Path(run)
        if folder.resolve() in seen:  # a folder given twice (a glob and its name) is one run
            continue
        seen.add(folder.resolve())
        try:
            record = run if isinstance(run, RunRecord) else read_run(folder, partial=True)
        except UnusableRun as err:
            errors.append(err)
            notes.append(skipped_warning(folder, err))
            continue
        records.append(record)
        notes += record.warnings
    if not records:
        _nothing_left(errors, notes)
    return records, notes


def skipped_warning(folder: Path, err: UnusableRun) -> str:
    """`skipped runs/x: holds no finished epoch ...`: the reason without its copy of the name."""
    reason = str(err)
    for prefix in (f"run folder {folder} ", f"{folder} "):
        if reason.startswith(prefix):
            return f"skipped {folder}: {reason[len(prefix) :]}"
    return f"skipped {folder}: {reason}"


def _nothing_left(errors: list[UnusableRun], notes: list[str]) -> None:
    """No usable run: a lone folder's own error, else one that carries every skip."""
    if not errors:
        raise ConfigError("give at least one run folder to compare")
    if len(errors) == 1:
        raise errors[0]
    raise NothingToCompare(notes)


def _check_outputs(
    html: str | Path | None, out: str | Path | None
) -> tuple[Path | None, Path | None]:
    out_dir = html_path = None
    if out is not None:
        out_dir = check_output_folder(out, "--out", "give a folder for the PNG files")
    if html is not None:
        html_path = check_output_file(
            html, "--html", "give a file name like compare.html",
            no_folder="{name} {path}: the folder {parent} {what}; create it first",
        )  # fmt: skip
    return html_path, out_dir
