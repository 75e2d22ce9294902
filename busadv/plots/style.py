"""The look every busadv chart shares: colours, readable fonts, legends that never cover titles.

Epsilons are always labelled both ways (0.031 = 8/255), and measures are fractions on a fixed 0..1 axis
so that charts side by side can be compared by eye. Red is kept for flips, misses and collapse.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from busadv.attacks import format_epsilon

CLEAN_COLOR = "#4C78A8"
PERTURBED_COLOR = "#E45756"
FLIP_COLOR = "#D62728"
REFERENCE_COLOR = "#555555"
# (clean, attacked) colour pairs per training mode: light = clean test set, dark = perturbed test set.
MODE_COLORS: dict[str, tuple[str, str]] = {
    "standard": ("#9ECAE9", "#1F5A96"),
    "fgsm": ("#FFBF79", "#C4560C"),
    "pgd": ("#8CD17D", "#2E7D32"),
}
PALETTE = ["#1F5A96", "#C4560C", "#2E7D32", "#7B1FA2", "#B8860B", "#00838F", "#AD1457", "#5D4037"]
METRIC_NAMES: dict[str, str] = {
    "balanced_accuracy": "Balanced accuracy",
    "accuracy": "Accuracy",
    "malignant_sensitivity": "Malignant sensitivity (cancers found)",
    "recall_benign": "Recall, benign",
    "recall_malignant": "Recall, malignant",
    "recall_normal": "Recall, normal",
    "dominant_share": "Share of the most predicted class",
}
FONT = dict(size=14)


def text(value: object) -> str:
    """Text from outside (file names, checkpoint fields, CSV/JSON cells, plugin names) made plain for Plotly.

    Why: Plotly draws a subset of HTML in trace names, legends, axis titles and ticks, annotations and
    hover labels, `<a href>` included (a clickable link in the chart) and `%{...}` in hover templates,
    so a results file whose recipe reads `<a href=...>` would put a link in the legend. Every plot
    module passes outside strings through here (Markdown contexts use busadv.app.layout.plain); the
    escapes render as the original characters.
    """
    return html.escape(" ".join(str(value).split()), quote=True).replace("%", "&#37;")


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric.replace("_", " "))


def short_epsilon(eps: float) -> str:
    """Axis-sized form of format_epsilon: 'clean' for 0, else '0.031<br>(8/255)'."""
    if eps == 0:
        return "clean"
    return format_epsilon(eps).replace(" (", "<br>(")


def rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def layout(fig: go.Figure, title: str, subtitle: str | None = None, legend: str = "top",
           **kwargs: Any) -> go.Figure:
    """Title top left, readable ticks, and a legend that never covers the title or the axis titles.

    legend="top": one row between title and plot, for two or three short entries;
    legend="right": a column beside the plot (Plotly widens the margin to fit), for many or long entries;
    legend="bottom": under the plot, for a narrow chart whose entries would wrap into the title.
    """
    heading: dict[str, Any] = dict(text=title, x=0.0, xanchor="left")
    if subtitle:
        heading["subtitle"] = dict(text=subtitle, font=dict(size=12))
    if legend == "right":
        legend_spec = dict(orientation="v", x=1.01, xanchor="left", y=1.0, yanchor="top", font=dict(size=13))
        top = 90 if subtitle else 60
    elif legend == "bottom":
        legend_spec = dict(orientation="h", x=0.0, xanchor="left", y=-0.12, yanchor="top", font=dict(size=13))
        top = 80 if subtitle else 50
    else:
        legend_spec = dict(orientation="h", x=0.0, xanchor="left", y=1.02, yanchor="bottom", font=dict(size=13))
        top = 110 if subtitle else 90
    fig.update_layout(title=heading, font=FONT, margin=dict(l=10, r=10, t=top, b=10), legend=legend_spec,
                      **kwargs)
    fig.update_xaxes(tickfont=dict(size=13), title_font=dict(size=14))
    fig.update_yaxes(tickfont=dict(size=13), title_font=dict(size=14))
    return fig


LEGEND_LINE_PX = 30  # one legend line at 13 px type, with Plotly's spacing


def legend_below(fig: go.Figure) -> go.Figure:
    """The figure with its legend under the plot, one entry per line, and the height grown to hold it.

    Why: Long legends sit to the right of the plot, which on a narrow screen (900 px
    beside the sidebar) leaves the bars a few dozen pixels wide; under the plot they keep the width.
    """
    entries = len({t.legendgroup or t.name for t in fig.data if t.showlegend is not False and t.name})
    extra = LEGEND_LINE_PX * entries
    # maxheight: Plotly caps a horizontal legend at half the figure and scrolls the rest; hold every line.
    fig.update_layout(legend=dict(orientation="h", x=0.0, xanchor="left", y=-0.22, yanchor="top", entrywidth=1,
                                  entrywidthmode="fraction", maxheight=extra + LEGEND_LINE_PX),
                      height=int(fig.layout.height or 450) + extra, margin=dict(r=10, b=70 + extra))
    return fig
