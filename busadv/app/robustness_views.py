"""The Results page's robustness sections: ordinary scanner variation (corruptions) and transfer between models.

Both answer a clinician's "so what?" about an adversarial figure: is an attack of this size worse than
what a different gain setting or a JPEG export does anyway, and does an attack computed on someone
else's model still fool this one? Each section shows what is stored and starts the job that adds more;
the work runs in background jobs (busadv.experiments.robustness), never in the page.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import streamlit as st

from busadv import plots
from busadv.app import checkpoints, jobs, layout, widgets
from busadv.app.layout import plain
from busadv.attacks import ADVERSARIAL, ATTACKS, attack_label, format_epsilon
from busadv.attacks.scanner import SEVERITIES, corruption_names
from busadv.data import SIMULATED_SOURCE
from busadv.experiments.robustness import load_transfers
from busadv.results import ResultRow, Stat, model_name

MEASURES = ("balanced_accuracy", "accuracy", "malignant_sensitivity")
SMALL_SHARED_SET = 30  # fewer shared test images than this: one image moves a cell by several points


def _measure(key: str) -> str:
    return str(st.selectbox("Measure", MEASURES, key=key, format_func=plots.metric_name, width=300,
                            help="Balanced accuracy: the mean of the per-class recalls, 33% by chance. Accuracy: "
                                 "the share answered correctly. Malignant sensitivity: the share of cancers found."))


def _follow(kind: str) -> None:
    """This kind of job while it runs (live), or its error when the newest one failed."""
    store = jobs.job_store()

    def body() -> None:
        listed = [j for j in store.list(limit=30) if j.kind == kind]
        shown = [j for j in listed if j.active] or [j for j in listed[:1] if j.status.value in ("failed",
                                                                                               "interrupted")]
        jobs.job_list(store, shown, key=f"robustness-{kind}")

    jobs.live(store, body, key=f"robustness-{kind}")


def _checkpoint_picker(label: str, key: str, simulated: bool, multiple: bool) -> list[str]:
    """Checkpoint paths from the checkpoints folder, those trained on this page's kind of data first."""
    infos = sorted(checkpoints.checkpoint_infos(), key=lambda i: i.simulated != simulated)
    by_path = {str(i.path): i for i in infos}
    names = list(by_path)
    if not names:
        st.info("No trained model yet: train one on the **Jobs** page first.")
        return []

    def show(path: str) -> str:
        return checkpoints.checkpoint_label(by_path[path])

    if multiple:
        st.session_state.setdefault(key, names[:2])
        return list(st.multiselect(label, names, key=key, format_func=show))
    return [str(st.selectbox(label, names, key=key, format_func=show))]


# --------------------------------------------------------------------------- corruptions

def _model_labels(models: Sequence[str], by_model: dict[str, list[ResultRow]]) -> dict[str, str]:
    """The home page's words for a saved model (size, score, date); the recipe in words for one that is gone."""
    infos = {str(i.path): i for i in checkpoints.checkpoint_infos()}
    return {m: checkpoints.checkpoint_label(infos[m]) if m in infos else
            f"{model_name(by_model[m][0])}, seed {by_model[m][0].seed} ({m.rsplit('/', 1)[-1]})" for m in models}


def corruption_table(rows: Sequence[ResultRow], metric: str) -> list[dict[str, Any]]:
    """Per corruption of one model: its settings, the mean over severities, the drop from clean and the worst level."""
    clean = Stat.of(r.metric(metric) for r in rows if r.attack == "none").mean
    table = []
    for name in dict.fromkeys(r.attack for r in rows if r.severity is not None):
        graded = sorted((r for r in rows if r.attack == name and r.severity is not None), key=lambda r: r.severity or 0)
        values = [r.metric(metric) for r in graded]
        scale = ATTACKS.get(name).severity_scale if name in ATTACKS else ()
        worst = min(range(len(values)), key=values.__getitem__)
        mean = Stat.of(values).mean
        table.append({
            "scanner variation": attack_label(name),
            "mean": f"{mean:.0%}",
            "vs unchanged": _points(mean - clean),
            "worst": f"{values[worst]:.0%} (level {graded[worst].severity})",
            "settings, level 1 → 5": f"{scale[0]} → {scale[-1]}" if scale else "",
            "largest pixel change": f"{min(r.test_epsilon for r in graded):.2f} – "
                                    f"{max(r.test_epsilon for r in graded):.2f}",
        })
    graded_all = [r.metric(metric) for r in rows if r.severity is not None]
    if table and graded_all:
        mean = Stat.of(graded_all).mean
        table.append({"scanner variation": "all (as ImageNet-C's mCE)", "mean": f"{mean:.0%}",
                      "vs unchanged": _points(mean - clean), "worst": "", "settings, level 1 → 5": "",
                      "largest pixel change": ""})
    return table


