"""Perturbation explorer: one trained model, one ultrasound image, a moving epsilon, and where the model looks.

The first screen (busadv.app.explorer.stage) holds everything a lecture hall needs: the original and the
perturbed image with their class probabilities and an epsilon slider that moves in the browser over
precomputed positions. Below it, in tabs that run only when opened: a closer look at one epsilon (the
amplified change, Grad-CAM, exports), the strip and the sweep, a second model, the original file, and the
test set. Presenter mode shows the first screen alone, larger, in four steps. Deep links
(?model=...&image=...&attack=...&eps=...) open a given case.
"""

from __future__ import annotations

import streamlit as st

from busadv.app import checkpoints, dataset, first_start, jobs, layout
from busadv.app.explorer import choices, closer, compare, original, presenter, stage, strip, test_set
from busadv.attacks import explorer_attacks

layout.page_setup("Perturbation explorer")
link = choices.pending_link()
choices.apply_attack_link(link, explorer_attacks())
presenting = stage.header()
facts = dataset.dataset_facts()
if facts.error:
    dataset.dataset_banner(compact=True)
infos = checkpoints.checkpoint_infos()
if not infos:
    choices.await_first_model(lambda: first_start.panel(jobs.job_store(), facts.label))
    st.stop()

if presenting:
    presenter.style()

    def walk(attack: str, flip_eps: float | None) -> tuple[str, float]:
        step = presenter.controls(presenter.plan(attack, flip_eps, choices.equal_size_comparison(explorer_attacks())))
        return step.attack, step.epsilon

    stage.first_screen(infos, facts, link, steps=walk)
    st.stop()

shown = stage.first_screen(infos, facts, link)
if shown is None:
    st.stop()

# ------------------------------------------------------------------ below the first screen, one tab each
TABS = ("Closer look: the change and where the model looks", "ε strip and sweep", "Compare two models",
        "Original file", "Whole test set")
look, strip_tab, compare_tab, file_tab, test_tab = st.tabs(TABS, key="explorer_tab", on_change="rerun")
if look.open:
    with look:
        closer.closer_look(shown.view, shown.attack, shown.lesion, shown.flip_eps)
if strip_tab.open:
    with strip_tab:
        strip.strip(shown.view, shown.attack, shown.lesion)
        strip.sweep(shown.view, shown.attack, shown.flip_eps, shown.eps)
if compare_tab.open:
    with compare_tab:
        compare.compare(shown.view, shown.others, shown.attack, shown.eps)
if file_tab.open:
    with file_tab:
        original.original(shown.view)
if test_tab.open:
    with test_tab:
        if shown.test_set is None:
            st.caption("An uploaded image has no test set around it: pick a test image to measure the whole set.")
        else:
            test_set.test_set_attention(shown.info, shown.test_set, shown.attack)
