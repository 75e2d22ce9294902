"""Clean versus robust: one point per training recipe, so a trade-off (or a collapse) is seen at a glance."""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from busadv.attacks import attack_label, format_epsilon
from busadv.plots.results import short_labels
from busadv.plots.style import FLIP_COLOR, PALETTE, REFERENCE_COLOR, layout, legend_below, metric_name, text
from busadv.results import GroupSummary, recipe_labels
from busadv.results.tradeoff import CLEAN_TOLERANCE, TradeoffAnswer


def robustness_frontier(groups: Sequence[GroupSummary], attack: str, epsilon: float,
                        metric: str = "balanced_accuracy", title: str | None = None) -> go.Figure:
    """x: the measure on clean images, y: under `attack` at `epsilon`; mean ± std over runs per recipe.

    Up and to the right is better. Chance (1/3 balanced accuracy) is drawn on both axes: a recipe near the
    lower left answers one class for everything; its collapsed runs are counted in the hover text.
    """
    clean = {g.recipe: g for g in groups if g.attack == "none"}
    attacked = {g.recipe: g for g in groups if g.attack == attack and math.isclose(g.test_epsilon, epsilon)}
    shown = [g for g in groups if g.recipe in clean and g.recipe in attacked]
    names = {recipe: text(label) for recipe, label in recipe_labels(shown).items()}  # outside text: escaped
    legend = short_labels(shown)  # at most ~30 characters; the whole recipe is in the hover
    fig = go.Figure()
    for i, recipe in enumerate(r for r in clean if r in attacked):
        x, y = clean[recipe].stat(metric), attacked[recipe].stat(metric)
        collapsed = max(clean[recipe].collapsed_runs, attacked[recipe].collapsed_runs)
        fig.add_scatter(
            x=[x.mean], y=[y.mean], mode="markers", name=legend[recipe],
            error_x=dict(type="data", array=[x.std], visible=True), error_y=dict(type="data", array=[y.std],
                                                                                visible=True),
            marker=dict(size=13, color=PALETTE[i % len(PALETTE)], symbol="x" if collapsed else "circle",
                        line=dict(width=2, color=FLIP_COLOR if collapsed else "white")),
            hovertext=f"{names[recipe]}<br>clean {x.text()}<br>{attack_label(attack)} ε={format_epsilon(epsilon)}: "
                      f"{y.text()}<br>{clean[recipe].n_runs} run(s)"
                      + (f"<br><b>{collapsed} run(s) collapsed</b>" if collapsed else ""), hoverinfo="text")
    if metric == "balanced_accuracy":
        for axis in ("x", "y"):
            line = dict(color=REFERENCE_COLOR, dash="dash", width=1.5)
            if axis == "x":
                fig.add_vline(x=1 / 3, line=line, annotation_text="chance", annotation_position="top right")
            else:
                fig.add_hline(y=1 / 3, line=line, annotation_text="chance", annotation_position="top left")
    layout(fig, title or f"Clean versus robust {metric_name(metric).lower()}, one point per training recipe",
           subtitle=f"robust = under {attack_label(attack)} at ε={format_epsilon(epsilon)}; mean ± std over runs; "
                    "✕ = some runs collapsed; up and to the right is better", height=460)
    fig.update_xaxes(range=[-0.03, 1.03], tickformat=".0%", title=f"{metric_name(metric)}, clean test images")
    fig.update_yaxes(range=[-0.03, 1.03], tickformat=".0%",  # a point at 0 stays whole
                     title=f"Robust {metric_name(metric).lower()}")  # short: a long one ran into the title
    return legend_below(fig)  # recipe names are long: one per line, clear of the x-axis title


def _zoomed(values: Sequence[float], low: float, high: float) -> list[float]:
    """An axis range that holds the values and chance (1/3) with a margin, inside [low, high]: points that sit
    within 0.1 of each other stay apart, and chance stays in view to read them against."""
    lo, hi = min([*values, 1 / 3]), max([*values, 1 / 3])
    pad = max(0.05, (hi - lo) * 0.1)
    return [max(low, lo - pad), min(high, hi + pad)]