def _points(difference: float) -> str:
    """'-19 points': a difference of percentages said as such (not '-19%', which reads as a relative change)."""
    return "n/a" if math.isnan(difference) else f"{100 * difference:+.0f} points"


def _corruption_form(simulated: bool) -> None:
    paths = _checkpoint_picker("Model to test", "corr_job_ckpt", simulated, multiple=False)
    if not paths:
        return
    row = layout.flow(gap="medium")
    levels = row.multiselect("Severities", list(SEVERITIES), default=list(SEVERITIES), key="corr_job_levels",
                             width=320, help="1 = mild (what two scanners differ by), 5 = severe (a badly set "
                                             "machine or a heavily compressed export)")
    names = {n: attack_label(n) for n in corruption_names()}
    chosen = row.multiselect("Scanner variation", list(names), default=list(names), key="corr_job_names",
                             format_func=lambda n: names[n], width=520)
    st.caption("Each is also measured at the same size as FGSM, PGD and random noise at ε = 2/255 and 8/255, so "
               "that ordinary variation and attacks can be compared size for size. Also from a terminal: "
               "`python -m busadv corruptions CHECKPOINT`.")
    if st.button("Test this model under scanner variation", type="primary", key="corr_job_start",
                 disabled=not (levels and chosen)):
        jobs.submit(jobs.job_store(), "corruptions", {"checkpoint": paths[0], "severities": sorted(levels),
                                                      "corruptions": chosen})


def corruption_section(rows: Sequence[ResultRow]) -> None:
    """Accuracy under each kind of scanner variation by severity, and at equal size beside the attacks."""
    simulated = any(r.simulated for r in rows)
    st.markdown("How the model copes with changes that happen without any attacker: extra speckle, gain and "
                "time-gain-compensation set differently, defocus and motion blur, JPEG compression on export, "
                "a different display dynamic range. Severity 1 is what two machines differ by; 5 is a badly set "
                "machine.")
    graded = [r for r in rows if r.severity is not None]
    models = list(dict.fromkeys(r.checkpoint or r.run for r in graded))
    if not models:
        st.caption("No model has been tested under scanner variation on this data yet.")
        _corruption_form(simulated)
        _follow("corruptions")
        return
    by_model = {m: [r for r in rows if (r.checkpoint or r.run) == m] for m in models}
    pick = layout.flow(gap="medium")
    labels = _model_labels(models, by_model)
    model = str(pick.selectbox("Model", models, key="corr_model", width=640, format_func=lambda m: labels[m]))
    with pick:
        metric = _measure("corr_metric")
    chosen = by_model[model]
    st.plotly_chart(layout.legend_below(plots.corruption_curves(chosen, metric)), key="corr_curves")
    st.caption("Each line is one kind of scanner variation; hover a point for its physical setting (dB, mm, JPEG "
               "quality). Solid black line: the same model on the unchanged test images. Dashed line: what a model "
               "scores by always giving the same answer.")
    st.dataframe(corruption_table(chosen, metric), hide_index=True)
    st.caption("Mean over the five levels and its difference from the unchanged images in percentage points; the "
               "last line averages every kind and level, as ImageNet-C's mean corruption error does (without its "
               "reference model). Largest pixel change: the size of the change in the terms of ε (0 to 1).")
    if any(r.severity is None and r.attack in corruption_names() for r in chosen):
        st.plotly_chart(layout.legend_below(plots.equal_size_bars(chosen, metric)), key="corr_equal")
        st.caption("Size for size: every change scaled so that no pixel moves by more than ε (8/255 is about 3% of "
                   "the grey scale). Plain bars: scanner variation; hatched: attacks; dotted: random noise. An attack "
                   "that hurts far more than scanner variation of the same size shows that the model's weakness lies "
                   "in the directions an attacker picks, not in small changes as such.")
    with st.expander("Test another model under scanner variation"):
        _corruption_form(simulated)
    _follow("corruptions")


