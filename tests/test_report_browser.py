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
