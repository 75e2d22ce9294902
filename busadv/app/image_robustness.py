"""Results-page sections on robustness itself: clean versus robust per recipe, and which images flip first."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from busadv import plots
from busadv.app import jobs
from busadv.app.checkpoints import checkpoint_infos, checkpoint_label, healthiest, mtime_ns
from busadv.app.layout import EXPLORER_PAGE, plain
from busadv.attacks import ADVERSARIAL, ATTACKS, attack_label, format_epsilon, strongest_attack
from busadv.evaluation import ImageFlip
from busadv.results import GroupSummary, load_flips
from busadv.results.flips import flips_dir


def frontier_section(groups: Sequence[GroupSummary]) -> None:
    """One point per recipe: clean against robust balanced accuracy, under the strongest attack tested."""
    tested = sorted({(g.attack, g.test_epsilon) for g in groups if g.attack != "none"
                     and g.attack in ATTACKS and ATTACKS.get(g.attack).family == ADVERSARIAL})
    if not tested:
        st.caption("No adversarial test in these results yet.")
        return
    strongest = strongest_attack(sorted({a for a, _ in tested}))
    choices = [t for t in tested if t[0] == strongest] + [t for t in tested if t[0] != strongest]
    pick = st.selectbox("Robust under", choices, key="frontier_condition",
                        format_func=lambda t: f"{attack_label(t[0])} at ε = {format_epsilon(t[1])}", width=360,
                        help="The strongest attack tested comes first: it has the final word on robustness.")
    st.plotly_chart(plots.robustness_frontier(groups, pick[0], pick[1]), key="frontier")


@st.cache_data(max_entries=4, show_spinner=False)
def _stored_flips(folder: str, stamp: tuple[tuple[str, int], ...]) -> tuple[list[ImageFlip], list[str]]:
    return load_flips(folder)


def stored_flips() -> tuple[list[ImageFlip], list[str]]:
    folder = flips_dir()
    stamp = tuple(sorted((p.name, mtime_ns(p)) for p in folder.glob("*.csv")))
    return _stored_flips(str(folder), stamp)


def _search_button() -> None:
    """Start the per-image search for a checkpoint as a background job."""
    infos = checkpoint_infos()
    if not infos:
        st.caption("Train a model first (Jobs page).")
        return
    by_name = {i.name: i for i in healthiest(infos)}  # the healthiest first: a collapsed model is no default
    name = st.selectbox("Checkpoint to search", list(by_name), key="flips_checkpoint",
                        format_func=lambda n: plain(checkpoint_label(by_name[n])))
    if st.button("Find each test image's smallest flipping ε (FGSM and PGD)", key="flips_start"):
        jobs.submit(jobs.job_store(), "flips", {"checkpoint": str(by_name[name].path), "attacks": ["fgsm", "pgd"]})


def flips_section(data_source: str) -> None:
    """The distribution per class of how little each image needs to flip, and the images that flip first."""
    found, problems = stored_flips()
    for problem in problems:
        st.warning(f"A per-image file was skipped: {plain(problem)}", icon=":material/warning:")
    flips = [f for f in found if f.data_source == data_source]
    models = list(dict.fromkeys(f.checkpoint or f.run for f in flips))
    if not models:
        st.caption("No per-image search yet for this data. It finds, for every held-out image of a model, the "
                   "smallest ε that flips its diagnosis (also: `python -m busadv flips CHECKPOINT`).")
        _search_button()
        return
    labels = {f.checkpoint or f.run: f.model or f.run for f in flips}
    model = st.selectbox("Model", models, key="flips_model", format_func=lambda m: plain(labels[m]))
    chosen = [f for f in flips if (f.checkpoint or f.run) == model]
    st.plotly_chart(plots.flip_distribution(chosen), key="flips_chart")
    first = sorted((f for f in chosen if f.correct and f.flip_epsilon is not None),
                   key=lambda f: (f.flip_epsilon, f.attack))[:8]
    if first:
        st.markdown("**The correctly diagnosed images that flip first** (open one in the explorer):")
        stem = model.rsplit("/", 1)[-1].removesuffix(".pt")
        for f in first:
            eps = float(f.flip_epsilon or 0.0)
            st.page_link(EXPLORER_PAGE, label=f"{f.name}: {f.label} → {f.flipped_to} at ε = {format_epsilon(eps)} "
                                              f"({attack_label(f.attack)})", icon=":material/open_in_new:",
                         query_params={"model": stem, "image": f.name, "attack": f.attack, "eps": f"{eps:.6f}"})
    with st.expander("Search another model"):
        _search_button()
