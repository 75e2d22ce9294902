"""Time to the first working explorer: a fresh install (no data, no model) and a browser, nothing clicked.

`streamlit run app.py` starts on empty BUSADV_HOME, BUSADV_CHECKPOINTS and BUSADV_CACHE folders; a headless
Chromium opens / (Home) as the first page load, and the clock runs from the server's start until the
explorer, which Home opens by itself, shows a model's answer and the smallest epsilon that flips it
(busadv.app.first_start trains that model). The same function serves tests/test_first_start.py, which
checks what the page shows.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busadv.bench.common import Row, not_measured
from busadv.bench.context import Bench
from busadv.bench.startup import free_port, headless_browser, streamlit_server
from busadv.settings import PROJECT_ROOT

READY = "Smallest ε that flips it"          # the explorer's readout: a model answered, the flip search ran
FIGURE = ".st-key-stage-box g.annotation"    # the first screen's pictures with their probabilities
PROGRESS = "/getting the explorer ready|is being trained/"  # the first-start notices (explorer, Home)
NAME = "first start: server start to a flipping explorer, opened at / (no data, no model, no click)"


@dataclass
class FirstStart:
    progress_seconds: float   # server start -> the first-start notice with its progress
    ready_seconds: float      # server start -> the explorer with a model's answer
    url: str                  # where the browser is then
    text: str                 # the page's text then
    exception: bool           # the page showed an exception box
    log: str                  # the server's output


@contextlib.contextmanager
def fresh_server(scratch: Path, timeout: float = 120) -> Iterator[tuple[str, float]]:
    """`streamlit run app.py` on empty busadv folders (simulated phantoms): (its base URL once healthy, the
    time.monotonic() at which the server was started)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("BUSADV_DATA", "BUSADV_FIRST_START")}
    env.update(BUSADV_HOME=str(scratch / "home"), BUSADV_CHECKPOINTS=str(scratch / "checkpoints"),
               BUSADV_CACHE=str(scratch / "cache"), PYTHONUNBUFFERED="1")
    log = scratch / "streamlit.log"
    started = time.monotonic()
    with streamlit_server(PROJECT_ROOT, env, port, log, timeout) as base:
        yield base, started


def first_start(browser: Any, timeout: float = 180, path: str = "/") -> FirstStart:
    """Open `path` (Home) as a fresh install's first page load and wait, clicking nothing, until the explorer works."""
    with tempfile.TemporaryDirectory(prefix="busadv-first-start-") as folder:
        scratch = Path(folder)
        with fresh_server(scratch) as (base, started):
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            try:
                page.goto(f"{base}{path}")
                page.wait_for_function(f"() => {PROGRESS}.test(document.body.innerText)", timeout=timeout * 1000)
                progress = time.monotonic() - started
                page.wait_for_function(f"() => document.body.innerText.includes({READY!r}) && "
                                       f"document.querySelector({FIGURE!r})", timeout=timeout * 1000)
                ready = time.monotonic() - started
                page.wait_for_function("() => !document.querySelector('[data-testid=\"stSpinner\"]')",
                                       timeout=timeout * 1000)
                # The page's text and the first screen's figure's (SVG text is not in innerText).
                text = page.inner_text("body") + "\n" + page.evaluate(
                    "() => [...document.querySelectorAll('svg text')].map(t => t.textContent).join('\\n')")
                url = page.url
                raised = page.query_selector('[data-testid="stException"]') is not None
            finally:
                page.close()
        return FirstStart(progress, ready, url, text, raised, (scratch / "streamlit.log").read_text()[-3000:])


def smallest_flip(text: str) -> str:
    """The explorer's 'Smallest ε that flips it' readout value ('0.0157 (4/255)' or 'none up to 0.5')."""
    lines = [line.strip() for line in text.splitlines()]
    index = lines.index(READY)
    return next(line for line in lines[index + 1:] if line)


def section(bench: Bench) -> list[Row]:
    if not bench.browser:
        return [Row("first start", NAME, status="skipped", note="needs Playwright and Chromium; not in --quick "
                                                                 "or with --no-browser")]
    try:
        with headless_browser() as browser:
            if browser is None:
                return [not_measured("first start", NAME, "no Chromium or Playwright here")]
            shown = first_start(browser)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return [not_measured("first start", NAME, "error", f"{type(exc).__name__}: {str(exc)[:200]}")]
    flip = smallest_flip(shown.text)
    return [Row("first start", NAME, shown.ready_seconds, 30.0, "s", shown.ready_seconds / 30.0, target="<= 1",
                note=f"reference = the 30 s target; progress shown after {shown.progress_seconds:.1f} s; smallest "
                     f"flipping ε of the first image: {flip}; diagnosis flipped at the default ε: "
                     f"{'Diagnosis flipped' in shown.text}; load average {os.getloadavg()[0]:.1f}").judge()]
