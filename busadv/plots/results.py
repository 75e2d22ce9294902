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
from busadv.plots.style import FLIP_COLOR, PALETTE, REFERENCE_COLOR, layout, metric_name, rgba, short_epsilon, text
from busadv.results import RECIPE_FIELDS, GroupSummary, recipe_labels

TRAIN_EPS = RECIPE_FIELDS.index("train_epsilon")


def _close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)


def reference_line(fig: go.Figure, groups: Sequence[GroupSummary], metric: str) -> None:
    """Majority rate on accuracy charts, chance on balanced-accuracy charts: the floors a model must beat.

    The line is named in the legend, never by a label on the plot, where it would sit over bars or points.
    """
    if not groups:
        return
    if metric == "accuracy":
        rates = [g.majority_rate for g in groups if not math.isnan(g.majority_rate)]
        if not rates:
            return
        rate = sum(rates) / len(rates)
        name = f"commonest class always: {rate:.0%}"
    elif metric == "balanced_accuracy":
        rate = 1 / max(len(groups[0].first.recall) or len(BUSI.classes), 1)
        name = f"chance (one answer): {rate:.0%}"
    else:
        return
    line = dict(color=REFERENCE_COLOR, dash="dash", width=2)
    fig.add_hline(y=rate, line=line)
    fig.add_scatter(x=[None], y=[None], mode="lines", line=line, name=name, hoverinfo="skip")


def distinct_epsilons(values: Any) -> list[float]:
    """Sorted epsilons with near-equal ones merged (8/255 read back from a CSV is 0.0313725…, not 8/255).

    Why: two keys for one size would draw one condition twice under the same axis label.
    """
    out: list[float] = []
    for eps in sorted(float(v) for v in values):
        if not out or not _close(out[-1], eps):
            out.append(eps)
    return out


def _find(groups: Sequence[GroupSummary], recipe: tuple[Any, ...], attack: str, eps: float) -> GroupSummary | None:
    for g in groups:
        if g.recipe == recipe and g.attack == attack and _close(g.test_epsilon, eps):
            return g
    return None


def _dots(group: GroupSummary, metric: str, x: str, name: str, show_collapsed: bool
          ) -> tuple[list[tuple[str, float, str]], list[tuple[str, float, str]]]:
    """(healthy runs, collapsed runs) as (x, value, hover text); `name` is already escaped for Plotly."""
    healthy, collapsed = [], []
    for row in group.rows:
        value = row.metric(metric)
        if math.isnan(value):
            continue
        if row.collapsed:
            if show_collapsed:
                collapsed.append((x, value, f"{name}, seed {row.seed}: {value:.3f}<br><b>collapsed</b>: answers "
                                            f"'{text(row.dominant_class)}' for {row.dominant_share:.0%} of images"))
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
        fig.add_scatter(x=[None], y=[None], mode="markers", name="✕ a run that collapsed",
                        marker=dict(color=FLIP_COLOR, size=11, symbol="x-thin", line=dict(width=3, color=FLIP_COLOR)))


LEGEND_CHARACTERS = 30


def _epsilon_short(eps: float) -> str:
    """'0.05' where a short decimal is exact (as the study writes it), else '8/255' for a whole k/255."""
    if _close(float(f"{eps:.3g}"), eps):
        return f"{eps:.3g}"
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:.3g}"


SHORT_FIELDS = {"split_policy": "split", "class_balance": "balance", "random_start": "random start",
                "train_pgd_steps": "steps", "image_size": "px", "clean_mix": "clean mix", "weight_decay": "wd",
                "ema_decay": "EMA", "val_fraction": "val", "warmup_epochs": "warm-up", "trades_beta": "β",
                "critical_weight": "malignant weight"}
NAMED_ELSEWHERE = {"arch", "train_mode", "train_epsilon", "adv_labels", "data_fingerprint"}


