"""Charts of robustness beyond white-box attacks: scanner corruptions by severity, equal-size comparison, transfer.

Same honesty as the other charts: fixed 0..1 axes, the clean score and the floor a constant answer
gets (majority rate or chance) drawn on every measure chart, and means over runs with their spread.
Scanner variation is drawn in cool colours and attacks in warm ones, so "ordinary" and "adversarial"
are told apart at a glance.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import plotly.graph_objects as go

from busadv.attacks import ATTACKS, attack_label
from busadv.attacks.base import BASELINE, CORRUPTION
from busadv.evaluation.transfer import TransferMatrix
from busadv.plots.results import reference_line
from busadv.plots.style import REFERENCE_COLOR, layout, metric_name, short_epsilon, text
from busadv.results import GroupSummary, ResultRow, Stat

SCANNER_COLORS = ["#1F5A96", "#00838F", "#2E7D32", "#5D4037", "#7B1FA2", "#6A8CAF", "#9E9E9E"]
CLEAN_LINE = "#111111"  # the model's own clean score: black, so no scanner line can be mistaken for it
K = TypeVar("K", bound=Hashable)
ATTACK_COLORS = {"fgsm": "#E8833A", "fgsm-pred": "#F2A65A", "pgd": "#C62828", "autoattack": "#7F0000",
                 "noise": "#B8860B"}


def _pooled(rows: Sequence[ResultRow], key: Callable[[ResultRow], K], metric: str) -> dict[K, Stat]:
    """Mean and spread over runs of one measure, per key."""
    values: dict[K, list[float]] = defaultdict(list)
    for row in rows:
        values[key(row)].append(row.metric(metric))
    return {k: Stat.of(v) for k, v in values.items()}


def _clean_line(fig: go.Figure, clean: Sequence[ResultRow], metric: str) -> None:
    """The model's own clean score: the line every corrupted score is read against."""
    stat = Stat.of(r.metric(metric) for r in clean)
    if math.isnan(stat.mean):
        return
    line = dict(color=CLEAN_LINE, width=2)
    fig.add_hline(y=stat.mean, line=line)  # named in the legend: a label on the plot would cover lines or bars
    fig.add_scatter(x=[None], y=[None], mode="lines", line=line, name=f"unchanged images: {stat.mean:.0%}",
                    hoverinfo="skip")


def _references(fig: go.Figure, clean: Sequence[ResultRow], metric: str) -> None:
    _clean_line(fig, clean, metric)
    reference_line(fig, [GroupSummary(rows=list(clean))] if clean else [], metric)


def corruption_curves(rows: Sequence[ResultRow], metric: str = "balanced_accuracy",
                      title: str | None = None) -> go.Figure:
    """One line per scanner corruption: the measure at severity 1..5 (mean over runs, band ± std)."""
    clean = [r for r in rows if r.attack == "none"]
    graded = [r for r in rows if r.severity is not None and r.attack != "none"]
    stats = _pooled(graded, lambda r: (r.attack, int(r.severity or 0)), metric)
    fig = go.Figure()
    for index, name in enumerate(dict.fromkeys(r.attack for r in graded)):
        levels = sorted(s for a, s in stats if a == name)
        means = [stats[(name, s)].mean for s in levels]
        spreads = [stats[(name, s)].std for s in levels]
        scale = ATTACKS.get(name).severity_scale if name in ATTACKS else ()
        settings = [text(scale[s - 1]) if s - 1 < len(scale) else "" for s in levels]
        color = SCANNER_COLORS[index % len(SCANNER_COLORS)]
        label = text(attack_label(name))
        fig.add_scatter(x=levels, y=means, mode="lines+markers", name=label,
                        line=dict(color=color, width=2.5), marker=dict(size=8),
                        error_y=dict(type="data", array=spreads, visible=any(spreads), thickness=1.2, width=4),
                        customdata=settings,
                        hovertemplate=f"{label}<br>severity %{{x}} (%{{customdata}})<br>"
                                      f"{metric_name(metric)}: %{{y:.1%}}<extra></extra>")
    _references(fig, clean, metric)
    layout(fig, title or f"{metric_name(metric)} by severity", legend="right", height=440)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title=metric_name(metric))
    fig.update_xaxes(title="severity: 1 mild … 5 severe", tickvals=[1, 2, 3, 4, 5], range=[0.7, 5.3])
    return fig


