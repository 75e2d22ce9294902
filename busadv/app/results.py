"""The Results page's pieces: stored and uploaded rows, diagnoses in plain language, confusion matrices, tables.

Every train, evaluate and experiment (from the CLI or a job) writes its rows to the results store, so
the page reads the store rather than job results. Rows from a file someone uploads are data from
elsewhere: they are validated by the engine and never rendered as Markdown.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from busadv import plots
from busadv.app.checkpoints import condition_text, mtime_ns
from busadv.app.layout import plain
from busadv.attacks import ATTACKS, attack_label, format_epsilon
from busadv.data import BUSI
from busadv.plots.style import text
from busadv.results import (
    HEADLINE,
    GroupSummary,
    ResultRow,
    diagnose,
    load_store,
    read_rows,
    recipe_labels,
    store_files,
)
from busadv.results.store import results_dir


@st.cache_data(max_entries=4, show_spinner="Reading the results store…")
def _store(folder: str, stamp: tuple[tuple[str, int], ...]) -> tuple[list[ResultRow], list[str]]:
    return load_store(folder)


def stored_rows() -> tuple[list[ResultRow], list[str]]:
    """(every stored row, newest first, each model and condition once; files that could not be read).

    Cached until a file of the store changes, so a rerun of the page does not re-read every CSV.
    """
    folder = results_dir()
    stamp = tuple((p.name, mtime_ns(p)) for p in store_files(folder))
    return _store(str(folder), stamp)


def uploaded_rows(name: str, content: bytes) -> list[ResultRow]:
    """The rows of an uploaded results file, or [] after an error message in plain text."""
    try:
        return read_rows(content, suffix=Path(name).suffix.lower() or ".csv")
    except (ValueError, UnicodeDecodeError) as exc:
        st.error(f"{plain(name)}: {plain(exc)}", icon=":material/block:")
        return []


def sources(rows: Sequence[ResultRow]) -> list[str]:
    """The data sources among the rows; charts never pool two of them."""
    return sorted({r.data_source or "unknown data" for r in rows})


def from_source(rows: Sequence[ResultRow], source: str) -> list[ResultRow]:
    return [r for r in rows if (r.data_source or "unknown data") == source]


def attacks_in(rows: Sequence[ResultRow]) -> list[str]:
    """The attacks the rows were tested under, in the registry's order (unknown names last)."""
    present = {r.attack for r in rows if r.attack != "none"}
    order = [a for a in ATTACKS.names() if a in present]
    return order + sorted(present - set(order))


def archs_in(rows: Sequence[ResultRow]) -> list[str]:
    return sorted({r.arch for r in rows})


# --------------------------------------------------------------------------- diagnoses

def show_checks(rows: Sequence[ResultRow], skipped: Sequence[str] = ()) -> None:
    """One summary of what went wrong (traps found in these runs, result files skipped), details folded below.

    Why one box: seven warnings above a chart bury it; a reader needs to know that something is off and
    where to read more, then the chart. Every text from a file is shown as plain text.
    """
    found = diagnose(rows)
    if not found and not skipped:
        st.caption(":material/check_circle: Checks: no collapse, label leaking, gradient masking or catastrophic "
                   "overfitting found in these runs.")
        return
    kinds: dict[str, int] = {}
    for diagnosis in found:
        kinds[diagnosis.title] = kinds.get(diagnosis.title, 0) + 1
    parts = [f"{title.lower()} ({n} model{'s' if n > 1 else ''})" for title, n in kinds.items()]
    if skipped:
        parts.append(f"{len(skipped)} results file{'s' if len(skipped) > 1 else ''} skipped")
    st.warning(f"**Read the charts with care:** {plain('; '.join(parts))}. Details below.", icon=":material/warning:")
    with st.expander(f"Details ({len(found) + len(skipped)})"):
        for diagnosis in found:
            st.markdown(f"**{plain(diagnosis.title)}** — {plain(diagnosis.model)}: {plain(diagnosis.message)}")
        for problem in skipped:
            st.markdown(f"**A results file was skipped:** {plain(problem)}")


# --------------------------------------------------------------------------- the headline attack

HEADLINE_ATTACK = "autoattack"


def default_attack(attacks: Sequence[str]) -> int:
    """The index of the attack a chart headlines: AutoAttack where it was run (PGD is an optimistic estimate)."""
    for name in (HEADLINE_ATTACK, "pgd"):
        if name in attacks:
            return list(attacks).index(name)
    return 0


def attack_choice_label(name: str) -> str:
    """The attack picker's words: which attack is the headline, and what PGD is beside it."""
    if name == HEADLINE_ATTACK:
        return f"{attack_label(name)} (the headline: strongest)"
    if name == "pgd":
        return f"{attack_label(name)} (faster, optimistic estimate)"
    return attack_label(name)  # selectbox options are plain text: no escapes


