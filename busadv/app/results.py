"""The Results page's pieces: stored and uploaded rows, diagnoses in plain language, confusion matrices, tables.

Every train, evaluate and experiment (from the CLI or a job) writes its rows to the results store, so
the page reads the store rather than job results. Rows from a file someone uploads are data from
elsewhere: they are validated by the engine and never rendered as Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from busadv import plots
from busadv.app.checkpoints import condition_text, mtime_ns
from busadv.app.layout import plain
from busadv.attacks import ATTACKS, format_epsilon
from busadv.data import BUSI
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

def show_diagnoses(rows: Sequence[ResultRow]) -> None:
    """Each trap found in these rows, run by run, told in plain language with how many runs show it."""
    found = diagnose(rows)
    if not found:
        st.caption(":material/check_circle: Checks: no collapse, label leaking, gradient masking or catastrophic "
                   "overfitting found in these runs.")
        return
    st.markdown(f"**{'A check' if len(found) == 1 else f'{len(found)} checks'} failed on these runs: read the "
                "charts with them in mind**")
    for diagnosis in found:
        st.warning(f"**{plain(diagnosis.title)}** — {plain(diagnosis.message)}", icon=":material/warning:")


# --------------------------------------------------------------------------- confusion matrices

def _find(groups: Sequence[GroupSummary], recipe: tuple[Any, ...], attack: str, eps: float) -> GroupSummary | None:
    return next((g for g in groups if g.recipe == recipe and g.attack == attack
                 and math.isclose(float(g.test_epsilon), eps, abs_tol=1e-9)), None)


def _pooled(group: GroupSummary | None) -> list[list[int]]:
    return plots.sum_confusions([r.confusion for r in group.rows if r.confusion]) if group else []


def confusion_section(groups: Sequence[GroupSummary], attack: str) -> None:
    """Clean and attacked confusion matrices of one trained model, pooled over its runs; misses outlined in red."""
    modes = {g.recipe: g.train_mode for g in groups}
    standard_first = sorted(modes, key=lambda r: modes[r] != "standard")  # stable: first-seen order otherwise
    if not standard_first:
        return
    labels = recipe_labels(groups)
    pick = st.columns(2)
    index = pick[0].selectbox("Trained model", range(len(standard_first)), key="cm_model",
                              format_func=lambda i: labels[standard_first[i]])
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
            column.plotly_chart(plots.confusion_heatmap(pooled, classes, critical,
                                                        title=f"{name}: {missed} of {total} {critical} missed"),
                                key=key)
    runs = len({r.run for g in (clean_group, attacked_group) if g for r in g.rows})
    st.caption(f"Counts pooled over {runs} run(s); each row's percentages add to 100%. Red boxes: {critical} images "
               f"called something else, the error that delays treatment.")


# --------------------------------------------------------------------------- the table

def summary_table(groups: Sequence[GroupSummary]) -> list[dict[str, Any]]:
    """One line per trained model and test condition: mean ± std over runs, and how many runs collapsed."""
    labels = recipe_labels(groups)
    return [{
        "model": labels[g.recipe],
        "tested on": condition_text(g.attack, g.test_epsilon),
        "runs": g.n_runs,
        "seeds": ", ".join(str(s) for s in g.seeds),
        "collapsed runs": f"{g.collapsed_runs} of {g.n_runs}" if g.collapsed_runs else "",
        **{plots.metric_name(m): g.stat(m).text() for m in HEADLINE},
    } for g in groups]
