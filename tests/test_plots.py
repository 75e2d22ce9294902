"""busadv.plots: the figures hold the numbers they claim to show (error bars, bands, highlights)."""

from __future__ import annotations

import math

import pytest

from busadv import plots
from busadv.attacks import format_epsilon
from busadv.experiments import summarize


def _row(arch: str, mode: str, train_eps: float, attack: str, test_eps: float, seed: int, acc: float,
         confusion: list[list[int]] | None = None) -> dict:
    return {"arch": arch, "train_mode": mode, "train_epsilon": train_eps, "attack": attack, "test_epsilon": test_eps,
            "seed": seed, "accuracy": acc, "malignant_missed_rate": 1 - acc, "recall_benign": acc,
            "recall_malignant": acc, "recall_normal": acc,
            "confusion": confusion or [[5, 1, 0], [2, 6, 1], [0, 1, 4]]}


def study_rows() -> list[dict]:
    """Three seeds of: standard, FGSM-trained at 0.05 and at 0.2; clean and FGSM at 0.05 and 0.2."""
    rows = []
    for seed, jitter in zip((0, 1, 2), (-0.02, 0.0, 0.03)):
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


def _entry(summary, mode, train_eps, attack, test_eps):
    return next(s for s in summary if s["train_mode"] == mode and math.isclose(s["train_epsilon"], train_eps)
                and s["attack"] == attack and math.isclose(s["test_epsilon"], test_eps))


def test_accuracy_bars_error_bars_are_the_summary_std():
    summary = summarize(study_rows())
    fig = plots.accuracy_bars(summary, attack="fgsm")
    bars = _bars(fig)
    # standard clean, standard FGSM, FGSM-trained clean, FGSM-trained FGSM
    assert len(bars) == 4
    assert [b.x for b in bars] == [(plots.short_epsilon(0.05), plots.short_epsilon(0.2))] * 4
    by_name = {b.name: b for b in bars}
    std_fgsm = next(b for n, b in by_name.items() if n.startswith("Standard") and "FGSM test" in n)
    expected = [_entry(summary, "standard", 0.0, "fgsm", e) for e in (0.05, 0.2)]
    assert list(std_fgsm.y) == pytest.approx([e["accuracy_mean"] for e in expected])
    assert list(std_fgsm.error_y.array) == pytest.approx([e["accuracy_std"] for e in expected])
    assert std_fgsm.error_y.visible is True
    # The adversarial model in each group is the one trained at that group's epsilon.
    adv_fgsm = next(b for n, b in by_name.items() if n.startswith("FGSM-trained") and "FGSM test" in n)
    matched = [_entry(summary, "fgsm", e, "fgsm", e) for e in (0.05, 0.2)]
    assert list(adv_fgsm.y) == pytest.approx([e["accuracy_mean"] for e in matched])
    assert list(adv_fgsm.error_y.array) == pytest.approx([e["accuracy_std"] for e in matched])
    adv_clean = next(b for n, b in by_name.items() if n.startswith("FGSM-trained") and "clean" in n)
    assert list(adv_clean.y) == pytest.approx([_entry(summary, "fgsm", e, "none", 0.0)["accuracy_mean"]
                                               for e in (0.05, 0.2)])


def test_accuracy_bars_show_every_seed_on_hover():
    summary = summarize(study_rows())
    fig = plots.accuracy_bars(summary, attack="fgsm")
    dots = [t for t in fig.data if t.type == "scatter"]
    assert dots, "per-seed points are drawn"
    assert sum(len(d.y) for d in dots) == 3 * len(_bars(fig)) * 2  # 3 seeds x 2 groups per bar trace
    assert all("seed" in text for d in dots for text in d.hovertext)
    assert all(d.offsetgroup for d in dots)  # aligned with their bar
    std_bar = _bars(fig)[1]
    assert "seed 0" in std_bar.hovertext[0] and "seed 2" in std_bar.hovertext[0]
    assert fig.layout.barmode == "group"


def test_accuracy_bars_single_adversarial_epsilon_is_used_in_every_group():
    rows = [r for r in study_rows() if not (r["train_mode"] == "fgsm" and r["train_epsilon"] == 0.2)]
    fig = plots.accuracy_bars(summarize(rows), attack="fgsm")
    adv = [b for b in _bars(fig) if b.name.startswith("FGSM-trained")]
    assert all(len(b.x) == 2 for b in adv)
    assert all(format_epsilon(0.05) in b.name for b in adv)


def test_accuracy_bars_other_metric_and_arch_filter():
    rows = study_rows() + [dict(r, arch="resnet50") for r in study_rows()]
    summary = summarize(rows)
    fig = plots.accuracy_bars(summary, attack="fgsm", arch="resnet50", metric="malignant_missed_rate")
    assert len(_bars(fig)) == 4
    assert "Malignant" in fig.layout.yaxis.title.text
    both = plots.accuracy_bars(summary, attack="fgsm")
    assert len(_bars(both)) == 8 and all(b.name.split(":")[0] in ("simplecnn", "resnet50") for b in _bars(both))


