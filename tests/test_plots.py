"""busadv.plots: the figures hold the numbers they claim to show (error bars, bands, floors, collapsed runs)."""

from __future__ import annotations

import math

import pytest

from busadv import plots
from busadv.attacks import format_epsilon
from busadv.results import ResultRow, recipe_labels, summarize

CLASSES = ("benign", "malignant", "normal")


def _row(arch: str, mode: str, train_eps: float, attack: str, test_eps: float, seed: int, score: float,
         confusion: list[list[int]] | None = None, collapsed: bool = False) -> ResultRow:
    return ResultRow(run=f"{arch}-{mode}-{train_eps}-s{seed}", seed=seed, arch=arch, train_mode=mode,
                     train_epsilon=train_eps, adv_labels="true", attack=attack, test_epsilon=test_eps, n=20,
                     accuracy=score, balanced_accuracy=score - 0.05, malignant_sensitivity=1 - score,
                     majority_rate=0.45, dominant_class="benign", dominant_share=0.95 if collapsed else 0.4,
                     collapsed=collapsed, recall=dict.fromkeys(CLASSES, score),
                     confusion=confusion or [[5, 1, 0], [2, 6, 1], [0, 1, 4]])


def study_rows() -> list[ResultRow]:
    """Three seeds of: standard, FGSM-trained at 0.05 and at 0.2; clean and FGSM at 0.05 and 0.2."""
    rows = []
    for seed, jitter in zip((0, 1, 2), (-0.02, 0.0, 0.03), strict=True):
        rows += [_row("simplecnn", "standard", 0.0, "none", 0.0, seed, 0.80 + jitter),
                 _row("simplecnn", "standard", 0.0, "fgsm", 0.05, seed, 0.30 + jitter),
                 _row("simplecnn", "standard", 0.0, "fgsm", 0.2, seed, 0.10 + jitter)]
        for train_eps, clean, attacked in ((0.05, 0.75, 0.60), (0.2, 0.70, 0.50)):
            rows += [_row("simplecnn", "fgsm", train_eps, "none", 0.0, seed, clean + jitter),
                     _row("simplecnn", "fgsm", train_eps, "fgsm", 0.05, seed, attacked + jitter),
                     _row("simplecnn", "fgsm", train_eps, "fgsm", 0.2, seed, attacked - 0.1 + jitter)]
    return rows


def _bars(fig) -> list:
    return [t for t in fig.data if t.type == "bar"]


def _dots(fig) -> list:
    return [t for t in fig.data if t.type == "scatter" and t.mode == "markers" and t.x and t.x[0] is not None]


def _entry(summary, mode, train_eps, attack, test_eps):
    return next(g for g in summary if g.train_mode == mode and math.isclose(g.train_epsilon, train_eps)
                and g.attack == attack and math.isclose(g.test_epsilon, test_eps))


def _bar(fig, starts: str, condition: str):
    return next(b for b in _bars(fig) if b.name.startswith(starts) and b.name.endswith(f"{condition} test"))


def test_accuracy_bars_error_bars_are_the_summary_std_of_balanced_accuracy_by_default():
    summary = summarize(study_rows())
    fig = plots.accuracy_bars(summary, attack="fgsm")
    bars = _bars(fig)
    # standard clean and FGSM in both groups; each FGSM-trained model clean and FGSM in the group of its epsilon
    assert len(bars) == 6
    groups = (plots.short_epsilon(0.05), plots.short_epsilon(0.2))
    assert [b.x for b in bars if "standard" in b.name] == [groups] * 2
    assert "Balanced accuracy" in fig.layout.yaxis.title.text
    std_fgsm = _bar(fig, "simplecnn, standard", "FGSM")
    expected = [_entry(summary, "standard", 0.0, "fgsm", e).stat("balanced_accuracy") for e in (0.05, 0.2)]
    assert list(std_fgsm.y) == pytest.approx([e.mean for e in expected])
    assert list(std_fgsm.error_y.array) == pytest.approx([e.std for e in expected])
    assert std_fgsm.error_y.visible is True
    for eps, group in zip((0.05, 0.2), groups, strict=True):  # the adversarial model of a group: trained at its ε
        adv_fgsm = _bar(fig, f"simplecnn, FGSM-trained at ε={format_epsilon(eps)}", "FGSM")
        adv_clean = _bar(fig, f"simplecnn, FGSM-trained at ε={format_epsilon(eps)}", "clean")
        matched = _entry(summary, "fgsm", eps, "fgsm", eps).stat("balanced_accuracy")
        assert list(adv_fgsm.x) == list(adv_clean.x) == [group]
        assert list(adv_fgsm.y) == pytest.approx([matched.mean])
        assert list(adv_fgsm.error_y.array) == pytest.approx([matched.std])
        assert list(adv_clean.y) == pytest.approx([_entry(summary, "fgsm", eps, "none", 0.0)
                                                   .stat("balanced_accuracy").mean])


