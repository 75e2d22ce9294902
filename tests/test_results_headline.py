"""Issue 18 item 6 on Results: the headlined robustness number is AutoAttack; PGD is the faster, optimistic one."""

from __future__ import annotations

import pytest

from tests.test_app import RESULTS, open_app, result_row, stored, texts


def test_autoattack_is_the_headline_and_pgd_is_labelled_optimistic_with_the_measured_gap():
    rows = []
    for seed in (0, 1):
        rows += [result_row("standard", 0.0, "none", 0.0, seed, 0.8),
                 result_row("standard", 0.0, "fgsm", 8 / 255, seed, 0.5),
                 result_row("standard", 0.0, "pgd", 8 / 255, seed, 0.40, eval_pgd_steps=10),
                 result_row("standard", 0.0, "autoattack", 8 / 255, seed, 0.25)]
    stored(rows)
    at = open_app(RESULTS)
    picker = at.selectbox(key="attack")
    assert picker.value == "autoattack"
    assert "optimistic" in picker.format_func("pgd") and "headline" in picker.format_func("autoattack")
    said = texts(at)
    assert "PGD is the faster, optimistic estimate" in said
    assert "+15.0 points on average" in said  # 0.40 - 0.25, measured on these rows


def test_without_autoattack_pgd_is_shown_first_and_no_gap_is_claimed():
    stored([result_row("standard", 0.0, a, e, 0, s) for a, e, s in
            (("none", 0.0, 0.8), ("fgsm", 8 / 255, 0.5), ("pgd", 8 / 255, 0.4))])
    at = open_app(RESULTS)
    assert at.selectbox(key="attack").value == "pgd"
    assert "points on average" not in texts(at)


@pytest.mark.parametrize("attacks, expected", [(["fgsm"], 0), (["fgsm", "pgd", "autoattack"], 2),
                                               (["fgsm", "pgd"], 1)])
def test_default_attack(attacks, expected):
    from busadv.app.results import default_attack

    assert default_attack(attacks) == expected
