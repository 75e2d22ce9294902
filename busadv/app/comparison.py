"""The Results page's comparison of two recipes, seed by seed (busadv.results.comparison): did a change to
training help? The same pairing as `python -m busadv compare`, picked from the rows on the page."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from busadv.app.forms import epsilon_input_text
from busadv.app.layout import flow, plain
from busadv.app.tradeoff import robust_conditions
from busadv.attacks import attack_label, format_epsilon
from busadv.results import RECIPE_FIELDS, ResultRow
from busadv.results.comparison import (
    ARM_FIELDS,
    RecipeComparison,
    compare_recipes,
    mean_std_text,
    same_arm,
    tested_recipes,
)


def comparison_table(comparison: RecipeComparison) -> list[dict[str, str]]:
    """One line per measure, as plain text cells."""
    return [{"measure": m.measure, "candidate": mean_std_text(m.candidate), "reference": mean_std_text(m.reference),
             "Δ (candidate - reference), 95% CI": m.difference.short()} for m in comparison.measures]


def recipe_choice_labels(firsts: dict[tuple[object, ...], ResultRow]) -> dict[tuple[object, ...], str]:
    """'critical weight 2.0, epochs 34 · fgsm 8/255': the settings that tell the recipes apart come first, so a
    narrow choice box still shows them; then the model, mode and training ε they share with their partners."""
    varying = [f for i, f in enumerate(RECIPE_FIELDS)
               if f not in ARM_FIELDS and len({str(recipe[i]) for recipe in firsts}) > 1]
    labels = {}
    for recipe, row in firsts.items():
        settings = ", ".join(f"{f.replace('_', ' ')} {str(getattr(row, f))[:20] or 'not recorded'}" for f in varying)
        arm = f"{row.arch} {row.train_mode}"
        if row.train_epsilon:
            arm += f" {epsilon_input_text([row.train_epsilon])}"
        labels[recipe] = f"{settings or 'the same settings'} · {arm}"
    return labels


def comparison_section(rows: Sequence[ResultRow]) -> None:
    conditions = robust_conditions(rows)
    if not conditions:
        st.caption("No AutoAttack or PGD rows yet: a comparison pairs runs tested clean and under one of them.")
        return
    condition = st.selectbox(
        "Robust under", conditions, key="compare_condition", width=320,
        format_func=lambda c: plain(f"{attack_label(c[0])} at ε = {format_epsilon(c[1])}"))
    attack, epsilon = condition
    recipes = tested_recipes(rows, attack, epsilon)
    pairable = [r for r in recipes if any(same_arm(r, other) for other in recipes if other != r)]
    if not pairable:
        st.caption("No two recipes of one model, training mode and training ε are tested under this attack: train "
                   "the same model twice, changing one setting (e.g. `--critical-weight 2`), to compare them.")
        return
    labels = recipe_choice_labels({r: recipes[r][0] for r in pairable})
    pick = flow(gap="medium")
    candidate = pick.selectbox("Candidate recipe", range(len(pairable)), key="compare_candidate", width=400,
                               format_func=lambda i: plain(labels[pairable[i]]))
    others = [r for r in pairable if r != pairable[candidate] and same_arm(r, pairable[candidate])]
    reference = pick.selectbox("Reference recipe", range(len(others)), key="compare_reference", width=400,
                               format_func=lambda i: plain(labels[others[i]]))
    (comparison,) = compare_recipes(recipes[pairable[candidate]], recipes[others[reference or 0]], attack, epsilon)
    differs = "; ".join(comparison.differs) or "nothing recorded (a rerun of the same recipe)"
    st.markdown(f"**{plain(comparison.arm)}**, paired over {len(comparison.seeds)} seeds. "
                f"They differ in: {plain(differs)}.")
    st.dataframe(comparison_table(comparison), hide_index=True)
    notes = ["Paired: each seed's candidate run against its reference run (the same split and initialisation); "
             "95% t-intervals of the differences and the paired t-test."]
    if comparison.unpaired:
        notes.append(f"Left out: seeds {', '.join(map(str, comparison.unpaired))}, tested in one recipe only.")
    notes.append("Collapsed runs: " + (", ".join(comparison.collapsed) if comparison.collapsed else "none") + ".")
    notes += [f"{note[:1].upper()}{note[1:]}." for note in comparison.chosen]
    st.caption(plain(" ".join(notes)))