def equal_size_bars(rows: Sequence[ResultRow], metric: str = "balanced_accuracy",
                    title: str | None = None) -> go.Figure:
    """Scanner variation and attacks at the same L-inf size, one group per ε: which change hurts, size for size."""
    clean = [r for r in rows if r.attack == "none"]
    sized = [r for r in rows if r.severity is None and r.attack != "none" and r.test_epsilon > 0]
    scanner = list(dict.fromkeys(r.attack for r in sized if r.attack in ATTACKS
                                 and ATTACKS.get(r.attack).family == CORRUPTION))
    measured = {round(r.test_epsilon, 9) for r in sized if r.attack in scanner}
    sized = [r for r in sized if round(r.test_epsilon, 9) in measured or not scanner]  # only sizes both were run at
    epsilons = sorted({round(r.test_epsilon, 9) for r in sized})
    stats = _pooled(sized, lambda r: (r.attack, round(r.test_epsilon, 9)), metric)
    attacks = list(dict.fromkeys(r.attack for r in sized))
    ordered = scanner + [a for a in attacks if a not in scanner]  # scanner variation first, then the attacks
    fig = go.Figure()
    for name in ordered:
        present = [e for e in epsilons if (name, e) in stats]
        is_scanner = name in scanner
        family = CORRUPTION if is_scanner else ATTACKS.get(name).family if name in ATTACKS else ""
        kind = {CORRUPTION: "scanner", BASELINE: "random baseline"}.get(family, "attack")
        color = (SCANNER_COLORS[scanner.index(name) % len(SCANNER_COLORS)] if is_scanner
                 else ATTACK_COLORS.get(name, "#AD1457"))
        fig.add_bar(x=[short_epsilon(e) for e in present], y=[stats[(name, e)].mean for e in present],
                    error_y=dict(type="data", array=[stats[(name, e)].std for e in present],
                                 visible=any(stats[(name, e)].std for e in present)),
                    name=f"{text(attack_label(name))} ({kind})", marker_color=color,
                    marker_pattern=dict(shape={"scanner": "", "random baseline": "."}.get(kind, "/"),
                                        fillmode="overlay", fgcolor="white", solidity=0.35),
                    hovertemplate=f"{text(attack_label(name))} at ε=%{{x}}<br>{metric_name(metric)}: %{{y:.1%}}"
                                  "<extra></extra>")
    _references(fig, clean, metric)
    layout(fig, title or f"{metric_name(metric)} at equal size", legend="right", barmode="group", height=460)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title=metric_name(metric))
    fig.update_xaxes(title="ε: largest change of any pixel", type="category", categoryorder="array",
                     categoryarray=[short_epsilon(e) for e in epsilons])
    return fig


def transfer_heatmap(matrix: TransferMatrix, metric: str = "balanced_accuracy", title: str | None = None) -> go.Figure:
    """Rows: the model the attack was computed on; columns: the model tested; the diagonal is white-box."""
    values = matrix.table(metric)
    clean = matrix.clean_scores(metric)
    k = len(matrix.models)
    short = [f"[{i + 1}]" for i in range(k)]
    cells = [[f"{values[i][j]:.0%}" + ("<br>(itself)" if i == j else "") for j in range(k)] for i in range(k)]
    models = [text(m) for m in matrix.models]  # checkpoint names: from outside
    hover = [[f"attack computed on {models[i]}<br>tested on {models[j]}<br>{metric_name(metric)}: "
              f"{values[i][j]:.1%} (clean: {clean[j]:.1%})" for j in range(k)] for i in range(k)]
    columns = [f"{s}<br>clean {c:.0%}" for s, c in zip(short, clean, strict=True)]
    fig = go.Figure(go.Heatmap(z=values, x=columns, y=short, text=cells, texttemplate="%{text}", hovertext=hover,
                               hoverinfo="text", colorscale="RdYlBu", zmin=0, zmax=1, showscale=True,
                               colorbar=dict(tickformat=".0%", thickness=10, len=0.9)))
    for i in range(k):
        fig.add_shape(type="rect", x0=i - 0.5, x1=i + 0.5, y0=i - 0.5, y1=i + 0.5, xref="x", yref="y",
                      line=dict(color=REFERENCE_COLOR, width=3, dash="dot"))
    layout(fig, title or f"{metric_name(metric)}, {text(attack_label(matrix.attack))} carried over",
           height=max(320, 100 * k + 170))
    fig.update_xaxes(title="model tested", side="bottom")
    fig.update_yaxes(title="attack computed on", autorange="reversed")
    return fig
