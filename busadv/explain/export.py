"""One comparison (images, probabilities, Grad-CAM, settings) as a PNG for slides and an HTML file for notes.

Both are self-contained: the HTML embeds its images as base64 PNGs and uses no script, font or style
sheet from elsewhere, so it opens offline and in a mail attachment. matplotlib (which the grad-cam
package brings) draws the PNG through its object-oriented API, which is safe in a server's threads.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

DISCLAIMER = "busadv: a research and teaching tool. Its models are not medical devices; its outputs are not diagnoses."
BAR_COLORS = ("#4C78A8", "#E45756", "#54A24B", "#B279A2")  # clean, perturbed, further models


@dataclass(frozen=True)
class Panel:
    """One picture of the comparison: uint8 grayscale [H, W] or RGB [H, W, 3]."""

    title: str
    image: np.ndarray
    note: str = ""


@dataclass(frozen=True)
class Comparison:
    """Everything one explorer view shows, in a form that needs no app to read."""

    title: str                                   # the verdict: "Diagnosis flipped: benign 93% -> malignant 71%"
    classes: tuple[str, ...]
    probabilities: tuple[tuple[str, tuple[float, ...]], ...]  # (condition, one probability per class)
    panels: tuple[Panel, ...]
    settings: tuple[tuple[str, str], ...] = ()   # (what, value): model, image, attack, epsilon, data
    notes: tuple[str, ...] = ()                  # attention numbers, caveats
    created: str = field(default_factory=lambda: dt.datetime.now().strftime("%Y-%m-%d %H:%M"))


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.astype(np.uint8))).save(buffer, format="PNG")
    return buffer.getvalue()


def comparison_png(comparison: Comparison, dpi: int = 150) -> bytes:
    """The comparison as one PNG: the pictures in rows of three, the probabilities as bars, then the settings."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    columns = min(3, max(1, len(comparison.panels)))
    rows = math.ceil(len(comparison.panels) / columns)
    text_lines = len(comparison.settings) + 2 * len(comparison.notes) + 4
    bottom = max(2.2, 0.17 * text_lines)
    figure = Figure(figsize=(4.2 * columns, 4.2 * rows + bottom), dpi=dpi, layout="constrained")
    grid = figure.add_gridspec(rows + 1, columns, height_ratios=[4.0] * rows + [bottom])
    figure.suptitle(comparison.title, fontsize=15, fontweight="bold")
    for i, panel in enumerate(comparison.panels):
        axes = figure.add_subplot(grid[i // columns, i % columns])
        axes.imshow(panel.image, cmap="gray" if panel.image.ndim == 2 else None, vmin=0, vmax=255,
                    interpolation="nearest")
        axes.set_title(panel.title + (f"\n{panel.note}" if panel.note else ""), fontsize=10)
        axes.set_axis_off()
    bars = figure.add_subplot(grid[rows, : max(1, columns - 1)] if columns > 1 else grid[rows, 0])
    count = len(comparison.probabilities)
    height = 0.8 / max(count, 1)
    ys = np.arange(len(comparison.classes))
    for k, (name, probs) in enumerate(comparison.probabilities):
        top = int(np.argmax(probs))
        positions = ys + (k - (count - 1) / 2) * height
        bars.barh(positions, probs, height=height, color=BAR_COLORS[k % len(BAR_COLORS)], label=name,
                  edgecolor=["black" if c == top else "none" for c in range(len(probs))], linewidth=1.5)
        for y, p in zip(positions, probs, strict=True):
            bars.text(min(float(p), 0.86) + 0.01, y, f"{p:.0%}", va="center", fontsize=9)
    bars.set_yticks(ys, comparison.classes)
    bars.invert_yaxis()
    bars.set_xlim(0, 1)
    bars.xaxis.set_major_formatter(PercentFormatter(1.0))
    bars.set_xlabel("probability (black edge: the predicted class)")
    bars.legend(loc="lower right", fontsize=8)
    text = "\n".join([*(f"{k}: {v}" for k, v in comparison.settings), *comparison.notes, "",
                      f"{DISCLAIMER} Exported {comparison.created}."])
    if columns > 1:
        notes = figure.add_subplot(grid[rows, columns - 1])
        notes.set_axis_off()
        notes.text(0, 1, _wrap(text, 48), va="top", fontsize=8)
    else:
        bars.set_title(_wrap(text, 60), fontsize=7, loc="left")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.fill(line, width) if line else "" for line in text.splitlines())


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #222; max-width: 1200px; }
h1 { font-size: 1.5rem; } table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
td, th { padding: 0.25rem 0.75rem; text-align: left; border-bottom: 1px solid #ddd; vertical-align: middle; }
.panels { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; width: 320px; } figcaption { font-size: 0.9rem; margin-top: 0.3rem; }
figure img { width: 320px; height: auto; image-rendering: pixelated; border: 1px solid #ccc; }
.bar { height: 0.9rem; display: inline-block; vertical-align: middle; }
.top { font-weight: bold; } .note { color: #555; font-size: 0.85rem; }
"""


def comparison_html(comparison: Comparison) -> str:
    """The comparison as one self-contained HTML page (images inline as base64, no external references)."""
    esc = html.escape
    settings = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in comparison.settings)
    figures = "".join(
        f'<figure><img alt="{esc(p.title)}" src="data:image/png;base64,{base64.b64encode(_png(p.image)).decode()}">'
        f"<figcaption><b>{esc(p.title)}</b>{'<br>' + esc(p.note) if p.note else ''}</figcaption></figure>"
        for p in comparison.panels)
    header = "".join(f"<th>{esc(name)}</th>" for name, _ in comparison.probabilities)
    rows = []
    for c, cls in enumerate(comparison.classes):
        cells = []
        for k, (_, probs) in enumerate(comparison.probabilities):
            p = float(probs[c])
            top = ' class="top"' if c == int(np.argmax(probs)) else ""
            cells.append(f'<td{top}><span class="bar" style="width:{p * 160:.0f}px;background:'
                         f'{BAR_COLORS[k % len(BAR_COLORS)]}"></span> {p:.1%}</td>')
        rows.append(f"<tr><th>{esc(cls)}</th>{''.join(cells)}</tr>")
    notes = "".join(f"<li>{esc(n)}</li>" for n in comparison.notes)
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(comparison.title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>{esc(comparison.title)}</h1>\n"
            f"<table>{settings}</table>\n<div class=\"panels\">{figures}</div>\n"
            f"<h2>Class probabilities</h2><table><tr><th></th>{header}</tr>{''.join(rows)}</table>"
            f"<p class=\"note\">Bold: the predicted class of each condition.</p>\n"
            f"{'<h2>Notes</h2><ul>' + notes + '</ul>' if notes else ''}\n"
            f"<p class=\"note\">{esc(DISCLAIMER)} Exported {esc(comparison.created)}.</p>\n</body></html>\n")
