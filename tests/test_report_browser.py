"""The HTML report in a real browser: Debian's Chromium, driven offline by Playwright.

Skips (saying why) where Chromium or Playwright is missing: `make setup` installs Chromium
with apt-get where it can, and Playwright comes with the dev tools.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from cnnlab.figures import DPI, FONT
from cnnlab.report.compare import compare
from cnnlab.report.run_report import SECTIONS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


class LoadedPage(NamedTuple):
    """report_page: the tab, the page's address, and the errors and requests seen since."""

    tab: Any
    url: str
    errors: list[str]
    requests: list[str]


@pytest.fixture(scope="module")
def report_page(browser, tiny_report) -> Iterator[LoadedPage]:
    """The report of a copy of tiny_run (conftest's tiny_report: test_report.py reads the same
    page), written once and loaded once, in one tab the tests below share (each load decodes
    its images again: half a second of Chromium): each test sets the window size it needs. The
    errors and requests of the loading and of every test since are recorded."""
    assert tiny_report.code == 0, tiny_report.err
    url = tiny_report.page.as_uri()
    tab = browser.new_page(viewport={"width": 1200, "height": 900})
    errors, requests = [], []
    tab.on("console", lambda message: message.type == "error" and errors.append(message.text))
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("request", lambda request: requests.append(request.url))
    tab.goto(url, wait_until="load")
    yield LoadedPage(tab, url, errors, requests)
    tab.close()


def test_report_renders_in_chromium_offline(report_page, tmp_path):
    page, url, errors, requests = report_page
    page.set_viewport_size({"width": 1200, "height": 900})
    images = page.evaluate(
        "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(images) >= 7
    assert all(done and width > 0 and height > 0 for done, width, height in images), images
    for section in SECTIONS:
        assert page.locator(f"section#{section} h2").is_visible(), section
    assert errors == []
    assert [u for u in requests if u != url and not u.startswith("data:")] == []
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_report_prints_to_pdf(report_page, tmp_path):
    pdf = report_page.tab.pdf(path=str(tmp_path / "report.pdf"))
    assert pdf.startswith(b"%PDF") and Path(tmp_path / "report.pdf").stat().st_size > 10_000


def _page_width(page, width: int) -> tuple[int, int]:
    """(the document's scroll width, the window's width) at a window `width` pixels wide."""
    page.set_viewport_size({"width": width, "height": 900})
    return tuple(page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]"))


def test_the_report_never_scrolls_sideways_and_shows_the_filters_legibly(report_page):
    page = report_page.tab
    for width in (800, 1280):
        scroll_width, window_width = _page_width(page, width)
        assert scroll_width <= window_width, width  # wide tables scroll in their own box
        filters = page.locator('img[alt="filters.png"]')
        shown, drawn = filters.evaluate("image => [image.clientWidth, image.naturalWidth]")
        assert drawn >= 600 and shown == drawn, width  # at its own size: labels as drawn
        assert FONT * DPI / 72 * shown / drawn >= 11  # pixels of a tile's label on screen


def _settings_run(source: Path, folder: Path, **settings) -> Path:
    """A run folder of `source`'s config.json (with these settings) and metrics.jsonl: all that
    compare reads."""
    folder.mkdir(parents=True)
    info = json.loads((source / "config.json").read_text())
    info["config"].update(name=folder.name, **settings)
    (folder / "config.json").write_text(json.dumps(info))
    shutil.copy(source / "metrics.jsonl", folder)
    return folder


# how many lines each run's name takes in the compare page's table
LINES_OF_RUN_NAMES = """
Array.from(document.querySelectorAll('section#table td:first-child'), cell => {
    const range = document.createRange();
    range.selectNodeContents(cell);
    return range.getClientRects().length;
})"""


def test_a_compare_page_of_many_settings_never_scrolls_sideways(browser, tiny_run, tmp_path):
    differing = {
        "mnist_cnn-sgd-momentum-0.9-wd-0.0005-cosine-seed0": dict(
            optimizer="sgd", momentum=0.9, weight_decay=5e-4, lr=0.05, scheduler="cosine"
        ),
        "mnist_cnn-adam-lr-0.003-label-smoothing-0.1-augment-seed0": dict(
            optimizer="adam", lr=3e-3, label_smoothing=0.1, augment=True
        ),
        "mnist_cnn-adamw-lr-0.001-wd-0.05-other-data-seed0": dict(
            optimizer="adamw", lr=1e-3, weight_decay=0.05, dataset="npz:/elsewhere/other-data"
        ),
    }
    runs = [_settings_run(tiny_run, tmp_path / name, **s) for name, s in differing.items()]
    comparison = compare(runs, html=tmp_path / "compare.html")
    assert len(comparison.setting_columns) >= 6  # wider than the page: its box scrolls
    page = browser.new_page()
    page.goto((tmp_path / "compare.html").as_uri(), wait_until="load")
    for width in (800, 1280):
        scroll_width, window_width = _page_width(page, width)
        assert scroll_width <= window_width, width
        lines = page.evaluate(LINES_OF_RUN_NAMES)
        assert lines == [1, 1, 1], width  # not one word a line
    page.close()


def test_sweep_page_renders_in_chromium_offline(browser, tmp_path):
    """sweep.html of a study of eight finished trials (made without training: the page reads
    the study and the trial folders): the table, Optuna's four plots, no request."""
    optuna = pytest.importorskip(
        "optuna", reason="Optuna is the sweep extra (pip install -e '.[sweep]')"
    )
    from cnnlab.sweeps.results import sweep_results
    from cnnlab.sweeps.space import read_space
    from cnnlab.sweeps.study import quiet_optuna

    quiet_optuna()
    space_file = tmp_path / "space.toml"
    space_file.write_text(
        'model = "mnist_cnn"\n[search]\nlr = { low = 1e-4, high = 1.0, log = true }\n'
        'optimizer = ["sgd", "adam"]\n[study]\ntrials = 8\n'
    )
    space = read_space(space_file)
    study = optuna.create_study(direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)
    optimizer = optuna.distributions.CategoricalDistribution(["sgd", "adam"])
    for k in range(8):
        rate = 10 ** (-4 + k / 2)
        study.add_trial(optuna.create_trial(
            params={"lr": rate, "optimizer": ["sgd", "adam"][k % 2]},
            distributions={"lr": lr, "optimizer": optimizer},
            value=0.5 + 0.05 * k - 0.3 * (k == 7), intermediate_values={1: 0.4},
            user_attrs={"epochs": 1, "seconds": 2.0},
        ))  # fmt: skip
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    result = sweep_results(study, space, sweep_dir)
    assert result.best.number == 6 and result.test_accuracy is None  # no trial folder here
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    url = (sweep_dir / "sweep.html").as_uri()
    page.goto(url, wait_until="load")
    images = page.evaluate(
        "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
    )
    assert [alt for alt, _, _ in images] == [
        "Optimization history", "Parameter importances", "Parallel coordinates", "Slice",
    ]  # fmt: skip
    assert all(done and width > 300 for _, done, width in images), images
    rows = page.locator("section#trials table tr").count()
    assert rows == 9  # the header and the eight trials
    assert page.locator("section#best").inner_text().count("trial 6") >= 1
    assert errors == [] and [u for u in requests if u != url and not u.startswith("data:")] == []
    page.close()
