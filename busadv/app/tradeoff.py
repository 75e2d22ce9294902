"""The Results page's answer to the study's question: which training epsilon buys how much robustness, at
what clean cost (busadv.results.tradeoff), as words, a picture and a table."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from busadv import plots
from busadv.app.layout import plain
from busadv.attacks import attack_label, format_epsilon
from busadv.results import ResultRow
from busadv.results.tradeoff import epsilon_tradeoffs, unpaired_runs

ROBUST_ATTACKS = ("autoattack", "pgd")  # AutoAttack first: the word on robustness; PGD the faster, optimistic one


def robust_conditions(rows: Sequence[ResultRow]) -> list[tuple[str, float]]:
    """(attack, epsilon) pairs the rows were tested under, AutoAttack first, then by epsilon."""
    found: dict[tuple[str, float], tuple[str, float]] = {}
    for r in rows:
        if r.attack in ROBUST_ATTACKS and r.test_epsilon > 0:
            found.setdefault((r.attack, round(r.test_epsilon, 6)), (r.attack, r.test_epsilon))
    return sorted(found.values(), key=lambda c: (ROBUST_ATTACKS.index(c[0]), abs(c[1] - 4 / 255), c[1]))


def tradeoff_section(rows: Sequence[ResultRow]) -> None:
    conditions = robust_conditions(rows)
    if not conditions:
        st.caption("No AutoAttack or PGD rows yet. `python -m busadv experiment --preset frontier` trains busadv's "
                   "robust recipe at training ε 0, 1, 2, 4 and 8/255 and tests it under both.")
        return
    pick = st.selectbox("Robust under", conditions, key="tradeoff_condition",
                        format_func=lambda c: plain(f"{attack_label(c[0])} at ε = {format_epsilon(c[1])}"
                                                    + (" (faster, optimistic estimate)" if c[0] == "pgd" else "")))
    answers = epsilon_tradeoffs(rows, pick[0], pick[1])
    for line in unpaired_runs(rows, pick[0], pick[1]):
        st.caption(plain(line))
    if not answers:
        st.caption("These rows hold no frontier: standard training and at least one training ε of one adversarial "
                   "recipe, with everything else equal, tested under this attack. `python -m busadv experiment "
                   "--preset frontier` makes one.")
        return
    for i, answer in enumerate(answers[:3]):
        st.markdown(f"**{plain(answer.arch)}, {plain(answer.mode)}**: {plain(answer.best_text)}")
        st.markdown(plain(answer.clean_text))
        st.caption(plain(f"The rule: {answer.rule}. Paired: each training ε against standard training on the same "
                         "seeds (same split, same initialisation); 95% t-intervals of the differences. Robust = "
                         f"under {answer.condition}; sens. = malignant sensitivity; Δ = minus standard training."))
        st.plotly_chart(plots.epsilon_tradeoff(answer), key=f"tradeoff_{i}")
        st.dataframe(answer.table(), hide_index=True)