def pgd_gap(groups: Sequence[GroupSummary], metric: str) -> tuple[int, float, float] | None:
    """(model-and-ε pairs run under both, mean and largest PGD score minus AutoAttack score), or None.

    Why: PGD finds fewer adversarial images than AutoAttack, so its numbers flatter a model; the measured gap
    says by how much on these very runs.
    """
    gaps = []
    for g in groups:
        if g.attack != "pgd":
            continue
        match = _find(groups, g.recipe, HEADLINE_ATTACK, float(g.test_epsilon))
        if match is None:
            continue
        difference = g.stat(metric).mean - match.stat(metric).mean
        if not math.isnan(difference):
            gaps.append(difference)
    if not gaps:
        return None
    return len(gaps), sum(gaps) / len(gaps), max(gaps)


def pgd_caption(groups: Sequence[GroupSummary], metric: str) -> None:
    gap = pgd_gap(groups, metric)
    if gap is None:
        return
    pairs, mean, most = gap
    st.caption(f"AutoAttack is the robustness number to quote. PGD is the faster, optimistic estimate: where both "
               f"were run ({pairs} model and ε pair{'s' if pairs > 1 else ''}), PGD's "
               f"{plots.metric_name(metric).lower()} was {100 * mean:+.1f} points on average (at most "
               f"{100 * most:+.1f}) against AutoAttack's.")


# --------------------------------------------------------------------------- confusion matrices

def _find(groups: Sequence[GroupSummary], recipe: tuple[Any, ...], attack: str, eps: float) -> GroupSummary | None:
    return next((g for g in groups if g.recipe == recipe and g.attack == attack
                 and math.isclose(float(g.test_epsilon), eps, abs_tol=1e-9)), None)


def _pooled(group: GroupSummary | None) -> list[list[int]]:
    return plots.sum_confusions([r.confusion for r in group.rows if r.confusion]) if group else []


def confusion_section(groups: Sequence[GroupSummary], attack: str) -> None:
    """Clean and attacked confusion matrices of one trained model, pooled over its runs; misses outlined in red."""
    modes = {g.recipe: g.train_mode for g in groups}
    tested = {g.recipe for g in groups if g.attack == attack}
    # models tested under this attack first, standard training first among them; first-seen order otherwise
    standard_first = sorted(modes, key=lambda r: (r not in tested, modes[r] != "standard"))
    if not standard_first:
        return
    labels = recipe_labels(groups)
    pick = st.columns(2)
    index = pick[0].selectbox("Trained model", range(len(standard_first)), key="cm_model",
                              format_func=lambda i: labels[standard_first[i]])  # options are plain text
    recipe = standard_first[index]
    epsilons = sorted({float(g.test_epsilon) for g in groups if g.recipe == recipe and g.attack == attack})
    if not epsilons:
        pick[1].caption("This model was not tested under this attack.")
        return
    eps = pick[1].selectbox("Test ε", epsilons, key="cm_eps", format_func=format_epsilon)
    clean_group, attacked_group = _find(groups, recipe, "none", 0.0), _find(groups, recipe, attack, eps)
    first = (attacked_group or clean_group or groups[0]).first
    classes = list(first.recall) or list(BUSI.classes)
    critical = BUSI.critical if BUSI.critical in classes else classes[0]
    left, right = st.columns(2)
    for column, group, name, key in ((left, clean_group, "Clean test images", "cm_clean"),
                                     (right, attacked_group, condition_text(attack, eps), "cm_attacked")):
        pooled = _pooled(group)
        if pooled:
            missed, total = plots.critical_missed(pooled, classes, critical)
            column.plotly_chart(plots.confusion_heatmap(
                pooled, classes, critical, title=f"{text(name)}: {missed} of {total} {text(critical)} missed"),
                                key=key)
    runs = len({r.run for g in (clean_group, attacked_group) if g for r in g.rows})
    st.caption(f"Counts pooled over {runs} run(s); each row's percentages add to 100%. Red boxes: {plain(critical)} "
               "images called something else, the error that delays treatment.")


# --------------------------------------------------------------------------- the table

def summary_table(groups: Sequence[GroupSummary]) -> list[dict[str, Any]]:
    """One line per trained model and test condition: mean ± std over runs, and how many runs collapsed.

    Kept narrow enough for a 1280 px screen (the short model name; the seeds beside the run count) and
    with "-" in every empty cell.
    """
    labels = plots.short_labels(groups)
    return [{
        "model": html.unescape(labels[g.recipe]),
        "tested on": condition_text(g.attack, g.test_epsilon),
        "runs (seeds)": f"{g.n_runs} ({', '.join(str(s) for s in g.seeds)})",
        "collapsed": f"{g.collapsed_runs} of {g.n_runs}" if g.collapsed_runs else "-",
        **{plots.metric_name(m).split(" (")[0]: _cell(g.stat(m)) for m in HEADLINE},
    } for g in sorted(groups, key=lambda g: (labels[g.recipe], g.attack != "none", g.attack,
                                             float(g.test_epsilon)))]


def _cell(stat: Any) -> str:
    return "-" if math.isnan(stat.mean) else stat.text()