def test_accuracy_bars_show_every_run_on_hover():
    summary = summarize(study_rows())
    fig = plots.accuracy_bars(summary, attack="fgsm")
    dots = _dots(fig)
    assert sum(len(d.y) for d in dots) == sum(3 * len(b.x) for b in _bars(fig))  # 3 seeds under every bar
    assert all("seed" in text for d in dots for text in d.hovertext)
    assert all(d.offsetgroup for d in dots)  # aligned with their bar
    assert "over 3 run(s)" in _bars(fig)[1].hovertext[0]
    assert fig.layout.barmode == "group"


def test_accuracy_bars_single_adversarial_epsilon_is_used_in_every_group():
    rows = [r for r in study_rows() if not (r.train_mode == "fgsm" and r.train_epsilon == 0.2)]
    fig = plots.accuracy_bars(summarize(rows), attack="fgsm")
    adv = [b for b in _bars(fig) if "FGSM-trained" in b.name]
    assert all(len(b.x) == 2 for b in adv)
    assert all(format_epsilon(0.05) in b.name for b in adv)


def test_accuracy_bars_other_metric_and_arch_filter():
    rows = study_rows() + [_row("resnet50", r.train_mode, r.train_epsilon, r.attack, r.test_epsilon, r.seed,
                                r.accuracy) for r in study_rows()]
    summary = summarize(rows)
    fig = plots.accuracy_bars(summary, attack="fgsm", arch="resnet50", metric="malignant_sensitivity")
    assert len(_bars(fig)) == 6 and all(b.name.startswith("resnet50") for b in _bars(fig))
    assert "Malignant" in fig.layout.yaxis.title.text
    both = plots.accuracy_bars(summary, attack="fgsm")
    assert len(_bars(both)) == 12 and {b.name.split(",")[0] for b in _bars(both)} == {"simplecnn", "resnet50"}


def test_reference_line_is_the_majority_rate_for_accuracy_and_chance_for_balanced_accuracy():
    summary = summarize(study_rows())
    accuracy = plots.accuracy_bars(summary, attack="fgsm", metric="accuracy")
    (line,) = accuracy.layout.shapes
    assert line.y0 == pytest.approx(0.45) and "most common class: 45%" in accuracy.layout.annotations[0].text
    balanced = plots.accuracy_curve(summary, attack="fgsm")
    assert balanced.layout.shapes[0].y0 == pytest.approx(1 / 3) and "chance" in balanced.layout.annotations[0].text
    assert not plots.accuracy_bars(summary, attack="fgsm", metric="malignant_sensitivity").layout.shapes


def test_collapsed_runs_are_red_crosses_and_can_be_hidden_or_left_out():
    rows = study_rows()
    rows[0] = _row("simplecnn", "standard", 0.0, "none", 0.0, 0, 0.45, collapsed=True)  # seed 0 collapsed on clean
    fig = plots.accuracy_bars(summarize(rows), attack="fgsm")
    crosses = [t for t in fig.data if t.name == "collapsed runs"]
    assert len(crosses) == 1 and len(crosses[0].y) == 2  # one per group the standard clean bar appears in
    assert crosses[0].marker.symbol == "x-thin" and "collapsed" in crosses[0].hovertext[0]
    assert any("collapsed" in (t.name or "") and t.showlegend is not False for t in fig.data)  # legend entry
    assert "1 of 3 runs collapsed" in _bar(fig, "simplecnn, standard", "clean").hovertext[0]
    hidden = plots.accuracy_bars(summarize(rows), attack="fgsm", show_collapsed=False)
    assert not [t for t in hidden.data if t.name == "collapsed runs"]
    left_out = summarize(rows, exclude_collapsed=True)
    assert _entry(left_out, "standard", 0.0, "none", 0.0).n_runs == 2
    assert _entry(left_out, "standard", 0.0, "fgsm", 0.05).n_runs == 2  # the whole run is left out


def test_accuracy_curve_band_is_mean_plus_minus_std():
    summary = summarize(study_rows())
    fig = plots.accuracy_curve(summary, attack="fgsm")
    name = recipe_labels(summary)[_entry(summary, "standard", 0.0, "none", 0.0).recipe]
    mean = next(t for t in fig.data if t.name == name)
    band = next(t for t in fig.data if t.name == f"{name} (mean ± std)")
    assert list(mean.x) == ["clean", plots.short_epsilon(0.05), plots.short_epsilon(0.2)]
    stds = [_entry(summary, "standard", 0.0, a, e).stat("balanced_accuracy").std
            for a, e in (("none", 0.0), ("fgsm", 0.05), ("fgsm", 0.2))]
    upper = [m + s for m, s in zip(mean.y, stds, strict=True)]
    lower = [max(0.0, m - s) for m, s in zip(mean.y, stds, strict=True)]
    assert list(band.x) == list(mean.x) + list(mean.x)[::-1]
    assert list(band.y) == pytest.approx(upper + lower[::-1])
    assert band.fill == "toself"
    assert len([t for t in fig.data if t.mode == "lines+markers"]) == 3  # one line per trained model
    assert sum(len(d.y) for d in _dots(fig) if d.legendgroup == name) == 9


