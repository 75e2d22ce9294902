"""A self-contained HTML report: Plotly's JavaScript inline once, every figure embedded, styles for print.

Self-contained so that it opens offline, travels as one e-mail attachment, and prints on paper.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: .9em; }
table { border-collapse: collapse; margin: .8em 0; width: 100%; font-size: .93em; }
th, td { border: 1px solid #ccc; padding: .35em .55em; text-align: left; vertical-align: top; }
th { background: #f3f5f8; }
.verdict { font-weight: 600; padding: .1em .45em; border-radius: .3em; white-space: nowrap; }
.holds { background: #dff0d8; color: #245b24; } .artefact { background: #fbe3e4; color: #8a1f24; }
.mixed { background: #fff3cd; color: #7a5a00; } .not-seen { background: #eee; color: #444; }
.note { background: #f7f7f7; border-left: 4px solid #1F5A96; padding: .5em .8em; margin: .8em 0; }
.warning { background: #fff8e5; border-left: 4px solid #c4560c; padding: .5em .8em; margin: .5em 0; }
.figure { page-break-inside: avoid; margin: 1em 0; } .caption { color: #444; font-size: .9em; }
@media print { body { max-width: none; margin: 0; } h2 { page-break-after: avoid; } .figure { break-inside: avoid; } }
"""


@dataclass
class Section:
    heading: str
    paragraphs: list[str] = field(default_factory=list)     # plain text, escaped
    figures: list[tuple[go.Figure, str]] = field(default_factory=list)  # (figure, caption)
    table: tuple[list[str], list[list[str]]] | None = None  # (header, rows), plain text, escaped
    html_blocks: list[str] = field(default_factory=list)    # already-escaped HTML made by this module


def verdict_badge(verdict: str) -> str:
    return f'<span class="verdict {html.escape(verdict.replace(" ", "-"))}">{html.escape(verdict)}</span>'


def render(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole report as one HTML string."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>",
             f"<h1>{html.escape(title)}</h1><p class='meta'>{html.escape(subtitle)} · generated "
             f"{dt.datetime.now():%Y-%m-%d %H:%M} by busadv</p>"]
    figure_number = 0
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
        parts += section.html_blocks
        if section.table:
            header, rows = section.table
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
        for figure, caption in section.figures:
            figure_number += 1
            body = figure.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False},
                                  div_id=f"figure-{figure_number}")
            parts.append(f"<div class='figure'>{body}<p class='caption'>Figure {figure_number}. "
                         f"{html.escape(caption)}</p></div>")
    parts.append("</body></html>")
    return "\n".join(parts)
