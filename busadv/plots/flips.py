"""Per-image robustness charts: how little each image needs to flip, class by class, and clean vs robust."""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from busadv.attacks import attack_label, format_epsilon
from busadv.data.spec import BUSI
from busadv.evaluation import ImageFlip
from busadv.plots.style import FLIP_COLOR, PALETTE, layout, text


def flip_distribution(flips: Sequence[ImageFlip], classes: Sequence[str] = BUSI.classes,
                      title: str | None = None) -> go.Figure:
    """One row per true class: each image's smallest flipping epsilon (k/255), one colour per attack.

    Images that never flipped up to the search's limit sit at the right edge as open markers, so a class
    that is robust shows up as a pile there rather than as a gap. Only images the model diagnosed correctly
    without noise are drawn: flipping a wrong answer is not the question a clinician asks.
    """
    correct = [f for f in flips if f.correct]
    attacks = list(dict.fromkeys(f.attack for f in correct))
    limit = max((f.max_epsilon for f in correct), default=0.5) * 255
    fig = go.Figure()
    for i, attack in enumerate(attacks):
        color = PALETTE[i % len(PALETTE)]
        for flipped in (True, False):
            points = [f for f in correct if f.attack == attack and (f.flip_epsilon is not None) == flipped]
            if not points:
                continue
            fig.add_box(
                x=[(f.flip_epsilon if f.flip_epsilon is not None else f.max_epsilon) * 255 for f in points],
                y=[text(f.label) for f in points], orientation="h", name=text(attack_label(attack)) if flipped else
                f"{text(attack_label(attack))}: no flip up to {format_epsilon(points[0].max_epsilon)}",
                boxpoints="all", jitter=0.5, pointpos=0, fillcolor="rgba(0,0,0,0)",
                line=dict(color=color if flipped else "rgba(0,0,0,0)"), offsetgroup=attack, legendgroup=attack,
                marker=dict(color=color, size=7, symbol="circle" if flipped else "circle-open"),
                hovertext=[f"{text(f.name)}<br>{text(f.label)} → {text(f.flipped_to)} at ε="
                           f"{format_epsilon(f.flip_epsilon)}" if f.flip_epsilon is not None
                           else f"{text(f.name)}<br>{text(f.label)}: no flip" for f in points],
                hoverinfo="text")
    layout(fig, title or "How little noise flips each correctly diagnosed test image",
           subtitle="one dot per image; box: median and quartiles; further right = more robust", legend="bottom",
           boxmode="group", height=380)
    ticks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k <= limit]
    fig.update_xaxes(type="log", title="smallest flipping ε (in k/255, log scale)", tickvals=ticks,
                     ticktext=[f"{k}/255" for k in ticks], range=[math.log10(0.8), math.log10(limit * 1.15)])
    fig.update_yaxes(title=None, categoryorder="array", categoryarray=[text(c) for c in classes][::-1])
    if not correct:
        fig.add_annotation(text="no correctly diagnosed image in these results", showarrow=False,
                           font=dict(color=FLIP_COLOR))
    return fig
