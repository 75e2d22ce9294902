"""busadv.plots: the figures hold the numbers they claim to show (error bars, bands, floors, collapsed runs)."""

from __future__ import annotations

import math

import pytest

from busadv import plots
from busadv.plots.results import short_labels
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


CLEAN_X = "clean<br>(no attack)"


def _bar(fig, name: str):
    return next(b for b in _bars(fig) if b.name == name)


def _at(bar, x: str) -> tuple[float, float]:
    """(mean, std) of a bar trace at one x group."""
    i = list(bar.x).index(x)
    return bar.y[i], bar.error_y.array[i]


def test_accuracy_bars_error_bars_are_the_summary_std_of_balanced_accuracy_by_default():
    summary = summarize(study_rows())
    fig = plots.accuracy_bars(summary, attack="fgsm")
    bars = _bars(fig)
    # one trace per trained model: standard (clean once, then both ε groups); each FGSM-trained model clean once
    # and in the group of its own ε
    assert [b.name for b in bars] == ["standard", "FGSM ε=0.05", "FGSM ε=0.2"]
    groups = (plots.short_epsilon(0.05), plots.short_epsilon(0.2))
    assert list(_bar(fig, "standard").x) == [CLEAN_X, *groups]
    assert "Balanced accuracy" in fig.layout.yaxis.title.text
    standard = _bar(fig, "standard")
    for eps, group in zip((0.05, 0.2), groups, strict=True):
        expected = _entry(summary, "standard", 0.0, "fgsm", eps).stat("balanced_accuracy")
        assert _at(standard, group) == pytest.approx((expected.mean, expected.std))
        adversarial = _bar(fig, f"FGSM ε={eps:g}")
        assert list(adversarial.x) == [CLEAN_X, group]  # the adversarial model of a group: trained at its ε
        matched = _entry(summary, "fgsm", eps, "fgsm", eps).stat("balanced_accuracy")
        assert _at(adversarial, group) == pytest.approx((matched.mean, matched.std))
        assert _at(adversarial, CLEAN_X)[0] == pytest.approx(_entry(summary, "fgsm", eps, "none", 0.0)
                                                             .stat("balanced_accuracy").mean)
    assert standard.error_y.visible is True


def test_accuracy_bars_draw_each_clean_reference_once_and_name_each_model_once_shortly():
    summary = summarize(study_rows())
    fig = plots.accuracy_bars(summary, attack="fgsm")
    clean_bars = [b for b in _bars(fig) for x in b.x if x == CLEAN_X]
    assert len(clean_bars) == 3  # one clean bar per model, not one per ε group
    assert [b.marker.pattern.shape[list(b.x).index(CLEAN_X)] for b in clean_bars] == ["", "", ""]
    entries = [t.name for t in fig.data if t.showlegend is not False and t.name]
    assert len(entries) == len(set(entries)) and all(len(e) <= 30 for e in entries), entries
    full = recipe_labels(summary)
    assert all(any(label in h for label in full.values()) for b in _bars(fig) for h in b.hovertext)
    xs = [x for b in _bars(fig) for x in b.x]
    assert fig.layout.xaxis.categoryarray == (CLEAN_X, *dict.fromkeys(x for x in xs if x != CLEAN_X))


def test_one_condition_read_back_at_two_float_values_is_one_group():
    rows = study_rows()
    rows += [_row("simplecnn", "standard", 0.0, "fgsm", 0.05 + 1e-9, seed, 0.3) for seed in (3, 4)]  # CSV rounding
    fig = plots.accuracy_bars(summarize(rows), attack="fgsm")
    standard = _bar(fig, "standard")
    assert len(standard.x) == len(set(standard.x)) == 3
    curve = plots.accuracy_curve(summarize(rows), attack="fgsm")
    assert len(curve.layout.xaxis.categoryarray) == 3


def test_long_recipes_get_short_unique_legend_names_with_the_recipe_in_the_hover():
    rows = [ResultRow(**{**r.__dict__, "train_mode": "fgsm-study", "run": r.run + m, "adv_labels": m,
                         "train_epsilon": 8 / 255})
            for r in study_rows() if r.train_mode == "standard"
            for m in ("predicted labels from a model trained elsewhere", "predicted labels from another model")]
    fig = plots.accuracy_bars(summarize(rows), attack="fgsm")
    names = [b.name for b in _bars(fig)]
    assert len(names) == 2 and len(set(names)) == 2 and all(len(n) <= 30 for n in names), names


