"""The explorer's epsilon slider in a real browser: from a slider step to the new perturbed picture and its class
probabilities on screen, in headless Chromium on this machine's cores.

`python -m busadv.bench.browser_slider --data DIR --checkpoints DIR [--before OLD_TREE]` starts `streamlit run
app.py` (and, with --before, the same command in an older checkout of busadv: a "before" row measured in the
same run on the same machine), opens the explorer at 1280x720 and steps the slider back and forth over
1/255 ... 16/255. Each step is timed inside the page: from the input event's own time stamp (the click on the
first screen's Plotly slider, or the arrow key on a Streamlit slider) to the first animation frame after both
the perturbed picture and the probability text have changed. It prints a Markdown table (median and p95 per
page and model) for the README.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busadv.bench.startup import streamlit_server
from busadv.settings import PROJECT_ROOT

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# What the page shows now: (the perturbed picture's source, the probabilities' text), for the first screen's figure
# and, failing that, the explorer as it was before it (a Grad-CAM grid and a bar chart redrawn by a page rerun).
SIGNATURE = """() => {
  const stage = document.querySelector('.st-key-stage-box');
  if (stage) {
    const images = stage.querySelectorAll('image');
    const text = [...stage.querySelectorAll('g.annotation')].map(a => a.textContent).join('|');
    return [images.length ? images[images.length - 1].getAttribute('href') : null, text];
  }
  const grid = document.querySelector('.st-key-pictures-main-box');
  const images = grid ? grid.querySelectorAll('image') : [];
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  const bars = charts.filter(c => c.querySelector('text.bartext') && !(grid && grid.contains(c)));
  const text = bars.length ? [...bars[0].querySelectorAll('text.bartext')].map(t => t.textContent).join('|') : '';
  return [images.length > 1 ? images[1].getAttribute('href') : null, text];
}"""

# Wait in the page until the picture and then the text differ from `before`; the times are from the input event's
# time stamp to the animation frame after each change (what the screen then shows).
# A frame of the first screen's figure redraws its picture and its text in one call, and two neighbouring stops
# can read the same to 0.1 % (a saturated model): there the picture's change is the frame's change.
WAIT = """async ([before, timeout, atomic]) => {
  const signature = SIGNATURE;
  const start = window.__busadvInput;
  let picture = null;
  const frame = () => new Promise(r => requestAnimationFrame(() => r(performance.now())));
  const limit = performance.now() + timeout;
  while (performance.now() < limit) {
    const now = await frame();
    const [href, text] = signature();
    if (picture === null && href && href !== before[0]) picture = now - start;
    if (picture !== null && text && text !== before[1]) return [picture, now - start];
    if (picture !== null && atomic && now - start > picture + 500) return [picture, picture];
  }
  return [picture, null];
}""".replace("SIGNATURE", SIGNATURE)

LISTEN = """() => {
  for (const kind of ['mousedown', 'keydown']) {
    window.addEventListener(kind, e => { window.__busadvInput = e.timeStamp; }, {capture: true});
  }
}"""


@dataclass
class Steps:
    """Milliseconds per slider step: to the new picture, and to the picture and the probabilities both."""

    page: str
    picture_ms: list[float]
    both_ms: list[float]
    missed: int


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def settle(page: Any, timeout: float = 180) -> None:
    """Until the page has a title and no spinner or skeleton for a while (the script finished)."""
    page.wait_for_selector("h1", timeout=timeout * 1000)
    busy = '[data-testid="stSkeleton"], [data-testid="stSpinner"], [data-testid="stStatusWidget"]'
    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 4 and time.monotonic() < deadline:
        quiet = quiet + 1 if page.locator(busy).count() == 0 else 0
        time.sleep(0.4)


def _stage_steps(page: Any) -> list[tuple[float, float]]:
    """The centres of the first screen's slider stops (Plotly draws one tick per stop)."""
    ticks = page.locator(".st-key-stage-box .slider-container rect.slider-tick-rect")
    rail = page.locator(".st-key-stage-box .slider-container rect.slider-rail-touch-rect").first.bounding_box()
    centres = []
    for i in range(ticks.count()):
        box = ticks.nth(i).bounding_box()
        centres.append((box["x"] + box["width"] / 2, rail["y"] + rail["height"] / 2 if rail else box["y"]))
    return centres