def test_accuracy_curve_leaves_untested_epsilons_as_gaps():
    rows = study_rows() + [_row("simplecnn", "fgsm", 0.05, "fgsm", 0.5, s, 0.4) for s in (0, 1, 2)]
    summary = summarize(rows)
    fig = plots.accuracy_curve(summary, attack="fgsm")
    name = recipe_labels(summary)[_entry(summary, "standard", 0.0, "none", 0.0).recipe]
    standard = next(t for t in fig.data if t.name == name)
    assert list(standard.x)[-1] == plots.short_epsilon(0.5) and standard.y[-1] is None
    assert not standard.connectgaps
    band = next(t for t in fig.data if t.name == f"{name} (mean ± std)")
    assert plots.short_epsilon(0.5) not in band.x  # the band stops where the tests stop


def test_accuracy_curve_leaves_out_recipes_never_tested_with_its_attack():
    rows = study_rows() + [_row("simplecnn", "pgd", 8 / 255, a, e, s, 0.5) for s in (0, 1)
                           for a, e in (("none", 0.0), ("pgd", 0.05))]
    summary = summarize(rows)
    names = recipe_labels(summary)
    pgd_trained = names[_entry(summary, "pgd", 8 / 255, "none", 0.0).recipe]
    fgsm_curve = {t.name for t in plots.accuracy_curve(summary, attack="fgsm").data if t.mode == "lines+markers"}
    pgd_curve = {t.name for t in plots.accuracy_curve(summary, attack="pgd").data if t.mode == "lines+markers"}
    assert len(fgsm_curve) == 3 and pgd_trained not in fgsm_curve
    assert pgd_curve == {pgd_trained}


def test_confusion_heatmap_outlines_the_critical_class_called_anything_else():
    confusion = [[10, 2, 1], [4, 20, 3], [0, 1, 9]]
    fig = plots.confusion_heatmap(confusion, CLASSES, "malignant")
    heat = fig.data[0]
    assert list(heat.x) == list(CLASSES) and list(heat.y) == list(CLASSES)
    assert heat.text[1][0].startswith("4") and heat.text[1][2].startswith("3")
    boxes = [(s.x0, s.y0) for s in fig.layout.shapes]
    assert sorted(boxes) == [(-0.5, 0.5), (1.5, 0.5)]  # (malignant row) x (benign, normal columns)
    assert "7 of 27" in fig.layout.title.text
    assert plots.critical_missed(confusion, CLASSES, "malignant") == (7, 27)
    normal = plots.confusion_heatmap(confusion, CLASSES, "normal")  # another dataset's critical class
    assert sorted((s.x0, s.y0) for s in normal.layout.shapes) == [(-0.5, 1.5), (0.5, 1.5)]


