"""The explorer page driven headless by Streamlit's AppTest: a full rerun after an epsilon-slider move.

The page runs inside the app (its menu links to app.py): app.py is opened first, then the page. While the
app is being written, any failure is a "not measured: ..." row, never a crash.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import torch

from busadv.attacks import parse_epsilon
from busadv.bench.common import Row, environment, median, not_measured
from busadv.settings import PROJECT_ROOT

HOME = "app.py"
EXPLORER_PAGE = "pages/1_Perturbation_explorer.py"
NAME = "explorer page: AppTest rerun after a slider move"
_NUMBER = re.compile(r"\d+\s*/\s*\d+|\d*\.?\d+(?:e[-+]?\d+)?")


def pick_slider(at: Any) -> Any | None:
    """The epsilon slider: an st.slider or st.select_slider whose label speaks of epsilon, else the first one."""
    sliders = list(at.slider) + list(at.select_slider)
    for s in sliders:
        text = str(getattr(s, "label", "")).lower()
        if "eps" in text or "ε" in text:
            return s
    return sliders[0] if sliders else None


def option_values(slider: Any) -> list[Any]:
    """A select slider's option values. AppTest sees only their labels ('0.0314 (8/255)'), so each label is
    parsed back to a number and kept only where the page's own format function gives that label again."""
    try:
        label_of = slider.format_func
    except (KeyError, AttributeError):
        return list(slider.options)
    values: list[Any] = []
    for text in slider.options:
        value: Any = text
        for candidate in _NUMBER.findall(text):
            try:
                number = parse_epsilon(candidate)
            except ValueError:
                continue
            if str(label_of(number)) == text:
                value = number
                break
        values.append(value)
    return values


def slider_values(slider: Any, count: int) -> list[Any]:
    """`count` positions spread over the slider, each different from the one before."""
    fractions = (0.37, 0.71, 0.19, 0.53, 0.88, 0.11)
    if getattr(slider, "type", "") == "select_slider":
        options = option_values(slider)
        stops = [options[round(f * (len(options) - 1))] for f in fractions]
        first, last = options[0], options[-1]
    else:
        lo, hi, step = slider.min, slider.max, slider.step or 0
        stops = []
        for f in fractions:
            v = lo + (hi - lo) * f
            v = lo + round((v - lo) / step) * step if step else v
            stops.append(round(v) if isinstance(lo, int) and isinstance(hi, int) else min(max(v, lo), hi))
        first, last = lo, hi
    values, current = [], slider.value
    for k in range(count):
        v = stops[k % len(stops)]
        if v == current:
            v = last if current != last else first
        values.append(v)
        current = v
    return values


def _raised(at: Any) -> str | None:
    return str(at.exception[0].value)[:160] if at.exception else None


def bench_apptest(env: dict[str, str], repeats: int = 3, timeout: float = 180, root: Path = PROJECT_ROOT) -> list[Row]:
    """Open app.py, switch to the explorer page (its first run is the reference), then time slider moves."""
    missing = [p for p in (HOME, EXPLORER_PAGE) if not (root / p).exists()]
    if missing:
        return [not_measured("slider", NAME, "app not ready", f"no {', '.join(missing)}")]
    try:
        from streamlit.testing.v1 import AppTest
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return [Row("slider", NAME, status="not installed", note=f"streamlit: {exc}")]
    threads = torch.get_num_threads()  # the app sets one thread for its process: this one, under AppTest
    with environment(env):
        try:
            at = AppTest.from_file(str(root / HOME), default_timeout=timeout)
            at.run()
            if _raised(at):
                return [not_measured("slider", NAME, "app.py raised", _raised(at) or "")]
            start = time.perf_counter()
            at.switch_page(EXPLORER_PAGE).run()
            first = time.perf_counter() - start
            if _raised(at):
                return [not_measured("slider", NAME, "explorer page raised", _raised(at) or "")]
            slider = pick_slider(at)
            if slider is None:
                return [not_measured("slider", NAME, "no slider on the explorer page")]
            times = []
            for v in slider_values(slider, repeats + 1):
                moved = pick_slider(at)
                assert moved is not None
                start = time.perf_counter()
                moved.set_value(v).run()
                times.append(time.perf_counter() - start)
                if _raised(at):
                    return [not_measured("slider", NAME, "slider move raised", _raised(at) or "")]
        except Exception as exc:  # noqa: BLE001 - a page being written right now may break in any way
            return [not_measured("slider", NAME, "page failed", f"{type(exc).__name__}: {str(exc)[:160]}")]
        finally:
            torch.set_num_threads(threads)
    times = times[1:]  # the first move may build caches the later ones reuse
    return [Row("slider", NAME, median(times) * 1000, first * 1000, "ms", median(times) / first,
                note=f"slider '{slider.label}'; reference = the page's first run",
                extra={"times_ms": [t * 1000 for t in times]})]
