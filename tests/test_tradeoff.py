"""The study's question answered from rows: the rule's training epsilon, paired intervals, and the clean-accuracy
verdict, each able to come out either way."""

import math

import pytest

from busadv import plots
from busadv.results import ResultRow
from busadv.results.tradeoff import CLEAN_TOLERANCE, epsilon_tradeoffs, paired_difference

AA = 4 / 255


def _rows(eps: float, clean: list[float], robust: list[float], collapsed: tuple[int, ...] = (),
          mode: str = "fgsm", lr: float = 2e-3) -> list[ResultRow]:
    out = []
    train_mode = "standard" if eps == 0 else mode
    for seed, (c, r) in enumerate(zip(clean, robust, strict=True)):
        common = dict(run=f"{train_mode}-{eps}-{seed}", seed=seed, arch="simplecnn", train_mode=train_mode,
                      train_epsilon=eps, lr=lr, collapsed=seed in collapsed, malignant_sensitivity=0.6)
        out.append(ResultRow(attack="none", test_epsilon=0.0, balanced_accuracy=c, **common))
        out.append(ResultRow(attack="autoattack", test_epsilon=AA, balanced_accuracy=r, **common))
    return out


def test_paired_difference_interval_and_test():
    diff = paired_difference({0: 0.7, 1: 0.72, 2: 0.69, 3: 0.71}, {0: 0.6, 1: 0.61, 2: 0.6, 3: 0.62})
    assert diff.n == 4 and diff.mean == pytest.approx(0.0975)
    assert diff.low > 0 and diff.above_zero and not diff.below_zero and diff.p_value < 0.01
    one = paired_difference({0: 0.7, 5: 0.8}, {0: 0.6})
    assert one.n == 1 and math.isnan(one.low) and "one seed" in one.text()
    assert paired_difference({}, {0: 0.5}).n == 0


def test_the_rule_picks_the_most_robust_epsilon_within_the_clean_tolerance():
    rows = (_rows(0, [0.75, 0.74, 0.76], [0.0, 0.01, 0.0])
            + _rows(2 / 255, [0.74, 0.73, 0.75], [0.30, 0.32, 0.31])
            + _rows(4 / 255, [0.70, 0.69, 0.71], [0.45, 0.46, 0.44]))
    (answer,) = epsilon_tradeoffs(rows, "autoattack", AA)
    assert [p.train_epsilon for p in answer.points] == [0, 2 / 255, 4 / 255]
    assert answer.best is answer.points[1], "4/255 costs 0.05 clean: beyond the tolerance"
    assert "2/255" in answer.best_text and f"within {CLEAN_TOLERANCE}" in answer.rule
    assert "lowers clean balanced accuracy" in answer.clean_text, "0.74 vs 0.75 on every seed: a paired loss"
    assert len(answer.table()) == 3 and answer.table()[0]["training ε"] == "standard (0)"
    figure = plots.epsilon_tradeoff(answer)
    assert any(trace.name and "2/255" in trace.name for trace in figure.data)


def test_no_epsilon_meets_the_rule_and_a_collapsed_run_disqualifies():
    rows = (_rows(0, [0.75, 0.74, 0.76], [0.0, 0.0, 0.0])
            + _rows(2 / 255, [0.76, 0.75, 0.77], [0.5, 0.5, 0.5], collapsed=(1,))
            + _rows(8 / 255, [0.55, 0.56, 0.54], [0.40, 0.41, 0.39]))
    (answer,) = epsilon_tradeoffs(rows, "autoattack", AA)
    assert answer.best is None and "No training ε meets the rule" in answer.best_text
    assert "raises clean balanced accuracy" in answer.clean_text
    assert answer.table()[1]["collapsed"] == "seed 1"


def test_an_interval_that_spans_zero_is_said_to_show_no_change():
    rows = _rows(0, [0.70, 0.74, 0.72], [0.0, 0.0, 0.0]) + _rows(1 / 255, [0.74, 0.70, 0.72], [0.2, 0.2, 0.2])
    (answer,) = epsilon_tradeoffs(rows, "autoattack", AA)
    assert "does not measurably change" in answer.clean_text


def test_runs_of_another_recipe_are_never_paired_with_standard_training():
    rows = _rows(0, [0.75, 0.74], [0.0, 0.0], lr=1e-3) + _rows(4 / 255, [0.7, 0.7], [0.4, 0.4], lr=2e-3)
    assert epsilon_tradeoffs(rows, "autoattack", AA) == [], "different learning rates: two frontiers of one point"
    assert epsilon_tradeoffs(_rows(0, [0.75], [0.0]) + _rows(4 / 255, [0.7], [0.4]), "pgd", AA) == [], \
        "no rows under the asked attack"


def test_the_results_page_answers_the_question_in_words_picture_and_table():
    from tests.test_app import RESULTS, chart, open_app, result_row, stored, texts, unescape

    rows = []
    for eps, clean, robust in ((0.0, [0.75, 0.74, 0.76], [0.0, 0.01, 0.0]),
                               (2 / 255, [0.74, 0.73, 0.75], [0.3, 0.32, 0.31]),
                               (4 / 255, [0.70, 0.69, 0.71], [0.45, 0.46, 0.44])):
        mode = "standard" if eps == 0 else "fgsm"
        for seed, (c, r) in enumerate(zip(clean, robust)):
            rows += [result_row(mode, eps, "none", 0.0, seed, c), result_row(mode, eps, "autoattack", AA, seed, r)]
    stored(rows)
    at = open_app(RESULTS)
    page = unescape(texts(at))
    assert "Best training ε by the rule: 0.00784 (2/255)" in page and "AutoAttack at ε = 0.0157 (4/255)" in page
    assert "lowers clean balanced accuracy" in page
    names = [t.get("name") for t in chart(at, "tradeoff_0")["data"]]
    assert sum(1 for n in names if n and n.startswith("training ε")) == 3