def short_labels(groups: Sequence[GroupSummary]) -> dict[tuple[Any, ...], str]:
    """A legend name of at most ~30 characters per recipe, unique among them; the full recipe goes in the hover.

    'standard', 'FGSM ε=8/255', 'standard, split random' ...: a setting is named only for the recipes where it
    differs from what most recipes shown use, the model's name only when several models share the chart, and
    a number goes in front where two would still read the same.
    """
    from busadv.training import MODES
    from busadv.training.config import FALLBACK

    firsts = {g.recipe: g.first for g in groups}
    several_archs = len({r.arch for r in firsts.values()}) > 1
    usual: dict[str, Any] = {}
    for index, name in enumerate(RECIPE_FIELDS):
        values = [recipe[index] for recipe in firsts]
        if name not in NAMED_ELSEWHERE and len(set(map(str, values))) > 1:
            usual[name] = max(set(map(str, values)), key=[str(v) for v in values].count)
    labels: dict[tuple[Any, ...], str] = {}
    for recipe, row in firsts.items():
        mode = str(row.train_mode)
        adversarial = mode in MODES and MODES.get(mode).adversarial
        defaults = {**FALLBACK, **(MODES.get(mode).defaults if mode in MODES else {})}
        words = mode.upper() if adversarial and mode in ("fgsm", "pgd") else mode
        if adversarial:
            words += f" ε={_epsilon_short(row.train_epsilon)}"
            if row.adv_labels and row.adv_labels != "true":
                words += f", {row.adv_labels} labels"
        for name, common in usual.items():
            value = recipe[RECIPE_FIELDS.index(name)]
            if str(value) != common and value != defaults.get(name, defaults.get(name.removeprefix("train_"))):
                words += f", {SHORT_FIELDS.get(name, name.replace('_', ' '))} {value}"
        if several_archs:
            words = f"{row.arch}: {words}"
        labels[recipe] = words
    def cut(words: str) -> str:
        return words if len(words) <= LEGEND_CHARACTERS else words[:LEGEND_CHARACTERS - 1].rstrip() + "…"

    cuts = {recipe: cut(words) for recipe, words in labels.items()}
    repeated = {c for c in cuts.values() if list(cuts.values()).count(c) > 1}
    for index, recipe in enumerate(labels, start=1):
        shown = cut(f"{index}. {labels[recipe]}") if cuts[recipe] in repeated else cuts[recipe]
        labels[recipe] = text(shown)
    return labels


def accuracy_bars(groups: Sequence[GroupSummary], attack: str = "fgsm", metric: str = "balanced_accuracy",
                  arch: str | None = None, show_collapsed: bool = True, title: str | None = None) -> go.Figure:
    """The study's figure: each model once on the clean test set (light), then one group per test ε (dark, hatched).

    One bar trace per trained model, so the legend names each model once (shortly; the full recipe is in
    the hover). An adversarially trained model appears in the group of the epsilon it was trained at; a model
    family trained at a single epsilon appears in every group. Bars: means over runs; error bars: one sample
    standard deviation; dots: single runs.
    """
    groups = [g for g in groups if arch is None or g.arch == arch]
    test_eps = distinct_epsilons(g.test_epsilon for g in groups if g.attack == attack and g.test_epsilon > 0)
    full = recipe_labels(groups)
    short = short_labels(groups)
    recipes = list(dict.fromkeys(g.recipe for g in groups))
    families: dict[tuple[Any, ...], set[float]] = {}
    for recipe in recipes:
        family = recipe[:TRAIN_EPS] + recipe[TRAIN_EPS + 1:]
        families.setdefault(family, set()).add(float(recipe[TRAIN_EPS]))
    attack_name = text(attack_label(attack))
    x_clean = "clean<br>(no attack)"
    x_labels = [short_epsilon(e) for e in test_eps]
    fig = go.Figure()
    shown = 0
    for recipe in recipes:
        family_eps = families[recipe[:TRAIN_EPS] + recipe[TRAIN_EPS + 1:]]
        conditions = [("none", 0.0, x_clean)] + [
            (attack, e, label) for e, label in zip(test_eps, x_labels, strict=True)
            if len(family_eps) == 1 or _close(recipe[TRAIN_EPS], e)]
        if not any(_find(groups, recipe, a, e) for a, e, _ in conditions[1:]):
            continue  # never tested under this attack: a clean bar alone says nothing here
        color = PALETTE[shown % len(PALETTE)]
        shown += 1
        name = text(full[recipe])
        xs, ys, errs, hovers, colors, patterns = [], [], [], [], [], []
        healthy: list = []
        collapsed: list = []
        for condition, e, label in conditions:
            group = _find(groups, recipe, condition, e)
            if group is None:
                continue
            stat = group.stat(metric)
            if math.isnan(stat.mean):
                continue
            xs.append(label)
            ys.append(stat.mean)
            errs.append(stat.std)
            colors.append(rgba(color, 0.35) if condition == "none" else color)
            patterns.append("" if condition == "none" else "/")
            tested = "the clean test set" if condition == "none" else f"{attack_name} at ε={format_epsilon(e)}"
            hovers.append(f"{name}<br>tested on {tested}<br>{metric_name(metric)}: {stat.text()} over "
                          f"{group.n_runs} run(s)" + (f"<br><b>{group.collapsed_runs} of {group.n_runs} runs "
                                                      f"collapsed</b>" if group.collapsed_runs else ""))
            h, c = _dots(group, metric, label, name, show_collapsed)
            healthy += h
            collapsed += c
        if not xs:
            continue
        offset = str(shown)
        fig.add_bar(x=xs, y=ys, name=short[recipe], marker_color=colors, marker_line=dict(color=color, width=1.5),
                    error_y=dict(type="data", array=errs, visible=True, thickness=1.5, width=6),
                    offsetgroup=offset, legendgroup=offset, hovertext=hovers, hoverinfo="text",
                    marker_pattern_shape=patterns)
        _add_dots(fig, (healthy, collapsed), offsetgroup=offset, legendgroup=offset)
    _collapse_legend(fig, groups)
    reference_line(fig, groups, metric)
    default_title = f"{metric_name(metric)} on clean and {attack_name}-perturbed test images (mean ± std)"
    layout(fig, title or default_title, legend="right", barmode="group", scattermode="group", height=480)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title=metric_name(metric))
    fig.update_xaxes(title=f"test set: clean, then {attack_name} at each ε (light: clean, hatched: attacked)",
                     type="category", categoryorder="array", categoryarray=[x_clean, *x_labels])
    return fig