def test_accuracy_bars_single_adversarial_epsilon_is_used_in_every_group():
    rows = [r for r in study_rows() if not (r.train_mode == "fgsm" and r.train_epsilon == 0.2)]
    fig = plots.accuracy_bars(summarize(rows), attack="fgsm")
    (adversarial,) = [b for b in _bars(fig) if "FGSM" in b.name]
    assert len(adversarial.x) == 3 and adversarial.name == "FGSM ε=0.05"


def test_accuracy_bars_other_metric_and_arch_filter():
    rows = study_rows() + [_row("resnet50", r.train_mode, r.train_epsilon, r.attack, r.test_epsilon, r.seed,
                                r.accuracy) for r in study_rows()]
    summary = summarize(rows)
    fig = plots.accuracy_bars(summary, attack="fgsm", arch="resnet50", metric="malignant_sensitivity")
    assert len(_bars(fig)) == 3 and all("resnet50" in h for b in _bars(fig) for h in b.hovertext)
    assert "Malignant" in fig.layout.yaxis.title.text
    both = plots.accuracy_bars(summary, attack="fgsm")
    assert len(_bars(both)) == 6 and {b.name.split(":")[0] for b in _bars(both)} == {"simplecnn", "resnet50"}


def test_reference_line_is_the_majority_rate_for_accuracy_and_chance_for_balanced_accuracy():
    summary = summarize(study_rows())
    accuracy = plots.accuracy_bars(summary, attack="fgsm", metric="accuracy")
    (line,) = accuracy.layout.shapes
    assert line.y0 == pytest.approx(0.45)
    assert any("commonest class always: 45%" in (t.name or "") for t in accuracy.data)
    assert not accuracy.layout.annotations  # named in the legend, never written over the bars
    balanced = plots.accuracy_curve(summary, attack="fgsm")
    assert balanced.layout.shapes[0].y0 == pytest.approx(1 / 3) and any("chance" in (t.name or "")
                                                                         for t in balanced.data)
    assert not plots.accuracy_bars(summary, attack="fgsm", metric="malignant_sensitivity").layout.shapes


def test_collapsed_runs_are_red_crosses_and_can_be_hidden_or_left_out():
    rows = study_rows()
    rows[0] = _row("simplecnn", "standard", 0.0, "none", 0.0, 0, 0.45, collapsed=True)  # seed 0 collapsed on clean
    fig = plots.accuracy_bars(summarize(rows), attack="fgsm")
    crosses = [t for t in fig.data if t.name == "collapsed runs"]
    assert len(crosses) == 1 and len(crosses[0].y) == 1  # the clean reference is drawn once, so is its cross
    assert crosses[0].marker.symbol == "x-thin" and "collapsed" in crosses[0].hovertext[0]
    assert any("collapsed" in (t.name or "") and t.showlegend is not False for t in fig.data)  # legend entry
    assert "1 of 3 runs collapsed" in _bar(fig, "standard").hovertext[0]
    hidden = plots.accuracy_bars(summarize(rows), attack="fgsm", show_collapsed=False)
    assert not [t for t in hidden.data if t.name == "collapsed runs"]
    left_out = summarize(rows, exclude_collapsed=True)
    assert _entry(left_out, "standard", 0.0, "none", 0.0).n_runs == 2
    assert _entry(left_out, "standard", 0.0, "fgsm", 0.05).n_runs == 2  # the whole run is left out


def test_accuracy_curve_band_is_mean_plus_minus_std():
    summary = summarize(study_rows())
    fig = plots.accuracy_curve(summary, attack="fgsm")
    name = short_labels(summary)[_entry(summary, "standard", 0.0, "none", 0.0).recipe]
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
    assert sum(len(d.y) for d in _dots(fig) if d.legendgroup == mean.legendgroup) == 9