def epsilon_tradeoff(answer: TradeoffAnswer, title: str | None = None) -> go.Figure:
    """The study's question as one picture: clean (x) against robust (y) balanced accuracy, one point per training
    epsilon (mean, with each seed as a faint dot), joined in order of epsilon; the chosen epsilon ringed, and the
    rule's clean threshold drawn so the eligible side is seen."""
    fig = go.Figure()
    xs, ys, spread_x, spread_y = [], [], [], []
    for i, point in enumerate(answer.points):
        (cx, csd), (rx, rsd) = point.stat("clean"), point.stat("robust")
        xs.append(cx)
        ys.append(rx)
        color = PALETTE[i % len(PALETTE)]
        seeds = point.seeds
        spread_x += [point.clean[s] for s in seeds] + [cx - csd, cx + csd]
        spread_y += [point.robust[s] for s in seeds] + [rx - rsd, rx + rsd]
        fig.add_scatter(x=[point.clean[s] for s in seeds], y=[point.robust[s] for s in seeds], mode="markers",
                        marker=dict(size=7, color=color, opacity=0.35), showlegend=False, hoverinfo="text",
                        hovertext=[f"training ε {point.label}, seed {s}" for s in seeds])
        chosen = answer.best is point
        fig.add_scatter(
            x=[cx], y=[rx], mode="markers", name=f"training ε {point.label}, {len(seeds)} seed(s)",
            error_x=dict(type="data", array=[csd], visible=True, color=color),
            error_y=dict(type="data", array=[rsd], visible=True, color=color),
            marker=dict(size=18 if chosen else 13, color=color, symbol="x" if point.collapsed_seeds else "circle",
                        line=dict(width=4 if chosen else 1.5, color="black" if chosen else "white")),
            hoverinfo="text",
            hovertext=f"training ε {point.label}<br>clean BA {cx:.3f} ± {csd:.3f}<br>robust BA {rx:.3f} ± {rsd:.3f}"
                      f"<br>{len(seeds)} seed(s)" + (" <b>chosen by the rule</b>" if chosen else ""))
        # A pointer from the label to its point: labels set beside points were read as the neighbour's.
        short = point.label.split("(")[-1].rstrip(")") if "(" in point.label else point.label
        fig.add_annotation(x=cx, y=rx, text=f"<b>{short}</b>", showarrow=True, arrowhead=0, arrowwidth=1.5,
                           arrowcolor=color, ax=-60 if i % 2 else 60, ay=35 if i % 2 else -35,
                           font=dict(color=color, size=14), bgcolor="rgba(255,255,255,0.85)")
    fig.add_scatter(x=xs, y=ys, mode="lines", line=dict(color=REFERENCE_COLOR, width=1.5, dash="dot"),
                    showlegend=False, hoverinfo="skip")
    line = dict(color=REFERENCE_COLOR, dash="dash", width=1.5)
    fig.add_vline(x=1 / 3, line=line, annotation_text="chance", annotation_position="bottom right")
    fig.add_hline(y=1 / 3, line=line, annotation_text="chance", annotation_position="top left")
    standard = next((p for p in answer.points if p.train_epsilon == 0), None)
    if standard is not None:
        threshold = standard.stat("clean")[0] - CLEAN_TOLERANCE
        fig.add_vline(x=threshold, line=dict(color=FLIP_COLOR, dash="dot", width=1.5),
                      annotation_text=f"rule: clean within {CLEAN_TOLERANCE} of standard →",
                      annotation_position="top right", annotation_font_color=FLIP_COLOR)
    layout(fig, title or f"What each training ε buys: {text(answer.arch)}, {text(answer.mode)}",
           subtitle=f"robust = balanced accuracy under {answer.condition}; mean ± std over seeds, faint dots = seeds; "
                    "black ring = the rule's choice; up and to the right is better", height=480)
    fig.update_xaxes(range=_zoomed(spread_x, -0.03, 1.03), tickformat=".0%",
                     title="Balanced accuracy, clean test images")
    fig.update_yaxes(range=_zoomed(spread_y, -0.03, 1.03), tickformat=".0%", title="Robust balanced accuracy")
    return legend_below(fig)
