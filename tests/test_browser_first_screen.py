"""The explorer's first screen in Chromium, as a lecture hall sees it (issue 17 items 1, 2 and 9).

At 1280x720 and 1920x1080, without scrolling: the original and the perturbed image (each at least 256 px tall,
taller on the larger screen), the epsilon slider, and under each image its class probabilities as text
("malignant 91.2 %") with the predicted class marked, and the smallest epsilon that flips the diagnosis.
Presenter mode shows the same, larger, with nothing else.
A slider step changes the picture and the numbers in the browser alone: no message goes to the server.
Every request of every page goes to the server's own host (no fonts or scripts from elsewhere).
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlparse

import pytest

from tests import test_browser
from tests.test_browser import no_exception, settle

server, browser = test_browser.server, test_browser.browser  # the browser test's fixtures
pytestmark = test_browser.pytestmark

PROBABILITY = re.compile(r"(benign|malignant|normal) \d{1,3}\.\d %")
PAGES = ("", "Perturbation_explorer", "Jobs", "Results", "Study", "Dataset")


def open_explorer(page, base: str, query: str = "") -> None:
    page.goto(f"{base}/Perturbation_explorer{query}")
    settle(page)
    page.wait_for_selector(".st-key-stage-box g.annotation", timeout=120_000)
    settle(page)
    time.sleep(0.5)
    no_exception(page)


def first_screen(page) -> dict:
    """Where the first screen's parts are, in the viewport's coordinates, and what its text says."""
    return page.evaluate("""() => {
      const box = document.querySelector('.st-key-stage-box');
      const rect = e => { const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, left: r.left,
                                                                         right: r.right, height: r.height}; };
      return {
        images: [...box.querySelectorAll('image')].map(rect),
        rail: rect(box.querySelector('.slider-container rect.slider-rail-rect')),
        texts: [...box.querySelectorAll('g.annotation')].map(a => ({text: a.textContent, ...rect(a)})),
        sidebar: !!document.querySelector('[data-testid="stSidebar"]')
                 && getComputedStyle(document.querySelector('[data-testid="stSidebar"]')).display !== 'none',
        scroll: document.querySelector('[data-testid="stMain"]').scrollTop,
      };
    }""")


def assert_fits(shown: dict, width: int, height: int, least: int) -> None:
    assert shown["scroll"] == 0
    pictures = shown["images"]
    assert len(pictures) == 2, pictures
    for picture in pictures:
        assert picture["height"] >= least, f"a picture is {picture['height']:.0f} px tall at {width}x{height}"
        assert 0 <= picture["top"] and picture["bottom"] <= height, picture
    assert pictures[0]["right"] <= pictures[1]["left"], "side by side"
    assert 0 < shown["rail"]["top"] and shown["rail"]["bottom"] <= height, "the ε slider is on the first screen"
    numbers = [t for t in shown["texts"] if PROBABILITY.search(t["text"])]
    assert len(numbers) == 2, [t["text"] for t in shown["texts"]]
    for block in numbers:
        assert block["bottom"] <= height, "the probabilities are on the first screen"
        assert len(PROBABILITY.findall(block["text"])) == 3 and block["text"].count("▶") == 1, block["text"]


def test_the_first_screen_holds_pictures_slider_and_probabilities(server, browser):
    heights = {}
    for width, height, least in ((1280, 720, 256), (1920, 1080, 300)):
        page = browser.new_page(viewport={"width": width, "height": height})
        open_explorer(page, server)
        shown = first_screen(page)
        assert_fits(shown, width, height, least)
        flip = page.locator(".st-key-flip-row").bounding_box()  # the lecture's number: how little flips it
        assert flip and flip["y"] + flip["height"] <= height and "Smallest ε that flips it" in page.inner_text(
            ".st-key-flip-row"), flip
        heights[width] = shown["images"][0]["height"]
        test_browser.shoot(page, f"first-screen-{height}")

        # Presenter mode: the same, larger type, no sidebar, no tabs below.
        page.goto(f"{server}/Perturbation_explorer?present=1")
        settle(page)
        page.wait_for_selector(".st-key-stage-box g.annotation", timeout=120_000)
        settle(page)
        no_exception(page)
        shown = first_screen(page)
        assert_fits(shown, width, height, least)
        assert not shown["sidebar"] and page.locator('[data-testid="stTabs"]').count() == 0
        assert "Step 1 of 4" in page.inner_text("body")
        test_browser.shoot(page, f"presenter-{height}")
        page.close()
    assert heights[1920] > heights[1280] * 1.3, heights


def test_a_slider_step_redraws_picture_and_numbers_with_no_message_to_the_server(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(str(payload)[:40])))
    open_explorer(page, server)
    ticks = page.locator(".st-key-stage-box .slider-container rect.slider-tick-rect")
    assert ticks.count() >= 20
    rail = page.locator(".st-key-stage-box .slider-container rect.slider-rail-touch-rect").first.bounding_box()
    before = first_screen(page)
    hrefs = lambda: page.evaluate(  # noqa: E731
        "() => [...document.querySelectorAll('.st-key-stage-box image')].map(i => i.getAttribute('href'))")
    clean, perturbed = hrefs()
    time.sleep(1.0)
    sent.clear()
    from busadv.app.widgets import EPSILON_CHOICES

    box = ticks.nth(EPSILON_CHOICES.index(16 / 255)).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, rail["y"] + rail["height"] / 2)
    page.wait_for_function("(old) => { const i = document.querySelectorAll('.st-key-stage-box image');"
                           " return i.length == 2 && i[1].getAttribute('href') !== old; }", arg=perturbed)
    after = first_screen(page)
    assert hrefs()[0] == clean, "the original does not move"
    assert "16/255" in " ".join(t["text"] for t in after["texts"])
    assert [t["text"] for t in after["texts"]] != [t["text"] for t in before["texts"]]
    time.sleep(1.0)
    assert not sent, f"the slider step sent {len(sent)} messages to the server (a rerun): {sent}"


def test_no_page_asks_any_other_host(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    host = urlparse(server).netloc
    for path in PAGES:
        page.goto(f"{server}/{path}")
        settle(page)
        if path == "Perturbation_explorer":
            page.wait_for_selector(".st-key-stage-box g.annotation", timeout=120_000)
        time.sleep(1.5)  # fonts and icons load after the first paint
        no_exception(page)
    elsewhere = sorted({url for url in requested if urlparse(url).scheme in ("http", "https", "ws", "wss")
                        and urlparse(url).netloc != host})
    assert not elsewhere, f"requests to other hosts: {elsewhere}"
    assert len(requested) > 20, "the recorder saw the pages' own requests"


@pytest.mark.hostile
def test_a_hostile_link_draws_no_link_or_image_in_the_browser(server, browser):
    evil = "evil.invalid"
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    hostile = f"[x](http://{evil}/a)![p](http://{evil}/p.png)<img src=http://{evil}/h.png>"
    from urllib.parse import quote

    open_explorer(page, server, f"?model={quote(hostile)}&image={quote(hostile)}&attack={quote(hostile)}&eps="
                                f"{quote(hostile)}")
    body = page.inner_text("body")
    assert "not in the checkpoints folder" in body and "is not offered here" in body
    assert page.locator(f'a[href*="{evil}"]').count() == 0 and page.locator(f'img[src*="{evil}"]').count() == 0
    assert not [url for url in requested if evil in urlparse(url).netloc]