def test_sum_confusions_pools_runs():
    a, b = [[1, 0, 0], [0, 2, 1], [0, 0, 3]], [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert plots.sum_confusions([a, b]) == [[3, 1, 0], [1, 3, 1], [0, 0, 4]]
    assert plots.sum_confusions([]) == []


def test_probability_bars_mark_each_predicted_class():
    fig = plots.probability_bars(list(CLASSES), [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], perturbed_name="FGSM")
    clean, perturbed = fig.data
    assert clean.orientation == "h" and list(clean.y) == list(CLASSES)
    assert list(clean.x) == pytest.approx([0.7, 0.2, 0.1]) and list(perturbed.x) == pytest.approx([0.1, 0.8, 0.1])
    assert list(clean.marker.line.width) == [3, 0, 0] and list(perturbed.marker.line.width) == [0, 3, 0]
    assert perturbed.name == "FGSM"
    assert fig.layout.xaxis.tickformat == ".0%"


def test_probability_sweep_marks_the_flip():
    eps = [0.0, 1 / 255, 2 / 255]
    fig = plots.probability_sweep(eps, [[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.3, 0.7, 0.0]], flip_epsilon=2 / 255)
    assert len(fig.data) == 3
    assert list(fig.data[0].x) == pytest.approx([0, 1, 2])  # in k/255
    assert any("flips at" in (a.text or "") for a in fig.layout.annotations)


def test_training_curves_from_checkpoint_history():
    history = [{"epoch": 1, "epochs": 2, "train_loss": 1.0, "train_accuracy": 0.5, "test_accuracy": 0.4,
                "test_balanced_accuracy": 0.35, "test_fgsm_accuracy": 0.3, "test_pgd_accuracy": 0.2},
               {"epoch": 2, "epochs": 2, "train_loss": 0.5, "train_accuracy": 0.7, "test_accuracy": 0.6,
                "test_balanced_accuracy": 0.55, "test_fgsm_accuracy": 0.5, "test_pgd_accuracy": 0.1}]
    fig = plots.training_curves(history)
    names = [t.name for t in fig.data]
    assert names == ["train accuracy", "test accuracy (clean)", "test balanced accuracy (clean)",
                     "watch accuracy under FGSM", "watch accuracy under PGD", "training loss"]
    loss = fig.data[-1]
    assert list(loss.y) == [1.0, 0.5] and loss.yaxis == "y2"
    standard = plots.training_curves([{k: v for k, v in h.items() if "fgsm" not in k and "pgd" not in k}
                                      for h in history])
    assert len(standard.data) == 4


def test_labels_say_epsilon_both_ways_and_name_measures():
    assert plots.short_epsilon(0) == "clean"
    assert plots.short_epsilon(8 / 255) == "0.0314<br>(8/255)"
    assert plots.metric_name("balanced_accuracy") == "Balanced accuracy"
    assert plots.metric_name("malignant_sensitivity").startswith("Malignant sensitivity")
    assert set(plots.METRIC_NAMES) >= {"balanced_accuracy", "accuracy", "malignant_sensitivity"}


def test_history_from_progress_keeps_epoch_ends_of_the_run_in_progress():
    """Progress rows of a running job: batch rows carry a loss, epoch ends a loss and an accuracy."""
    def batch(epoch, loss):
        return {"epoch": epoch, "epochs": 3, "loss": loss, "accuracy": None, "fraction": 0.1}

    def end(epoch, loss, acc):
        return {"epoch": epoch, "epochs": 3, "loss": loss, "accuracy": acc, "fraction": 0.3}

    rows = [{"epoch": 0, "epochs": 3, "loss": None, "accuracy": None}, batch(1, 1.2), end(1, 1.0, 0.5),
            batch(2, 0.9), end(2, 0.8, 0.6), batch(3, 0.7)]
    assert plots.history_from_progress(rows) == [{"epoch": 1, "train_loss": 1.0, "test_accuracy": 0.5},
                                                 {"epoch": 2, "train_loss": 0.8, "test_accuracy": 0.6}]
    # An experiment starts its next run: the curves restart with it.
    second_run = rows + [end(3, 0.6, 0.7), {"epoch": 0, "epochs": 3}, batch(1, 1.1), end(1, 0.95, 0.45)]
    assert plots.history_from_progress(second_run) == [{"epoch": 1, "train_loss": 0.95, "test_accuracy": 0.45}]
    assert plots.history_from_progress([batch(1, 1.2)]) == []
    fig = plots.training_curves(plots.history_from_progress(rows), epochs=3)
    assert [t.name for t in fig.data] == ["test accuracy (clean)", "training loss"]
    assert list(fig.layout.xaxis.range) == [0.5, 3.5]  # the axis spans the planned epochs



def test_a_legend_below_holds_every_line_without_scrolling():
    """Plotly caps a horizontal legend at half the figure and scrolls the rest: the report's legends scrolled."""
    from busadv.plots.style import LEGEND_LINE_PX, legend_below

    fig = plots.accuracy_bars(summarize(study_rows()), attack="fgsm")
    lines = len({t.name for t in fig.data if t.showlegend is not False and t.name})
    before = int(fig.layout.height or 450)
    fig = legend_below(fig)
    assert fig.layout.height == before + LEGEND_LINE_PX * lines
    assert fig.layout.legend.maxheight >= LEGEND_LINE_PX * lines, "no scrolling legend"


def test_the_frontier_has_one_point_per_recipe_at_its_means_and_a_short_axis_title():
    summary = summarize(study_rows())
    fig = plots.robustness_frontier(summary, "fgsm", 0.05)
    points = [t for t in fig.data if t.mode == "markers"]
    assert len(points) == 3, "standard and FGSM at two epsilons"
    standard = next(p for p in points if "standard" in p.name)
    assert math.isclose(standard.x[0], 0.80 + 1 / 300 - 0.05) and math.isclose(standard.y[0], 0.30 + 1 / 300 - 0.05)
    # The attack is named in the subtitle; a long vertical axis title ran into the chart's title in Chromium.
    assert len(fig.layout.yaxis.title.text) <= 30 and "FGSM" in fig.layout.title.to_plotly_json().__repr__()