def test_accuracy_curve_leaves_untested_epsilons_as_gaps():
    rows = study_rows() + [_row("simplecnn", "fgsm", 0.05, "fgsm", 0.5, s, 0.4) for s in (0, 1, 2)]
    summary = summarize(rows)
    fig = plots.accuracy_curve(summary, attack="fgsm")
    name = short_labels(summary)[_entry(summary, "standard", 0.0, "none", 0.0).recipe]
    standard = next(t for t in fig.data if t.name == name)
    assert list(standard.x)[-1] == plots.short_epsilon(0.5) and standard.y[-1] is None
    assert not standard.connectgaps
    band = next(t for t in fig.data if t.name == f"{name} (mean ± std)")
    assert plots.short_epsilon(0.5) not in band.x  # the band stops where the tests stop


def test_accuracy_curve_leaves_out_recipes_never_tested_with_its_attack():
    rows = study_rows() + [_row("simplecnn", "pgd", 8 / 255, a, e, s, 0.5) for s in (0, 1)
                           for a, e in (("none", 0.0), ("pgd", 0.05))]
    summary = summarize(rows)
    names = short_labels(summary)
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


def test_training_curves_show_the_validation_that_chose_the_epoch():
    """The best recipe watches no test image: without its validation curves a run showed only its training."""
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.4 + 0.1 * e, "val_balanced_accuracy": 0.5,
                "val_pgd_balanced_accuracy": 0.3, "val_sensitivity": 0.7, "val_pgd_sensitivity": 0.4 + 0.1 * e}
               for e in (1, 2)]
    names = [t.name for t in plots.training_curves(history).data]
    assert names == ["train accuracy", "validation balanced accuracy (clean)",
                     "validation balanced accuracy under PGD-5", "validation: cancers found under PGD-5",
                     "training loss"]
    found = next(t for t in plots.training_curves(history).data if t.name.startswith("validation: cancers"))
    assert list(found.y) == pytest.approx([0.5, 0.6])
    standard = [{k: v for k, v in h.items() if "pgd" not in k} for h in history]
    names = [t.name for t in plots.training_curves(standard).data]
    assert "validation: cancers found" in names and not any("PGD" in n for n in names)


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


HOSTILE = '<a href="http://evil.example/x">x</a> <img src=http://evil.example/p.png> %{evil}'


def _strings(value):
    """Every string anywhere in a figure's JSON (names, titles, ticks, hover texts, annotations)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def test_outside_text_reaches_every_chart_escaped():
    """Plotly draws <a href> as a link and fills %{...}: recipe strings, class names, file names arrive escaped."""
    from busadv.evaluation import ImageFlip
    from busadv.evaluation.transfer import TransferMatrix

    classes = ("<b>benign</b>", '<a href="http://evil.example">m</a>', "normal")
    rows = [ResultRow(**{**r.__dict__, "adv_labels": HOSTILE, "dominant_class": HOSTILE,
                         "recall": dict(zip(classes, (0.5, 0.3, 0.2), strict=True)), "collapsed": True})
            for r in study_rows()]
    summary = summarize(rows)
    figures = [plots.accuracy_bars(summary, attack="fgsm"), plots.accuracy_curve(summary, attack="fgsm"),
               plots.robustness_frontier(summary, "fgsm", 0.05),
               plots.confusion_heatmap([[1, 0, 0], [0, 1, 0], [0, 0, 1]], classes, classes[1])]
    flip = dict.fromkeys(ImageFlip.__dataclass_fields__)
    flip.update(name=HOSTILE, label=classes[1], true_label=1, predicted=classes[1], correct=True, attack="fgsm",
                flip_epsilon=4 / 255, flipped_to=classes[0], max_epsilon=16 / 255)
    figures.append(plots.flip_distribution([ImageFlip(**{k: v for k, v in flip.items()
                                                         if k in ImageFlip.__dataclass_fields__})], classes))
    cell = {"confusion": [[2, 0, 0], [0, 2, 0], [0, 0, 2]], "changed": 0}
    figures.append(plots.transfer_heatmap(TransferMatrix.from_dict(
        {"models": [HOSTILE, "b"], "attack": "fgsm", "epsilon": 8 / 255, "classes": list(classes),
         "critical": classes[1], "clean": [cell, cell], "cells": [[cell, cell], [cell, cell]]})))
    assert any("evil" in t for t in _strings(figures[-1].to_plotly_json()))  # the model names are in its hover
    for fig in figures:
        for text in _strings(fig.to_plotly_json()):
            assert "<a " not in text and "<img" not in text and "%{evil}" not in text, text
    assert any("&lt;a href" in t for fig in figures[:2] for t in _strings(fig.to_plotly_json()))  # shown, as text
