"""The explorer's charts: class probabilities of one image, clean beside perturbed, and as epsilon grows."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from busadv.attacks import format_epsilon
from busadv.data.spec import BUSI
from busadv.plots.style import CLEAN_COLOR, FLIP_COLOR, PERTURBED_COLOR, layout

CLASSES = BUSI.classes


def probability_bars(classes: Sequence[str], clean: Sequence[float], perturbed: Sequence[float],
                     perturbed_name: str = "Perturbed", title: str | None = None) -> go.Figure:
    """Clean and perturbed probability of each class as a pair of horizontal bars; each predicted class outlined.

    Horizontal, one class per line, so that it reads like a list of diagnoses and fits a narrow
    tile (300 px) without the percentages of neighbouring bars running into each other.
    """
    classes = list(classes)
    fig = go.Figure()
    for name, given, color in (("Clean", clean, CLEAN_COLOR), (perturbed_name, perturbed, PERTURBED_COLOR)):
        probs = [float(p) for p in given]
        top = max(range(len(probs)), key=probs.__getitem__)
        fig.add_bar(
            y=classes, x=probs, orientation="h", name=name, marker_color=color,
            marker_line_width=[3 if i == top else 0 for i in range(len(probs))],
            marker_line_color="black",
            text=[f"<b>{p:.0%}</b>" if i == top else f"{p:.0%}" for i, p in enumerate(probs)],
            textposition="outside", cliponaxis=False, constraintext="none", textfont=dict(size=14),
            customdata=["predicted" if i == top else "" for i in range(len(probs))],
            hovertemplate="%{y}: %{x:.1%} %{customdata}<extra>" + name + "</extra>",
        )
    layout(fig, title or "Class probabilities", subtitle="black outline: the predicted class", legend="bottom",
            barmode="group", height=380)
    fig.update_layout(margin=dict(l=10, r=40, t=80, b=10))  # room for "100%" beyond the longest bar
    fig.update_xaxes(range=[0, 1], tickformat=".0%", dtick=0.5)
    fig.update_yaxes(autorange="reversed", title=None)  # benign, malignant, normal from the top
    return fig


def probability_sweep(epsilons: Sequence[float], probabilities: Sequence[Sequence[float]],
                      classes: Sequence[str] = CLASSES, flip_epsilon: float | None = None,
                      current: float | None = None, title: str | None = None) -> go.Figure:
    """Each class's probability as epsilon grows, with the first flip and the slider's position marked."""
    fig = go.Figure()
    xs = [float(e) * 255 for e in epsilons]
    for c, name in enumerate(classes):
        fig.add_scatter(x=xs, y=[float(p[c]) for p in probabilities], mode="lines", name=name,
                        customdata=[format_epsilon(float(e)) for e in epsilons],
                        hovertemplate=name + ": %{y:.1%} at ε=%{customdata}<extra></extra>")
    if flip_epsilon is not None:
        fig.add_vline(x=flip_epsilon * 255, line=dict(color=FLIP_COLOR, dash="dash"),
                      annotation_text=f"flips at {format_epsilon(flip_epsilon)}", annotation_position="top")
    if current is not None:
        fig.add_vline(x=current * 255, line=dict(color="gray", width=1))
    layout(fig, title or "Probabilities as ε grows", height=320)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title="probability")
    fig.update_xaxes(title="ε in k/255 (pixel scale 0..255)")
    return fig
