"""The study's question answered from rows: the rule's training epsilon, paired intervals, and the clean-accuracy
verdict, each able to come out either way."""

import dataclasses
import math

import pytest

from busadv import plots
from busadv.results import ResultRow
from busadv.results.tradeoff import CLEAN_TOLERANCE, epsilon_tradeoffs, paired_difference, unpaired_runs

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
    labels = {a.text: (a.x, a.y) for a in figure.layout.annotations if a.showarrow}
    assert labels["<b>2/255</b>"] == pytest.approx((0.74, 0.31)), "each label points at its own mean"
    assert any(s.x0 == pytest.approx(0.75 - CLEAN_TOLERANCE) for s in figure.layout.shapes), "the rule's line"
    low, high = figure.layout.xaxis.range
    assert low < 1 / 3 < 0.69 < 0.76 < high < 1.03, "zoomed to the points, chance still in view"


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


def test_adversarial_runs_with_no_standard_of_their_recipe_are_named_with_what_differs():
    frontier = _rows(0, [0.75, 0.74], [0.0, 0.0]) + _rows(8 / 255, [0.70, 0.71], [0.45, 0.47])
    other_lr = _rows(8 / 255, [0.66, 0.64], [0.40, 0.41], lr=1e-3)
    assert unpaired_runs(frontier, "autoattack", AA) == [], "every adversarial run is on a frontier"
    lines = unpaired_runs(frontier + other_lr, "autoattack", AA)
    assert len(lines) == 1 and "fgsm at training ε 0.0314 (8/255) (2 seeds) is left out" in lines[0]
    assert "lr 0.001 (the frontier's: 0.002)" in lines[0] and "Train standard runs" in lines[0]
    assert unpaired_runs(frontier + other_lr, "pgd", AA) == [], "not tested under the asked attack: not named"
    assert "nearest frontier" not in unpaired_runs(other_lr, "autoattack", AA)[0], "no frontier to compare with"
    assert len(epsilon_tradeoffs(frontier + other_lr, "autoattack", AA)) == 1, "the frontier itself is unchanged"


def test_the_results_page_answers_the_question_in_words_picture_and_table():
    from tests.test_app import RESULTS, chart, open_app, result_row, stored, texts, unescape

    rows = []
    for eps, clean, robust in ((0.0, [0.75, 0.74, 0.76], [0.0, 0.01, 0.0]),
                               (2 / 255, [0.74, 0.73, 0.75], [0.3, 0.32, 0.31]),
                               (4 / 255, [0.70, 0.69, 0.71], [0.45, 0.46, 0.44])):
        mode = "standard" if eps == 0 else "fgsm"
        for seed, (c, r) in enumerate(zip(clean, robust)):
            rows += [result_row(mode, eps, "none", 0.0, seed, c), result_row(mode, eps, "autoattack", AA, seed, r)]
    rows += [result_row("fgsm", 8 / 255, attack, eps, seed, 0.6, critical_weight=2.0)
             for seed in range(3) for attack, eps in (("none", 0.0), ("autoattack", AA))]
    stored(rows)
    at = open_app(RESULTS)
    page = unescape(texts(at))
    assert "Best training ε by the rule: 0.00784 (2/255)" in page and "AutoAttack at ε = 0.0157 (4/255)" in page
    assert "lowers clean balanced accuracy" in page
    assert "(8/255) (3 seeds) is left out" in page and "critical_weight 2.0 (the frontier's: 1.0)" in page
    names = [t.get("name") for t in chart(at, "tradeoff_0")["data"]]
    assert sum(1 for n in names if n and n.startswith("training ε")) == 3


def test_the_frontier_command_answers_from_files_split_by_epsilon(tmp_path, capsys):
    """Rows of two grids (one per training epsilon) read together give the same answer as the Results page."""
    from busadv.cli import main
    from busadv.results import write_rows

    def as_written(rows: list[ResultRow]) -> list[ResultRow]:  # a whole confusion matrix, as busadv writes one
        return [dataclasses.replace(r, confusion=[[5, 0, 0], [0, 5, 0], [0, 0, 5]]) for r in rows]

    write_rows(as_written(_rows(0, [0.75, 0.74, 0.76], [0.0, 0.01, 0.0])
                          + _rows(2 / 255, [0.74, 0.73, 0.75], [0.30, 0.32, 0.31])), tmp_path / "a.csv")
    write_rows(as_written(_rows(4 / 255, [0.70, 0.69, 0.71], [0.45, 0.46, 0.44])), tmp_path / "b.csv")
    html = tmp_path / "frontier.html"
    assert main(["frontier", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "(a) Best training ε by the rule: 0.00784 (2/255)" in out and "(b) Adversarial training" in out
    assert out.count("standard (0)") == 1 and "0.0157 (4/255)" in out
    assert html.stat().st_size > 100_000 and "cdn.plot.ly" not in html.read_text()[:5000], "plotly.js inline"


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p / "missing.csv", "no such results file"),
    (lambda p: p, "not a regular file"),
    (lambda p: (p / "bad.csv").write_text("run,seed\nx,not-a-seed\n") and p / "bad.csv", "bad.csv"),
    (lambda p: (p / "empty.csv").write_text("") or p / "empty.csv", "not a busadv results file"),
])
def test_the_frontier_command_refuses_bad_files_in_one_line(tmp_path, capsys, make, message):
    from busadv.cli import main

    code = main(["frontier", str(make(tmp_path))])
    err = capsys.readouterr().err
    assert code in (1, 2) and message in err and "Traceback" not in err


def test_the_frontier_command_says_when_the_rows_hold_no_frontier(tmp_path, capsys):
    from busadv.cli import main
    from busadv.results import write_rows

    only_standard = [dataclasses.replace(r, confusion=[[5, 0, 0], [0, 5, 0], [0, 0, 5]])
                     for r in _rows(0, [0.75, 0.74], [0.0, 0.01])]
    write_rows(only_standard, tmp_path / "standard.csv")
    assert main(["frontier", str(tmp_path / "standard.csv")]) == 1
    assert "no frontier in 4 rows" in capsys.readouterr().err


def test_the_frontier_command_names_a_lever_run_that_has_no_standard_beside_it(tmp_path, capsys):
    """A lever compared across two files (its adversarial runs only) is named, not silently dropped."""
    from busadv.cli import main
    from busadv.results import write_rows

    def written(rows: list[ResultRow]) -> list[ResultRow]:
        return [dataclasses.replace(r, confusion=[[5, 0, 0], [0, 5, 0], [0, 0, 5]]) for r in rows]

    write_rows(written(_rows(0, [0.75, 0.74], [0.0, 0.01]) + _rows(8 / 255, [0.73, 0.73], [0.45, 0.47])),
               tmp_path / "base.csv")
    lever = [dataclasses.replace(r, critical_weight=2.0) for r in _rows(8 / 255, [0.64, 0.65], [0.41, 0.40])]
    write_rows(written(lever), tmp_path / "lever.csv")
    assert main(["frontier", str(tmp_path / "base.csv"), str(tmp_path / "lever.csv")]) == 0
    out = capsys.readouterr().out
    assert "note: simplecnn fgsm at training ε 0.0314 (8/255) (2 seeds) is left out" in out
    assert "critical_weight 2.0 (the frontier's: 1.0)" in out and "(a) Best training ε by the rule" in out
    assert main(["frontier", str(tmp_path / "lever.csv")]) == 1
    err = capsys.readouterr().err
    assert "is left out: no standard training with its recipe" in err and "no frontier in 4 rows" in err
