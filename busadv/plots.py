"""Plotly figures from busadv's plain data (probabilities, result summaries, confusion matrices, histories).

Pure functions, no Streamlit: the pages, notebooks and tests draw the same figures. Epsilons are
always labelled both ways (0.031 = 8/255) with busadv.attacks.format_epsilon, and accuracies are
fractions on a fixed 0..1 axis so that charts side by side can be compared by eye.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from busadv.attacks import Attack, format_epsilon
from busadv.data import CLASSES, MALIGNANT

CLEAN_COLOR = "#4C78A8"
PERTURBED_COLOR = "#E45756"
FLIP_COLOR = "#D62728"
# (clean, attacked) colour pairs per training mode: light = clean test set, dark = perturbed test set.
MODE_COLORS: dict[str, tuple[str, str]] = {
    "standard": ("#9ECAE9", "#1F5A96"),
    "fgsm": ("#FFBF79", "#C4560C"),
    "pgd": ("#8CD17D", "#2E7D32"),
}
MODE_NAMES: dict[str, str] = {"standard": "Standard", "fgsm": "FGSM-trained", "pgd": "PGD-trained"}
METRIC_NAMES: dict[str, str] = {
    "accuracy": "Accuracy",
    "malignant_missed_rate": "Malignant called benign/normal (rate)",
    "recall_benign": "Recall, benign",
    "recall_malignant": "Recall, malignant",
    "recall_normal": "Recall, normal",
}
_FONT = dict(size=14)


def _close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)


def short_epsilon(eps: float) -> str:
    """Axis-sized form of format_epsilon: 'clean' for 0, else '0.031<br>(8/255)'."""
    if eps == 0:
        return "clean"
    return format_epsilon(eps).replace(" (", "<br>(")


def attack_name(attack: str) -> str:
    """'fgsm-pred' -> 'FGSM (predicted label)'; unknown names pass through."""
    try:
        return Attack.coerce(attack).label
    except ValueError:
        return str(attack)


def model_label(arch: str, mode: str, train_epsilon: float) -> str:
    """'simplecnn, FGSM-trained at eps 0.05 (~12.8/255)': how a trained model is named in legends."""
    name = MODE_NAMES.get(mode, mode)
    if mode == "standard":
        return f"{arch}, {name.lower()} training"
    return f"{arch}, {name} at ε={format_epsilon(train_epsilon)}"


def _layout(fig: go.Figure, title: str, subtitle: str | None = None, legend: str = "top",
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
    fig.update_layout(title=heading, font=_FONT, margin=dict(l=10, r=10, t=top, b=10), legend=legend_spec,
                      **kwargs)
    fig.update_xaxes(tickfont=dict(size=13), title_font=dict(size=14))
    fig.update_yaxes(tickfont=dict(size=13), title_font=dict(size=14))
    return fig


# ----------------------------------------------------------------------------------- explorer

def probability_bars(classes: Sequence[str], clean: Sequence[float], perturbed: Sequence[float],
                     perturbed_name: str = "Perturbed", title: str | None = None) -> go.Figure:
    """Clean and perturbed probability of each class as a pair of horizontal bars; each predicted class outlined.

    Horizontal, one class per line, so that it reads like a list of diagnoses and fits a narrow
    tile (300 px) without the percentages of neighbouring bars running into each other.
    """
    classes = list(classes)
    fig = go.Figure()
    for name, probs, color in (("Clean", clean, CLEAN_COLOR), (perturbed_name, perturbed, PERTURBED_COLOR)):
        probs = [float(p) for p in probs]
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
    _layout(fig, title or "Class probabilities", subtitle="black outline: the predicted class", legend="bottom",
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
    _layout(fig, title or "Probabilities as ε grows", height=320)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title="probability")
    fig.update_xaxes(title="ε in k/255 (pixel scale 0..255)")
    return fig


# ----------------------------------------------------------------------------------- results

def _find(summary: Sequence[dict[str, Any]], arch: str, mode: str, train_eps: float, attack: str,
          test_eps: float) -> dict[str, Any] | None:
    for s in summary:
        if (s["arch"] == arch and s["train_mode"] == mode and _close(s["train_epsilon"], train_eps)
                and s["attack"] == attack and _close(s["test_epsilon"], test_eps)):
            return s
    return None


def _per_seed(entry: dict[str, Any], metric: str) -> list[float]:
    """The single runs behind a mean: busadv.experiments.summarize gives `<metric>_values` for every metric."""
    return [float(v) for v in entry.get(f"{metric}_values", [])]


def _seed_hover(entry: dict[str, Any], metric: str) -> str:
    return "<br>".join(f"seed {s}: {v:.3f}" for s, v in zip(entry.get("seeds", []), _per_seed(entry, metric)))


def accuracy_bars(summary: Sequence[dict[str, Any]], attack: str = "fgsm", arch: str | None = None,
                  metric: str = "accuracy", title: str | None = None) -> go.Figure:
    """The study's figure: one group per test epsilon; standard vs adversarially trained, clean vs attacked.

    In each group an adversarially trained model appears when it was trained at that group's epsilon;
    a training mode with a single training epsilon is shown in every group (its legend names the
    epsilon). Bars are means over seeds, error bars one sample standard deviation, dots single seeds.
    """
    rows = [s for s in summary if arch is None or s["arch"] == arch]
    archs = sorted({s["arch"] for s in rows})
    test_eps = sorted({float(s["test_epsilon"]) for s in rows if s["attack"] == attack and s["test_epsilon"] > 0})
    modes = [m for m in ("standard", "fgsm", "pgd") if any(s["train_mode"] == m for s in rows)]
    modes += sorted({s["train_mode"] for s in rows} - set(modes))
    x_labels = [short_epsilon(e) for e in test_eps]
    fig = go.Figure()
    for a in archs:
        for mode in modes:
            train_eps_set = sorted({float(s["train_epsilon"]) for s in rows if s["arch"] == a and s["train_mode"] == mode})
            for condition in ("clean", attack):
                xs, ys, errs, hovers, dot_x, dot_y, dot_text = [], [], [], [], [], [], []
                for e, label in zip(test_eps, x_labels):
                    if mode == "standard":
                        train_eps = 0.0
                    elif any(_close(t, e) for t in train_eps_set):
                        train_eps = e
                    elif len(train_eps_set) == 1:
                        train_eps = train_eps_set[0]
                    else:
                        continue
                    entry = _find(rows, a, mode, train_eps, "none" if condition == "clean" else attack,
                                  0.0 if condition == "clean" else e)
                    if entry is None or f"{metric}_mean" not in entry:
                        continue
                    xs.append(label)
                    ys.append(entry[f"{metric}_mean"])
                    errs.append(entry[f"{metric}_std"])
                    tested = "clean test set" if condition == "clean" else f"{attack_name(attack)} at ε={format_epsilon(e)}"
                    hovers.append(f"{model_label(a, mode, train_eps)}<br>tested on {tested}<br>"
                                  f"{METRIC_NAMES.get(metric, metric)}: {entry[f'{metric}_mean']:.3f} ± "
                                  f"{entry[f'{metric}_std']:.3f} over {entry['n_runs']} run(s)<br>"
                                  + _seed_hover(entry, metric))
                    for s, v in zip(entry.get("seeds", []), _per_seed(entry, metric)):
                        dot_x.append(label)
                        dot_y.append(v)
                        dot_text.append(f"{model_label(a, mode, train_eps)}, seed {s}: {v:.3f}")
                if not xs:
                    continue
                single_eps = mode != "standard" and len(train_eps_set) == 1
                who = MODE_NAMES.get(mode, mode) + (f" (ε={format_epsilon(train_eps_set[0])})" if single_eps else "")
                if mode != "standard" and not single_eps:
                    who += " (at the group's ε)"
                prefix = f"{a}: " if len(archs) > 1 else ""
                name = f"{prefix}{who}, {'clean' if condition == 'clean' else attack_name(attack)} test"
                light, dark = MODE_COLORS.get(mode, ("#BBBBBB", "#555555"))
                group = f"{a}|{mode}|{condition}"
                fig.add_bar(x=xs, y=ys, name=name, marker_color=light if condition == "clean" else dark,
                            error_y=dict(type="data", array=errs, visible=True, thickness=1.5, width=6),
                            offsetgroup=group, legendgroup=group, hovertext=hovers, hoverinfo="text",
                            marker_pattern_shape="" if condition == "clean" else "/")
                if dot_x:
                    fig.add_scatter(x=dot_x, y=dot_y, mode="markers", offsetgroup=group, legendgroup=group,
                                    showlegend=False, name=f"{name} (single seeds)",
                                    marker=dict(color="black", size=5, opacity=0.6),
                                    hovertext=dot_text, hoverinfo="text")
    metric_name = METRIC_NAMES.get(metric, metric)
    default_title = f"{metric_name} on the clean and the {attack_name(attack)}-perturbed test set (mean ± std over seeds)"
    _layout(fig, title or default_title, legend="right", barmode="group", scattermode="group", height=460)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title=metric_name)
    fig.update_xaxes(title="test ε (one group per ε)", type="category")
    return fig


def accuracy_curve(summary: Sequence[dict[str, Any]], attack: str = "fgsm", metric: str = "accuracy",
                   arch: str | None = None, title: str | None = None) -> go.Figure:
    """Metric against test epsilon, one line per trained model, a band of mean ± std, dots per seed."""
    rows = [s for s in summary if (arch is None or s["arch"] == arch) and f"{metric}_mean" in s]
    epsilons = sorted({0.0} | {float(s["test_epsilon"]) for s in rows if s["attack"] == attack})
    labels = [short_epsilon(e) for e in epsilons]
    models = sorted({(s["arch"], s["train_mode"], float(s["train_epsilon"])) for s in rows},
                    key=lambda m: (m[0], ("standard", "fgsm", "pgd").index(m[1]) if m[1] in MODE_COLORS else 9, m[2]))
    palette = ["#1F5A96", "#C4560C", "#2E7D32", "#7B1FA2", "#B8860B", "#00838F", "#AD1457", "#5D4037"]
    fig = go.Figure()
    for i, (a, mode, train_eps) in enumerate(models):
        color = palette[i % len(palette)]
        name = model_label(a, mode, train_eps)
        xs, mean, std, dots = [], [], [], []
        for e, label in zip(epsilons, labels):
            entry = _find(rows, a, mode, train_eps, "none" if e == 0 else attack, e)
            xs.append(label)  # an untested epsilon stays a gap in the line, never a straight bridge
            mean.append(None if entry is None else entry[f"{metric}_mean"])
            std.append(None if entry is None else entry[f"{metric}_std"])
            if entry is not None:
                dots += [(label, v, s) for s, v in zip(entry.get("seeds", []), _per_seed(entry, metric))]
        if all(m is None for m in mean):
            continue
        # The band is one closed polygon per run of tested epsilons, so it never bridges a gap either.
        segment: list[int] = []
        for i in [*range(len(xs)), None]:
            if i is not None and mean[i] is not None:
                segment.append(i)
                continue
            if len(segment) > 1:
                upper = [mean[j] + std[j] for j in segment]
                lower = [max(0.0, mean[j] - std[j]) for j in segment]
                fig.add_scatter(x=[xs[j] for j in segment] + [xs[j] for j in reversed(segment)],
                                y=upper + lower[::-1], mode="lines", line=dict(width=0), fill="toself",
                                fillcolor=_rgba(color, 0.18), showlegend=False, legendgroup=name,
                                hoverinfo="skip", name=f"{name} (mean ± std)")
            segment = []
        fig.add_scatter(x=xs, y=mean, mode="lines+markers", name=name, legendgroup=name,
                        line=dict(color=color, width=2.5), marker=dict(size=8),
                        customdata=std, hovertemplate=name + "<br>ε=%{x}: %{y:.3f} ± %{customdata:.3f}<extra></extra>")
        if dots:
            fig.add_scatter(x=[d[0] for d in dots], y=[d[1] for d in dots], mode="markers", showlegend=False,
                            legendgroup=name, name=f"{name} (single seeds)",
                            marker=dict(color=color, size=5, opacity=0.55, symbol="circle-open"),
                            customdata=[d[2] for d in dots],
                            hovertemplate=name + "<br>seed %{customdata}: %{y:.3f}<extra></extra>")
    metric_name = METRIC_NAMES.get(metric, metric)
    _layout(fig, title or f"{metric_name} as the {attack_name(attack)} ε grows (band: mean ± std over seeds)",
            legend="right", height=440)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title=metric_name)
    fig.update_xaxes(title=f"test ε ({attack_name(attack)}); equally spaced, not to scale", type="category",
                     categoryorder="array", categoryarray=labels)
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def confusion_heatmap(confusion: Sequence[Sequence[int]], classes: Sequence[str] = CLASSES,
                      title: str | None = None) -> go.Figure:
    """Counts with row percentages; malignant cases called benign or normal are outlined in red."""
    classes = list(classes)
    k = len(classes)
    counts = [[int(v) for v in row] for row in confusion]
    totals = [max(sum(row), 1) for row in counts]
    text = [[f"{counts[i][j]}<br>({counts[i][j] / totals[i]:.0%})" for j in range(k)] for i in range(k)]
    fig = go.Figure(go.Heatmap(
        z=[[counts[i][j] / totals[i] for j in range(k)] for i in range(k)], x=classes, y=classes,
        text=text, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1, showscale=False,
        hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>"))
    malignant = classes.index("malignant") if "malignant" in classes else MALIGNANT
    missed = sum(counts[malignant][j] for j in range(k) if j != malignant)
    for j in range(k):
        if j == malignant:
            continue
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=malignant - 0.5, y1=malignant + 0.5,
                      line=dict(color=FLIP_COLOR, width=4), xref="x", yref="y")
    default = f"Malignant called benign or normal: {missed} of {sum(counts[malignant])} (red boxes)"
    _layout(fig, title or default, height=380)
    fig.update_xaxes(title="predicted class", side="bottom")
    fig.update_yaxes(title="true class", autorange="reversed")
    return fig


def malignant_missed(confusion: Sequence[Sequence[int]], classes: Sequence[str] = CLASSES) -> tuple[int, int]:
    """(malignant images called benign or normal, malignant images) of a confusion matrix."""
    m = list(classes).index("malignant")
    row = [int(v) for v in confusion[m]]
    return sum(row) - row[m], sum(row)


def sum_confusions(matrices: Sequence[Sequence[Sequence[int]]]) -> list[list[int]]:
    """Pooled counts over seeds (each seed's test set is a different split, so counts add)."""
    if not matrices:
        return []
    k = len(matrices[0])
    return [[sum(int(m[i][j]) for m in matrices) for j in range(k)] for i in range(k)]


def history_from_progress(progress_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Epoch ends of a running job's progress rows (busadv.jobs.JobStore.history), as training_curves reads them.

    A row with accuracy set closes an epoch: its loss is the epoch's mean training loss and its accuracy
    the clean test accuracy. An experiment trains one run after another, so only the rows since the
    epoch count last went back are kept: the curves of the run in progress.
    """
    out: list[dict[str, Any]] = []
    last_epoch = 0
    for row in progress_rows:
        epoch = row.get("epoch")
        if epoch is None:
            continue
        if int(epoch) < last_epoch:
            out = []  # the next run of an experiment began
        last_epoch = int(epoch)
        if row.get("accuracy") is None or int(epoch) < 1:
            continue
        out = [h for h in out if h["epoch"] != int(epoch)]
        out.append({"epoch": int(epoch), "train_loss": row.get("loss"), "test_accuracy": row.get("accuracy")})
    return out


def training_curves(history: Sequence[dict[str, Any]], title: str | None = None,
                    epochs: int | None = None) -> go.Figure:
    """Loss (right axis) and accuracies (left axis) per epoch from a checkpoint's or job's history.

    `epochs`: the run's planned number of epochs, so a running job's axis shows how far it has come.

    Adversarial runs also show FGSM and PGD accuracy at the training epsilon: FGSM accuracy rising
    while PGD accuracy falls is catastrophic overfitting.
    """
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    epochs_seen = [h.get("epoch") for h in history]
    series = (("train_accuracy", "train accuracy", "#9ECAE9", "dot"),
              ("test_accuracy", "test accuracy (clean)", "#1F5A96", "solid"),
              ("test_fgsm_accuracy", "test accuracy under FGSM", "#C4560C", "solid"),
              ("test_pgd_accuracy", "test accuracy under PGD", "#2E7D32", "solid"))
    for key, name, color, dash in series:
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            fig.add_scatter(x=epochs_seen, y=values, name=name, mode="lines+markers",
                            line=dict(color=color, dash=dash), secondary_y=False)
    loss_key = "train_loss" if any("train_loss" in h for h in history) else "loss"
    losses = [h.get(loss_key) for h in history]
    if any(v is not None for v in losses):
        fig.add_scatter(x=epochs_seen, y=losses, name="training loss", mode="lines+markers",
                        line=dict(color="#777777", dash="dash"), secondary_y=True)
    _layout(fig, title or "Training curves", legend="right", height=360)
    fig.update_layout(legend_x=1.1)  # beyond the loss axis on the right
    fig.update_yaxes(title_text="accuracy", range=[0, 1.05], tickformat=".0%", secondary_y=False)
    fig.update_yaxes(title_text="loss", secondary_y=True, rangemode="tozero", showgrid=False, tickmode="auto",
                     nticks=6)
    last = max([int(epochs or 0)] + [int(e) for e in epochs_seen if e is not None])
    fig.update_xaxes(title_text="epoch", dtick=1 if last <= 20 else None,
                     range=[0.5, last + 0.5] if epochs else None)
    return fig
