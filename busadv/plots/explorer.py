"""The explorer's charts: its first screen (two pictures, their probabilities, a client-side epsilon slider), class
probabilities of one image, clean beside perturbed, and as epsilon grows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from busadv.attacks import format_epsilon
from busadv.data.spec import BUSI
from busadv.plots.style import CLEAN_COLOR, FLIP_COLOR, PERTURBED_COLOR, layout
from busadv.plots.style import text as _plain

CLASSES = BUSI.classes


def probability_bars(classes: Sequence[str], clean: Sequence[float], perturbed: Sequence[float],
                     perturbed_name: str = "Perturbed", title: str | None = None) -> go.Figure:
    """Clean and perturbed probability of each class as a pair of horizontal bars; each predicted class outlined.

    Horizontal, one class per line, so that it reads like a list of diagnoses and fits a narrow
    tile (300 px) without the percentages of neighbouring bars running into each other.
    """
    classes = [_plain(c) for c in classes]  # a checkpoint's class names: plain text in Plotly's HTML subset
    fig = go.Figure()
    for name, given, color in (("Clean", clean, CLEAN_COLOR), (_plain(perturbed_name), perturbed, PERTURBED_COLOR)):
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
    for c, name in enumerate(_plain(c) for c in classes):
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


# --------------------------------------------------------------------------------------------- the first screen

STAGE_SIDE = 0.485  # each picture's share of the figure's width (the rest is the gap between them)
STAGE_TOP, STAGE_BOTTOM = 64, 150  # px above the pictures (verdict) and below (probabilities, slider)
LARGE_EXTRA = 24  # px more below them in presenter mode's larger type



def probability_lines(classes: Sequence[str], probabilities: Sequence[float], flipped: bool = False) -> str:
    """'benign 12.3 %<br>▶ <b>malignant 80.1 %</b><br>normal 7.6 %': the predicted class marked and bold."""
    top = max(range(len(probabilities)), key=lambda i: float(probabilities[i]))
    lines = []
    for i, (name, p) in enumerate(zip(classes, probabilities, strict=True)):
        line = f"{_plain(name)} {100 * float(p):.1f} %"
        if i == top:
            color = FLIP_COLOR if flipped else "#1B1B1B"
            line = f"<span style='color:{color}'>▶ <b>{line}</b></span>"
        else:
            line = f"<span style='color:#555'>{line}</span>"
        lines.append(line)
    return "<br>".join(lines)


def stage_verdict(classes: Sequence[str], clean: Sequence[float], perturbed: Sequence[float], eps: float,
                  true_label: int | None) -> tuple[str, str]:
    """(the one-line verdict, its colour) for one slider position."""
    before = max(range(len(clean)), key=lambda i: float(clean[i]))
    after = max(range(len(perturbed)), key=lambda i: float(perturbed[i]))
    name = [_plain(c) for c in classes]
    if eps == 0:
        text, color = f"No change yet: the model says {name[before]}", "#1F5A96"
    elif after != before:
        text, color = f"⚠ Diagnosis flipped: {name[before]} → {name[after]}", FLIP_COLOR
    else:
        text, color = f"Unchanged: still {name[before]}", "#2E7D32"
    if true_label is not None and before != true_label:
        text += f" (wrong even without noise: it is {name[true_label]})"
    return text, color


def epsilon_stage(clean_image: np.ndarray, clean_probs: Sequence[float], epsilons: Sequence[float],
                  images: Sequence[np.ndarray], probabilities: Sequence[Sequence[float]], classes: Sequence[str],
                  attack_name: str, active: int, *, true_label: int | None = None, large: bool = False) -> go.Figure:
    """The explorer's first screen as one figure: the original and the perturbed image side by side, each with its
    class probabilities as text, and an epsilon slider whose every position is precomputed (one frame each).

    Why frames: moving the slider then runs in the browser alone (no page rerun, no round trip to the
    server): the new picture and its numbers appear within a frame's drawing time. The figure's own data
    is the frame at `active`, so what it shows and where the slider stands always agree.
    """
    from busadv.plots.images import data_uri

    size = 24 if large else 18
    small = 18 if large else 14
    name = _plain(attack_name)
    uris = [data_uri(image) for image in images]

    def annotations(i: int) -> list[dict[str, object]]:
        eps, probs = float(epsilons[i]), probabilities[i]
        flipped = int(np.argmax(probs)) != int(np.argmax(clean_probs))
        right = f"{name}, ε = {format_epsilon(eps)}" if eps > 0 else "Perturbed: ε = 0 (no change)"
        common = dict(xref="paper", yref="paper", showarrow=False, xanchor="center")
        return [
            dict(text="<b>Original</b> (what the model sees)", x=STAGE_SIDE / 2, y=1, yanchor="bottom", yshift=4,
                 font=dict(size=small), **common),
            dict(text=f"<b>{right}</b>", x=1 - STAGE_SIDE / 2, y=1, yanchor="bottom", yshift=4,
                 font=dict(size=small, color=FLIP_COLOR if flipped else "#31333F"), **common),
            dict(text=probability_lines(classes, clean_probs), x=STAGE_SIDE / 2, y=0, yanchor="top", yshift=-6,
                 align="left", font=dict(size=size), **common),
            dict(text=probability_lines(classes, probs, flipped), x=1 - STAGE_SIDE / 2, y=0, yanchor="top",
                 yshift=-6, align="left", font=dict(size=size), **common),
        ]

    def title(i: int) -> dict[str, object]:
        text, color = stage_verdict(classes, clean_probs, probabilities[i], float(epsilons[i]), true_label)
        return dict(text=f"<b>{text}</b>", x=0.0, xanchor="left", y=1, yanchor="top", yref="container", pad=dict(t=8),
                    font=dict(size=size + 4, color=color))

    fig = go.Figure()
    h0, w0 = clean_image.shape[:2]
    for k, (source, label) in enumerate(((data_uri(clean_image), "original"), (uris[active], "perturbed"))):
        axis = "" if k == 0 else "2"
        fig.add_trace(go.Image(source=source, xaxis=f"x{axis}", yaxis=f"y{axis}", name=label,
                               hovertemplate="x %{x:.0f}, y %{y:.0f}<extra>" + label + "</extra>"))
    axes = dict(showticklabels=False, ticks="", showgrid=False, zeroline=False)
    fig.update_layout(
        xaxis=dict(domain=[0, STAGE_SIDE], range=[-0.5, w0 - 0.5], constrain="domain", **axes),
        yaxis=dict(range=[h0 - 0.5, -0.5], scaleanchor="x", constrain="domain", constraintoward="bottom", **axes),
        xaxis2=dict(domain=[1 - STAGE_SIDE, 1], range=[-0.5, w0 - 0.5], constrain="domain", matches="x", **axes),
        yaxis2=dict(range=[h0 - 0.5, -0.5], scaleanchor="x2", constrain="domain", constraintoward="bottom",
                    matches="y", **axes),
        margin=dict(l=4, r=4, t=STAGE_TOP, b=STAGE_BOTTOM + (LARGE_EXTRA if large else 0)),
        height=560, font=dict(size=small), dragmode="zoom", showlegend=False,
        title=title(active), annotations=annotations(active),
    )
    labels = [_slider_label(float(e)) for e in epsilons]
    fig.frames = [go.Frame(name=str(i), data=[go.Image(source=uris[i])], traces=[1],
                           layout=dict(annotations=annotations(i), title=title(i)))
                  for i in range(len(epsilons))]
    fig.update_layout(sliders=[dict(
        active=active, x=0.0, len=1.0, y=0, yanchor="top", pad=dict(t=(106 if large else 92), b=0),
        currentvalue=dict(visible=True, prefix="ε = ", xanchor="left", font=dict(size=small)),
        font=dict(size=11 if not large else 13), ticklen=4, bgcolor="#E8EEF5", activebgcolor="#1F5A96",
        steps=[dict(method="animate", label=labels[i], value=str(i),
                    args=[[str(i)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                         transition=dict(duration=0))])
               for i in range(len(epsilons))])])
    return fig


def _slider_label(eps: float) -> str:
    """A slider stop in grey levels: '0', '4/255', '0.05' (the study's decimals stay decimals)."""
    k = eps * 255
    if eps == 0:
        return "0"
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:g}"