# --------------------------------------------------------------------------- transfer

def _run_label(saved: dict[str, Any]) -> str:
    when = dt.datetime.fromtimestamp(float(saved.get("created", 0))).strftime("%Y-%m-%d %H:%M")
    matrix = saved.get("matrix", {})
    return (f"{when} · {attack_label(str(matrix.get('attack')))} ε={format_epsilon(float(matrix.get('epsilon', 0)))}"
            f" · {len(matrix.get('models', []))} models · {saved.get('n', '?')} images")


def _transfer_form(simulated: bool) -> None:
    paths = _checkpoint_picker("Models (two or more)", "transfer_ckpts", simulated, multiple=True)
    offered: dict[str, str] = {a.name: a.label for a in ATTACKS if a.family == ADVERSARIAL and not a.slow}
    row = layout.flow(gap="medium")
    attack = str(row.selectbox("Attack", list(offered), index=list(offered).index("pgd") if "pgd" in offered else 0,
                               key="transfer_attack", format_func=lambda a: offered[a], width=300))
    eps = widgets.epsilon_slider("ε", key="transfer_eps", default=8 / 255, container=row, width=420)
    if 0 < len(paths) < 2:
        st.caption("Choose at least two models: one to compute the attack on, one to test it on.")
    st.caption("Also from a terminal: `python -m busadv transfer A.pt B.pt --attack pgd --epsilon 8/255`.")
    if st.button("Compute the transfer matrix", type="primary", key="transfer_start", disabled=len(paths) < 2):
        jobs.submit(jobs.job_store(), "transfer", {"checkpoints": paths, "attack": attack, "epsilon": eps})


def transfer_section(source: str) -> None:
    """The latest transfer matrices on this data as heatmaps, and a form to compute another."""
    simulated = source == SIMULATED_SOURCE
    st.markdown("An attacker who cannot see the model in use can still compute an attack on a model of their "
                "own. Each row is the model the attack was **computed on**, each column the model it is **tested "
                "on**. The diagonal (dotted boxes) is a model attacked with full knowledge of itself (white-box). "
                "Low numbers off the diagonal mean the attack carries over to models it never saw.")
    found, problems = load_transfers()
    for problem in problems:
        st.warning(f"A transfer file was skipped: {plain(problem)}", icon=":material/warning:")
    found = [(saved, matrix) for saved, matrix in found if saved.get("data_source") == source]
    if found:
        pick = layout.flow(gap="medium")
        files = [saved["file"] for saved, _ in found]
        # Keyed by the newest file: a run that has just finished is shown at once, not the one picked before it.
        chosen = pick.selectbox("Transfer run", files, key=f"transfer_run-{files[0]}", width=520,
                                format_func=lambda f: _run_label(found[files.index(f)][0]))
        index = files.index(str(chosen))
        with pick:
            metric = _measure("transfer_metric")
        saved, matrix = found[index]
        st.markdown("\n".join(f"- **[{k}]** {plain(name)}" for k, name in enumerate(matrix.models, start=1)))
        st.plotly_chart(plots.transfer_heatmap(matrix, metric), key="transfer_heatmap")
        chance = 1 / max(len(matrix.clean[0].classes), 1)
        note = (f"Under each column: the tested model on the unchanged images. Chance balanced accuracy is "
                f"{chance:.0%}. On {matrix.n} test images: {plain(saved.get('test_images', ''))}.")
        if matrix.n < SMALL_SHARED_SET:
            note += (f" Few images: one image moves a cell by about {1 / max(matrix.n, 1):.0%}. Models trained "
                     "with different seeds hold out different images, and only images no model trained on are "
                     "used; train with the same seed (same split) for a larger shared test set.")
        st.caption(note)
    else:
        st.caption("No transfer matrix yet on this data.")
    with st.expander("Compute a transfer matrix", expanded=not found):
        _transfer_form(simulated)
    _follow("transfer")