def test_accuracy_curve_band_is_mean_plus_minus_std():
    summary = summarize(study_rows())
    fig = plots.accuracy_curve(summary, attack="fgsm")
    mean = next(t for t in fig.data if t.name == plots.model_label("simplecnn", "standard", 0.0))
    band = next(t for t in fig.data if t.name == f"{mean.name} (mean ± std)")
    assert list(mean.x) == ["clean", plots.short_epsilon(0.05), plots.short_epsilon(0.2)]
    stds = [_entry(summary, "standard", 0.0, a, e)["accuracy_std"] for a, e in (("none", 0.0), ("fgsm", 0.05), ("fgsm", 0.2))]
    upper = [m + s for m, s in zip(mean.y, stds)]
    lower = [m - s for m, s in zip(mean.y, stds)]
    assert list(band.x) == list(mean.x) + list(mean.x)[::-1]
    assert list(band.y) == pytest.approx(upper + lower[::-1])
    assert band.fill == "toself"
    seeds = next(t for t in fig.data if t.name == f"{mean.name} (single seeds)")
    assert len(seeds.y) == 9 and set(seeds.customdata) == {0, 1, 2}
    assert len([t for t in fig.data if t.mode == "lines+markers"]) == 3  # one line per trained model


def test_confusion_heatmap_outlines_malignant_called_benign_or_normal():
    confusion = [[10, 2, 1], [4, 20, 3], [0, 1, 9]]
    fig = plots.confusion_heatmap(confusion)
    heat = fig.data[0]
    assert list(heat.x) == ["benign", "malignant", "normal"] and list(heat.y) == ["benign", "malignant", "normal"]
    assert heat.text[1][0].startswith("4") and heat.text[1][2].startswith("3")
    boxes = [(s.x0, s.y0) for s in fig.layout.shapes]
    assert sorted(boxes) == [(-0.5, 0.5), (1.5, 0.5)]  # (malignant row) x (benign, normal columns)
    assert "7 of 27" in fig.layout.title.text
    assert plots.malignant_missed(confusion) == (7, 27)


def test_sum_confusions_pools_seeds():
    a, b = [[1, 0, 0], [0, 2, 1], [0, 0, 3]], [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert plots.sum_confusions([a, b]) == [[3, 1, 0], [1, 3, 1], [0, 0, 4]]
    assert plots.sum_confusions([]) == []


def test_probability_bars_mark_each_predicted_class():
    fig = plots.probability_bars(["benign", "malignant", "normal"], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1],
                                 perturbed_name="FGSM")
    clean, perturbed = fig.data
    assert clean.orientation == "h" and list(clean.y) == ["benign", "malignant", "normal"]
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
                "test_fgsm_accuracy": 0.3, "test_pgd_accuracy": 0.2},
               {"epoch": 2, "epochs": 2, "train_loss": 0.5, "train_accuracy": 0.7, "test_accuracy": 0.6,
                "test_fgsm_accuracy": 0.5, "test_pgd_accuracy": 0.1}]
    fig = plots.training_curves(history)
    names = [t.name for t in fig.data]
    assert names == ["train accuracy", "test accuracy (clean)", "test accuracy under FGSM", "test accuracy under PGD",
                     "training loss"]
    loss = fig.data[-1]
    assert list(loss.y) == [1.0, 0.5] and loss.yaxis == "y2"
    standard = plots.training_curves([{k: v for k, v in h.items() if "fgsm" not in k and "pgd" not in k}
                                      for h in history])
    assert len(standard.data) == 3


def test_labels_say_epsilon_both_ways():
    assert plots.short_epsilon(0) == "clean"
    assert plots.short_epsilon(8 / 255) == "0.0314<br>(8/255)"
    assert "8/255" in plots.model_label("simplecnn", "fgsm", 8 / 255)
    assert plots.attack_name("fgsm-pred") == "FGSM (predicted label)"


def test_accuracy_curve_leaves_untested_epsilons_as_gaps():
    rows = study_rows() + [_row("simplecnn", "fgsm", 0.05, "fgsm", 0.5, s, 0.4) for s in (0, 1, 2)]
    fig = plots.accuracy_curve(summarize(rows), attack="fgsm")
    standard = next(t for t in fig.data if t.name == plots.model_label("simplecnn", "standard", 0.0))
    assert list(standard.x)[-1] == plots.short_epsilon(0.5) and standard.y[-1] is None
    assert not standard.connectgaps
    band = next(t for t in fig.data if t.name == f"{standard.name} (mean ± std)")
    assert plots.short_epsilon(0.5) not in band.x  # the band stops where the tests stop


def test_every_measure_shows_its_single_seeds():
    summary = summarize(study_rows())
    fig = plots.accuracy_bars(summary, attack="fgsm", metric="recall_malignant")
    dots = [t for t in fig.data if t.type == "scatter"]
    assert sum(len(d.y) for d in dots) == 3 * len(_bars(fig)) * 2
    entry = _entry(summary, "standard", 0.0, "fgsm", 0.05)
    std_fgsm = next(b for b in _bars(fig) if b.name.startswith("Standard") and "FGSM test" in b.name)
    assert all(f"seed {s}: {v:.3f}" in std_fgsm.hovertext[0]
               for s, v in zip(entry["seeds"], entry["recall_malignant_values"]))
    curve = plots.accuracy_curve(summary, attack="fgsm", metric="malignant_missed_rate")
    seeds = next(t for t in curve.data if t.name.endswith("(single seeds)"))
    assert len(seeds.y) == 9


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
