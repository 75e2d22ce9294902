"""The researcher's charts: the study's bars with error bars, measure against epsilon, confusion matrices.

Honest by construction: the default measure is balanced accuracy (chance 1/3 whatever the imbalance);
an accuracy chart always draws the majority-class rate, the score of a model that answers one class for
everything; a balanced-accuracy chart draws chance. Single runs are dots, and a run that collapsed (one
class for >= 90% of images) is a red cross, so a group mean never hides it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from busadv.attacks import attack_label, format_epsilon
from busadv.data.spec import BUSI
from busadv.plots.style import FLIP_COLOR, PALETTE, REFERENCE_COLOR, layout, metric_name, rgba, short_epsilon
from busadv.results import RECIPE_FIELDS, GroupSummary, recipe_labels

TRAIN_EPS = RECIPE_FIELDS.index("train_epsilon")


def _close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)


def reference_line(fig: go.Figure, groups: Sequence[GroupSummary], metric: str) -> None:
    """Majority rate on accuracy charts, chance on balanced-accuracy charts: the floors a model must beat."""
    if not groups:
        return
    if metric == "accuracy":
        rates = [g.majority_rate for g in groups if not math.isnan(g.majority_rate)]
        if not rates:
            return
        rate = sum(rates) / len(rates)
        text = f"always answering the most common class: {rate:.0%}"
    elif metric == "balanced_accuracy":
        rate = 1 / max(len(groups[0].first.recall) or len(BUSI.classes), 1)
        text = f"chance (any constant answer): {rate:.0%}"
    else:
        return
    fig.add_hline(y=rate, line=dict(color=REFERENCE_COLOR, dash="dash", width=2),
                  annotation=dict(text=text, font=dict(size=12, color=REFERENCE_COLOR),
                                  bgcolor="rgba(255,255,255,0.8)"),
                  annotation_position="top right")


def _find(groups: Sequence[GroupSummary], recipe: tuple[Any, ...], attack: str, eps: float) -> GroupSummary | None:
    for g in groups:
        if g.recipe == recipe and g.attack == attack and _close(g.test_epsilon, eps):
            return g
    return None


def _dots(group: GroupSummary, metric: str, x: str, name: str, show_collapsed: bool
          ) -> tuple[list[tuple[str, float, str]], list[tuple[str, float, str]]]:
    """(healthy runs, collapsed runs) as (x, value, hover text)."""
    healthy, collapsed = [], []
    for row in group.rows:
        value = row.metric(metric)
        if math.isnan(value):
            continue
        if row.collapsed:
            if show_collapsed:
                collapsed.append((x, value, f"{name}, seed {row.seed}: {value:.3f}<br><b>collapsed</b>: answers "
                                            f"'{row.dominant_class}' for {row.dominant_share:.0%} of images"))
        else:
            healthy.append((x, value, f"{name}, seed {row.seed}: {value:.3f}"))
    return healthy, collapsed


def _add_dots(fig: go.Figure, dots: tuple[list, list], **placement: Any) -> None:
    healthy, collapsed = dots
    for points, marker, label in ((healthy, dict(color="black", size=6, opacity=0.6), "single runs"),
                                  (collapsed, dict(color=FLIP_COLOR, size=11, symbol="x-thin",
                                                   line=dict(width=3, color=FLIP_COLOR)), "collapsed runs")):
        if points:
            fig.add_scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="markers", marker=marker,
                            hovertext=[p[2] for p in points], hoverinfo="text", showlegend=False,
                            name=label, **placement)


def _collapse_legend(fig: go.Figure, groups: Sequence[GroupSummary]) -> None:
    if any(g.collapsed_runs for g in groups):
        fig.add_scatter(x=[None], y=[None], mode="markers", name="✕ a run that collapsed (one class ≥ 90%)",
                        marker=dict(color=FLIP_COLOR, size=11, symbol="x-thin", line=dict(width=3, color=FLIP_COLOR)))


def accuracy_bars(groups: Sequence[GroupSummary], attack: str = "fgsm", metric: str = "balanced_accuracy",
                  arch: str | None = None, show_collapsed: bool = True, title: str | None = None) -> go.Figure:
    """The study's figure: one group per test epsilon; each model clean (light) and attacked (dark, hatched).

    An adversarially trained model appears in the group of the epsilon it was trained at; a model family
    trained at a single epsilon appears in every group. Bars: means over runs; error bars: one sample
    standard deviation; dots: single runs.
    """
    groups = [g for g in groups if arch is None or g.arch == arch]
    test_eps = sorted({float(g.test_epsilon) for g in groups if g.attack == attack and g.test_epsilon > 0})
    labels = recipe_labels(groups)
    recipes = list(dict.fromkeys(g.recipe for g in groups))
    families: dict[tuple[Any, ...], set[float]] = {}
    for recipe in recipes:
        family = recipe[:TRAIN_EPS] + recipe[TRAIN_EPS + 1:]
        families.setdefault(family, set()).add(float(recipe[TRAIN_EPS]))
    x_labels = [short_epsilon(e) for e in test_eps]
    fig = go.Figure()
    for index, recipe in enumerate(recipes):
        family_eps = families[recipe[:TRAIN_EPS] + recipe[TRAIN_EPS + 1:]]
        color = PALETTE[index % len(PALETTE)]
        for condition in ("none", attack):
            xs, ys, errs, hovers = [], [], [], []
            healthy: list = []
            collapsed: list = []
            for e, label in zip(test_eps, x_labels, strict=True):
                if len(family_eps) > 1 and not _close(recipe[TRAIN_EPS], e):
                    continue
                group = _find(groups, recipe, condition, 0.0 if condition == "none" else e)
                if group is None:
                    continue
                stat = group.stat(metric)
                if math.isnan(stat.mean):
                    continue
                xs.append(label)
                ys.append(stat.mean)
                errs.append(stat.std)
                tested = ("the clean test set" if condition == "none"
                          else f"{attack_label(attack)} at ε={format_epsilon(e)}")
                hovers.append(f"{labels[recipe]}<br>tested on {tested}<br>{metric_name(metric)}: {stat.text()} over "
                              f"{group.n_runs} run(s)" + (f"<br><b>{group.collapsed_runs} of {group.n_runs} runs "
                                                          f"collapsed</b>" if group.collapsed_runs else ""))
                h, c = _dots(group, metric, label, labels[recipe], show_collapsed)
                healthy += h
                collapsed += c
            if not xs:
                continue
            name = f"{labels[recipe]}, {'clean' if condition == 'none' else attack_label(attack)} test"
            offset = f"{index}|{condition}"
            fig.add_bar(x=xs, y=ys, name=name, marker_color=rgba(color, 0.35) if condition == "none" else color,
                        marker_line=dict(color=color, width=1.5),
                        error_y=dict(type="data", array=errs, visible=True, thickness=1.5, width=6),
                        offsetgroup=offset, legendgroup=offset, hovertext=hovers, hoverinfo="text",
                        marker_pattern_shape="" if condition == "none" else "/")
            _add_dots(fig, (healthy, collapsed), offsetgroup=offset, legendgroup=offset)
    _collapse_legend(fig, groups)
    reference_line(fig, groups, metric)
    default_title = f"{metric_name(metric)} on clean and {attack_label(attack)}-perturbed test images (mean ± std)"
    layout(fig, title or default_title, legend="right", barmode="group", scattermode="group", height=480)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title=metric_name(metric))
    fig.update_xaxes(title="test ε (one group per ε)", type="category")
    return fig


def accuracy_curve(groups: Sequence[GroupSummary], attack: str = "fgsm", metric: str = "balanced_accuracy",
                   arch: str | None = None, show_collapsed: bool = True, title: str | None = None) -> go.Figure:
    """A measure against test epsilon, one line per trained model, a band of mean ± std, dots per run."""
    groups = [g for g in groups if (arch is None or g.arch == arch)]
    epsilons = sorted({0.0} | {float(g.test_epsilon) for g in groups if g.attack == attack})
    labels = [short_epsilon(e) for e in epsilons]
    names = recipe_labels(groups)
    attacked = [r for r in dict.fromkeys(g.recipe for g in groups) if any(
        g.recipe == r and g.attack == attack for g in groups)]  # a clean dot alone is no curve: not in the legend
    fig = go.Figure()
    for index, recipe in enumerate(attacked):
        color = PALETTE[index % len(PALETTE)]
        name = names[recipe]
        xs: list[str] = []
        mean: list[float | None] = []
        std: list[float | None] = []
        healthy: list = []
        collapsed: list = []
        for e, label in zip(epsilons, labels, strict=True):
            group = _find(groups, recipe, "none" if e == 0 else attack, e)
            stat = group.stat(metric) if group is not None else None
            xs.append(label)  # an untested epsilon stays a gap in the line, never a straight bridge
            ok = stat is not None and not math.isnan(stat.mean)
            mean.append(stat.mean if ok and stat else None)
            std.append(stat.std if ok and stat else None)
            if group is not None:
                h, c = _dots(group, metric, label, name, show_collapsed)
                healthy += h
                collapsed += c
        if all(m is None for m in mean):
            continue
        segment: list[int] = []
        for i in [*range(len(xs)), None]:  # one band polygon per run of tested epsilons
            if i is not None and mean[i] is not None:
                segment.append(i)
                continue
            if len(segment) > 1:
                upper = [float(mean[j]) + float(std[j] or 0) for j in segment]  # type: ignore[arg-type]
                lower = [max(0.0, float(mean[j]) - float(std[j] or 0)) for j in segment]  # type: ignore[arg-type]
                fig.add_scatter(x=[xs[j] for j in segment] + [xs[j] for j in reversed(segment)],
                                y=upper + lower[::-1], mode="lines", line=dict(width=0), fill="toself",
                                fillcolor=rgba(color, 0.18), showlegend=False, legendgroup=name,
                                hoverinfo="skip", name=f"{name} (mean ± std)")
            segment = []
        fig.add_scatter(x=xs, y=mean, mode="lines+markers", name=name, legendgroup=name,
                        line=dict(color=color, width=2.5), marker=dict(size=8), customdata=std,
                        hovertemplate=name + "<br>ε=%{x}: %{y:.3f} ± %{customdata:.3f}<extra></extra>")
        _add_dots(fig, (healthy, collapsed), legendgroup=name)
    _collapse_legend(fig, groups)
    reference_line(fig, groups, metric)
    layout(fig, title or f"{metric_name(metric)} as the {attack_label(attack)} ε grows (band: mean ± std)",
           legend="right", height=460)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title=metric_name(metric))
    fig.update_xaxes(title=f"test ε ({attack_label(attack)}); equally spaced, not to scale", type="category",
                     categoryorder="array", categoryarray=labels)
    return fig


def confusion_heatmap(confusion: Sequence[Sequence[int]], classes: Sequence[str] = BUSI.classes,
                      critical: str = BUSI.critical, title: str | None = None) -> go.Figure:
    """Counts with row percentages; critical cases (malignant) called anything else are outlined in red."""
    classes = list(classes)
    k = len(classes)
    counts = [[int(v) for v in row] for row in confusion]
    totals = [max(sum(row), 1) for row in counts]
    text = [[f"{counts[i][j]}<br>({counts[i][j] / totals[i]:.0%})" for j in range(k)] for i in range(k)]
    fig = go.Figure(go.Heatmap(
        z=[[counts[i][j] / totals[i] for j in range(k)] for i in range(k)], x=classes, y=classes,
        text=text, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1, showscale=False,
        hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>"))
    c = classes.index(critical)
    for j in range(k):
        if j != c:
            fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=c - 0.5, y1=c + 0.5,
                          line=dict(color=FLIP_COLOR, width=4), xref="x", yref="y")
    missed, total = critical_missed(counts, classes, critical)
    layout(fig, title or f"{critical.capitalize()} called something else: {missed} of {total} (red boxes)", height=380)
    fig.update_xaxes(title="predicted class", side="bottom")
    fig.update_yaxes(title="true class", autorange="reversed")
    return fig


def critical_missed(confusion: Sequence[Sequence[int]], classes: Sequence[str] = BUSI.classes,
                    critical: str = BUSI.critical) -> tuple[int, int]:
    """(critical images called anything else, critical images) of a confusion matrix."""
    c = list(classes).index(critical)
    row = [int(v) for v in confusion[c]]
    return sum(row) - row[c], sum(row)


def sum_confusions(matrices: Sequence[Sequence[Sequence[int]]]) -> list[list[int]]:
    """Pooled counts over runs (each run's test set is a different split, so counts add)."""
    if not matrices:
        return []
    k = len(matrices[0])
    return [[sum(int(m[i][j]) for m in matrices) for j in range(k)] for i in range(k)]