def accuracy_curve(groups: Sequence[GroupSummary], attack: str = "fgsm", metric: str = "balanced_accuracy",
                   arch: str | None = None, show_collapsed: bool = True, title: str | None = None) -> go.Figure:
    """A measure against test epsilon, one line per trained model, a band of mean ± std, dots per run."""
    groups = [g for g in groups if (arch is None or g.arch == arch)]
    epsilons = distinct_epsilons({0.0} | {float(g.test_epsilon) for g in groups if g.attack == attack})
    labels = [short_epsilon(e) for e in epsilons]
    names = recipe_labels(groups)
    short = short_labels(groups)
    attack_name = text(attack_label(attack))
    attacked = [r for r in dict.fromkeys(g.recipe for g in groups) if any(
        g.recipe == r and g.attack == attack for g in groups)]  # a clean dot alone is no curve: not in the legend
    fig = go.Figure()
    for index, recipe in enumerate(attacked):
        color = PALETTE[index % len(PALETTE)]
        name = text(names[recipe])
        group_id = str(index)
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
                                fillcolor=rgba(color, 0.18), showlegend=False, legendgroup=group_id,
                                hoverinfo="skip", name=f"{short[recipe]} (mean ± std)")
            segment = []
        fig.add_scatter(x=xs, y=mean, mode="lines+markers", name=short[recipe], legendgroup=group_id,
                        line=dict(color=color, width=2.5), marker=dict(size=8), customdata=std,
                        hovertemplate=name + "<br>ε=%{x}: %{y:.3f} ± %{customdata:.3f}<extra></extra>")
        _add_dots(fig, (healthy, collapsed), legendgroup=group_id)
    _collapse_legend(fig, groups)
    reference_line(fig, groups, metric)
    layout(fig, title or f"{metric_name(metric)} as the {attack_name} ε grows (band: mean ± std)",
           legend="right", height=460)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title=metric_name(metric))
    fig.update_xaxes(title=f"test ε ({attack_name}); equally spaced, not to scale", type="category",
                     categoryorder="array", categoryarray=labels)
    return fig


def confusion_heatmap(confusion: Sequence[Sequence[int]], classes: Sequence[str] = BUSI.classes,
                      critical: str = BUSI.critical, title: str | None = None) -> go.Figure:
    """Counts with row percentages; critical cases (malignant) called anything else are outlined in red."""
    classes = list(classes)
    shown = [text(c) for c in classes]  # class names come from checkpoints and results files
    k = len(classes)
    counts = [[int(v) for v in row] for row in confusion]
    totals = [max(sum(row), 1) for row in counts]
    cells = [[f"{counts[i][j]}<br>({counts[i][j] / totals[i]:.0%})" for j in range(k)] for i in range(k)]
    fig = go.Figure(go.Heatmap(
        z=[[counts[i][j] / totals[i] for j in range(k)] for i in range(k)], x=shown, y=shown,
        text=cells, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1, showscale=False,
        hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>"))
    c = classes.index(critical)
    for j in range(k):
        if j != c:
            fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=c - 0.5, y1=c + 0.5,
                          line=dict(color=FLIP_COLOR, width=4), xref="x", yref="y")
    missed, total = critical_missed(counts, classes, critical)
    layout(fig, title or f"{text(critical.capitalize())} called something else: {missed} of {total} (red boxes)",
           height=380)
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