def step_times(page: Any, steps: int, pause: float = 0.25, timeout_ms: float = 20_000) -> Steps:
    """Step the explorer's slider `steps` times between 1/255 and 16/255 and time each step inside the page."""
    page.evaluate(LISTEN)
    stage = page.locator(".st-key-stage-box").count() > 0
    positions = list(range(1, 17))
    walk = (positions + positions[-2:0:-1]) * (steps // 30 + 2)
    picture, both, missed = [], [], 0
    if stage:
        centres = _stage_steps(page)
        current = int(page.evaluate("() => document.querySelector('.st-key-stage-box .js-plotly-plot')"
                                    ".layout.sliders[0].active"))
    else:
        thumb = page.locator('[data-testid="stSlider"] input[type="range"]').first
        thumb.focus()
        current = 4  # the old page's default, 4/255
    for target in walk[:steps + 1]:
        if target == current:
            continue
        before = page.evaluate(SIGNATURE)
        if stage:
            page.mouse.click(*centres[target])
        else:
            page.keyboard.press("ArrowRight" if target > current else "ArrowLeft")
        shown, done = page.evaluate(WAIT, [before, timeout_ms, stage])
        current = target
        if shown is None or done is None:
            missed += 1
        else:
            picture.append(float(shown))
            both.append(float(done))
        if not stage:
            settle(page, 60)  # the rerun's last elements, before the next key
        time.sleep(pause)
        if len(both) + missed >= steps:
            break
    return Steps("first screen (client-side slider)" if stage else "server-side slider (page rerun)", picture,
                 both, missed)


def measure(root: Path, env: dict[str, str], port: int, steps: int, scratch: Path, model: str | None = None) -> Steps:
    from playwright.sync_api import sync_playwright

    with streamlit_server(root, {**os.environ, **env, "PYTHONPATH": str(root)}, port,
                          scratch / f"streamlit-{port}.log") as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"{base}/Perturbation_explorer" + (f"?model={model}" if model else ""))
            settle(page)
            page.wait_for_selector('[data-testid="stPlotlyChart"]', timeout=120_000)
            settle(page)
            time.sleep(1.0)
            return step_times(page, steps)
        finally:
            browser.close()


def row(label: str, steps: Steps) -> str:
    def stats(values: list[float]) -> str:
        if not values:
            return "n/a | n/a"
        return f"{statistics.median(values):.0f} | {percentile(values, 0.95):.0f}"

    return (f"| {label} | {steps.page} | {stats(steps.picture_ms)} | {stats(steps.both_ms)} | "
            f"{len(steps.both_ms)} | {steps.missed} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m busadv.bench.browser_slider", description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="BUSI folder (default: the simulated phantoms)")
    parser.add_argument("--checkpoints", required=True, help="checkpoints folder the explorer lists")
    parser.add_argument("--model", action="append", default=[],
                        help="checkpoint file stem to open (repeat for several; default: the explorer's first)")
    parser.add_argument("--before", help="an older busadv checkout to measure in the same run (the 'before' rows)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--port", type=int, default=8605)
    args = parser.parse_args(argv)
    env = {"BUSADV_CHECKPOINTS": str(Path(args.checkpoints).resolve()), "OMP_NUM_THREADS": "1",
           "BUSADV_FIRST_START": "off", "PYTHONUNBUFFERED": "1"}
    if args.data:
        env["BUSADV_DATA"] = str(Path(args.data).resolve())
    else:
        os.environ.pop("BUSADV_DATA", None)
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}", flush=True)
    lines = ["| model | explorer | step → picture, median ms | p95 ms | step → picture and probabilities, "
             "median ms | p95 ms | steps | missed |", "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="busadv-slider-") as folder:
        scratch = Path(folder)
        for model in args.model or [None]:
            roots = [("after", PROJECT_ROOT)] + ([("before", Path(args.before).resolve())] if args.before else [])
            for which, root in roots:
                home = scratch / f"home-{which}"
                times = measure(root, {**env, "BUSADV_HOME": str(home), "BUSADV_CACHE": str(scratch / "cache")},
                                args.port, args.steps, scratch, model)
                lines.append(row(f"{model or 'first listed'} ({which})", times))
                print(lines[-1], flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
