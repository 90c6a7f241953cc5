"""The HTML report in a real browser: Debian's Chromium, driven offline by Playwright.

Skips (saying why) where Chromium or Playwright is missing: `make setup` installs Chromium
with apt-get where it can, and Playwright comes with the dev tools.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cnnlab.report.run_report import SECTIONS, write_report

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


def test_report_renders_in_chromium_offline(browser, tiny_run, tmp_path):
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    url = write_report(run).as_uri()
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors, requests = [], []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url, wait_until="load")

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
    page.close()


def test_report_prints_to_pdf(browser, tiny_run, tmp_path):
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    page = browser.new_page()
    page.goto(write_report(run).as_uri(), wait_until="load")
    pdf = page.pdf(path=str(tmp_path / "report.pdf"))
    assert pdf.startswith(b"%PDF") and Path(tmp_path / "report.pdf").stat().st_size > 10_000
    page.close()
