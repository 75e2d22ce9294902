"""Ultrasound pictures as one zoomable Plotly figure: panels side by side that zoom and pan together.

Why Plotly and not plain images: speckle lives at the scale of single pixels, and a 128 px model input
shown at 180 px hides it. Here every panel fills its share of the page, a dragged box zooms all panels
to the same region (the clean, the perturbed and the difference stay aligned), pixels stay square and
sharp, and a double click resets. Images travel as PNG data URIs, a few kilobytes each.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from busadv.explain.export import Panel
from busadv.plots.style import FONT
from busadv.plots.style import text as _plain


def data_uri(image: np.ndarray) -> str:
    """A uint8 grayscale [H, W] or RGB [H, W, 3] array as a PNG data URI."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.astype(np.uint8))).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _frame(panels: Sequence[Panel], columns: int, title_size: int, title: str | None) -> tuple[int, int, int, int]:
    """(columns, rows, px of one title block, top margin) of a grid."""
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    title_px = title_size + 10 + (max(12, title_size - 3) + 8 if any(p.note for p in panels) else 0)
    return columns, rows, title_px, title_px + (40 if title else 8)


def image_grid(panels: Sequence[Panel], columns: int = 3, row_height: int = 360, title: str | None = None,
               title_size: int = 16) -> go.Figure:
    """The panels in rows of `columns`, zoom and pan linked; every panel is drawn in the first panel's frame.

    Panels of other sizes (an original file at full resolution beside the model's 128 px input) are
    scaled into that frame, so a zoom shows the same anatomy in each, at each one's own resolution.
    Each row's band holds its pictures at the top and, below them, room for the next row's titles, so
    the figure keeps its looks at any height (`grid_css_height` gives the height that fits a width).
    """
    columns, rows, title_px, top = _frame(panels, columns, title_size, title)
    height0, width0 = panels[0].image.shape[:2]
    note_size = max(12, title_size - 3)
    # Titles and notes can carry a checkpoint's class names: plain text, never Plotly's HTML.
    titles = [f"<b>{_plain(p.title)}</b>" +
              (f"<br><span style='font-size:{note_size}px'>{_plain(p.note)}</span>" if p.note else "") for p in panels]
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=titles, shared_xaxes="all", shared_yaxes="all",
                        horizontal_spacing=SPACING, vertical_spacing=0.0)
    for i, panel in enumerate(panels):
        h, w = panel.image.shape[:2]
        fig.add_trace(go.Image(source=data_uri(panel.image), dx=width0 / w, dy=height0 / h, name=_plain(panel.title),
                               hovertemplate="x %{x:.0f}, y %{y:.0f}<extra>" + _plain(panel.title) + "</extra>"),
                      row=i // columns + 1, col=i % columns + 1)
    fig.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, range=[-0.5, width0 - 0.5],
                     constrain="domain")
    # Square pixels, each picture at the top of its band (the room below it holds the next row's titles).
    fig.update_yaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, range=[height0 - 0.5, -0.5],
                     scaleanchor="x", constrain="domain", constraintoward="top")
    fig.update_annotations(font=dict(size=title_size, color="#31333F"))
    fig.update_layout(height=rows * (row_height + title_px) + top + 4, margin=dict(l=4, r=4, t=top, b=4),
                      font=FONT, dragmode="zoom", title=dict(text=title, x=0.0, xanchor="left") if title else None)
    return fig



def grid_css_height(panels: Sequence[Panel], columns: int = 3, title_size: int = 16, title: str | None = None) -> str:
    """A CSS height for image_grid's figure that fits its pictures exactly at whatever width the page gives it.

    For a container with `container-type: inline-size` (100cqw is its width): a fixed height either leaves
    gaps under small pictures on a narrow screen or crops large ones on a wide one.
    """
    columns, rows, title_px, top = _frame(panels, columns, title_size, title)
    height0, width0 = panels[0].image.shape[:2]
    per_width = rows * (1 - SPACING * (columns - 1)) / columns * height0 / width0
    return f"calc((100cqw - 8px) * {per_width:.5f} + {rows * title_px + top + 4}px)"


SPACING = 0.015  # between columns, a share of the figure's width

# The chart's toolbar: zoom, pan and reset only (no lasso or select: there is nothing to select).
ZOOM_CONFIG = {"displaylogo": False, "scrollZoom": True,
               "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d", "toImage"]}
