"""The app in a real browser: `streamlit run app.py` as a subprocess, driven by Debian's Chromium via Playwright.

The first request to the fresh server is a deep link to the explorer's URL (the case a pages/ folder
beside st.navigation once broke). Every page must then render wide, with the same menu and the data
label in its sidebar and no exception box; the test moves the epsilon slider, follows a menu link,
starts a training job and follows its progress to done. Screenshots go to $BUSADV_SHOTS (default: a
temporary folder).
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest

from busadv.bench.startup import streamlit_server

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(app_checkpoints, tmp_path):
    """A `streamlit run app.py` on a free port, on this test's temporary busadv folders."""
    port = _free_port()
    env = dict(os.environ, BUSADV_MAX_JOBS="1", PYTHONUNBUFFERED="1")
    env.pop("BUSADV_DATA", None)
    with streamlit_server(ROOT, env, port, tmp_path / "streamlit.log", timeout=60) as base:
        yield base


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def settle(page, timeout: float = 60) -> None:
    """Wait for the page's title, then for every skeleton and spinner to be gone (the script finished)."""
    page.wait_for_selector("h1", timeout=timeout * 1000)
    busy = '[data-testid="stSkeleton"], [data-testid="stSpinner"]'
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 3 and time.monotonic() < deadline:
        quiet = quiet + 1 if page.locator(busy).count() == 0 else 0
        time.sleep(0.4)


def no_exception(page) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()


MENU = ["Home", "Perturbation explorer", "Jobs", "Results", "Study", "Dataset"]


def page_frame(page, base: str, url_path: str, wide: bool = True) -> None:
    """The page at its URL renders (wide on a wide screen), with busadv's menu and the data label in the sidebar."""
    # The explorer writes its current choice into the query string (a link to what is shown): compare the path.
    assert page.url.split("?")[0].rstrip("/") == f"{base}/{url_path}".rstrip("/"), page.url
    if wide:
        width = page.locator('[data-testid="stMainBlockContainer"]').bounding_box()["width"]
        assert width > 900, f"{url_path or 'home'}: main column {width}px wide, not the wide layout"
    sidebar = page.locator('[data-testid="stSidebar"]')
    if wide or sidebar.is_visible():
        labels = [text.strip().split("\n")[-1]
                  for text in sidebar.locator('[data-testid="stPageLink"]').all_inner_texts()]
        assert labels == MENU, labels  # the same menu on every page (each line is "icon name\nlabel")
        assert "Data: Simulated phantoms (not clinical images)" in sidebar.inner_text()
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0  # one menu: Streamlit's own is off


def shoot(page, name: str) -> None:
    """A full-page screenshot into $BUSADV_SHOTS (default: the test's BUSADV_HOME/shots), named by page and width."""
    folder = Path(os.environ.get("BUSADV_SHOTS") or Path(os.environ["BUSADV_HOME"]) / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => { const b = document.querySelector('[data-testid=\"stMainBlockContainer\"]');"
                           " return b ? b.scrollHeight + 120 : 1000; }")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": int(min(max(size["height"], height), 8000))})
    time.sleep(1.0)
    page.screenshot(path=str(folder / f"{name}-{size['width']}.png"), full_page=True)
    page.set_viewport_size(size)


def test_every_page_in_chromium(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})

    # Explorer, as the fresh server's first request: moving the slider changes ε and redraws the prediction.
    page.goto(f"{server}/Perturbation_explorer")
    settle(page)
    no_exception(page)
    page_frame(page, server, "Perturbation_explorer")
    page.wait_for_selector('[data-testid="stPlotlyChart"]', timeout=60_000)
    banner = page.locator('[data-testid="stAlert"]').filter(
        has_text=re.compile("Prediction unchanged|Diagnosis flipped"))
    before = banner.first.inner_text()
    assert "0.0157 (4/255)" in before
    thumb = page.locator('[data-testid="stSlider"] input[type="range"]').first
    thumb.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.body.innerText.includes('at ε = 0.0314 (8/255)')", timeout=30_000)
    settle(page)
    no_exception(page)
    assert "0.0314 (8/255)" in banner.first.inner_text()
    assert page.get_by_text("Smallest ε that flips it").first.is_visible()
    assert "…" not in page.locator('[data-testid="stMainBlockContainer"]').inner_text()
    shoot(page, "explorer")

    # Home, by the menu: the data is labelled as simulated; the trained models are listed.
    page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').filter(has_text="Home").click()
    page.wait_for_url(f"{server}/", timeout=30_000)
    settle(page)
    no_exception(page)
    page_frame(page, server, "")
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert "Simulated phantoms (not clinical images)" in main and "Balanced accuracy" in main
    shoot(page, "home")

    # Jobs, by the home page's link: start a one-epoch training run and watch the live list reach done.
    page.get_by_text("Jobs: train, evaluate, run experiments").click()
    page.wait_for_url(f"{server}/Jobs", timeout=30_000)
    settle(page)
    no_exception(page)
    page_frame(page, server, "Jobs")
    for label, value in (("Epochs", "1"),):
        field = page.get_by_label(label, exact=True).first
        field.fill(value)
        field.press("Enter")
        settle(page)
    page.get_by_role("button", name="Start training").click()
    page.wait_for_function("() => /Job 1 — (running|queued|done)/.test(document.body.innerText)", timeout=30_000)
    page.wait_for_function("() => document.body.innerText.includes('Job 1 — done')", timeout=240_000)
    settle(page)
    no_exception(page)
    body = page.inner_text("body")
    assert "100% done" in body and "Clean test images: balanced accuracy" in body
    shoot(page, "jobs")

    # Results, typed in: the finished job's rows are drawn, balanced accuracy first.
    page.goto(f"{server}/Results")
    settle(page)
    no_exception(page)
    page_frame(page, server, "Results")
    page.wait_for_selector('[data-testid="stPlotlyChart"]', timeout=60_000)
    body = page.inner_text("body")
    assert "Download these rows as CSV" in body and "Balanced accuracy" in body
    assert "Show collapsed runs" in body and "Leave out runs that collapsed on clean images" in body
    shoot(page, "results")

    # Every page again on a narrow screen (900 px): nothing breaks, tiles wrap instead of being cut off.
    page.set_viewport_size({"width": 900, "height": 1000})
    for url_path, name in (("", "home"), ("Perturbation_explorer", "explorer"), ("Jobs", "jobs"),
                           ("Results", "results")):
        page.goto(f"{server}/{url_path}")
        settle(page)
        page.wait_for_selector('[data-testid="stPlotlyChart"], [data-testid="stDataFrame"]', state="attached",
                               timeout=60_000)
        settle(page)
        no_exception(page)
        page_frame(page, server, url_path, wide=False)
        if name == "explorer":  # the readouts wrap instead of being cut off with '…'
            assert "…" not in page.locator('[data-testid="stMainBlockContainer"]').inner_text()
        shoot(page, name)
