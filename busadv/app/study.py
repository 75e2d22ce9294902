"""The Study page's pieces: its settings, what is already stored, starting the report job, showing a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st
import streamlit.components.v1 as components

from busadv.app import jobs
from busadv.app.checkpoints import training_rates
from busadv.app.dataset import data_setting
from busadv.app.layout import flow, plain
from busadv.attacks import format_epsilon_list, parse_epsilon_list
from busadv.models import MODELS
from busadv.progress import format_seconds
from busadv.report import stored_reports
from busadv.report.plan import gather
from busadv.report.study import study_plan
from busadv.training import parse_seed_list

LONG_SECONDS = 30 * 60  # beyond this a click must not start the work as the page's main action
VERDICT_BADGES = {"holds": ":green-badge[holds]", "artefact": ":red-badge[artefact]", "mixed": ":orange-badge[mixed]",
                  "not seen": ":gray-badge[not seen]"}
# The page's default: the study's own grid (its recipes, its epsilons, its 10 epochs) for SimpleCNN and one seed,
# which takes minutes on two CPU cores: on the phantoms at 64 px (simulated images have no native size; measured
# about 4 min), on BUSI at SimpleCNN's own 128 px (the smallest faithful grid; its estimate is shown). The study's
# full settings (both models, five seeds, AutoAttack) take days on a CPU and are one click away.
QUICK = {"s_archs": ["simplecnn"], "s_seeds": "0", "s_epochs": 10, "s_simplecnn_size": 128, "s_resnet_size": 64,
         "s_aa": ""}
QUICK_PHANTOMS = {**QUICK, "s_simplecnn_size": 64}
FULL = {"s_archs": list(MODELS.names()), "s_seeds": "0-4", "s_epochs": 10, "s_simplecnn_size": 128,
        "s_resnet_size": 224, "s_aa": "8/255, 0.05"}


def settings() -> dict[str, Any] | None:
    """The report's settings from the page's widgets; None (after a message) when one is invalid."""
    for key, value in (QUICK if data_setting() else QUICK_PHANTOMS).items():
        st.session_state.setdefault(key, value)  # defaults in Session State, so "the full study" can set them
    with st.expander("Settings (the study's own grid: SimpleCNN, one seed, by default)", expanded=False):
        box = flow(gap="medium")
        archs = box.multiselect("Models", MODELS.names(), key="s_archs",
                                format_func=lambda n: MODELS.get(n).label, width=420)
        seeds_text = box.text_input("Seeds", key="s_seeds", width=160, help="e.g. 0-4 or 0, 1, 2")
        epochs = box.number_input("Epochs", 1, 200, key="s_epochs", width=140)
        simple_size = box.number_input("SimpleCNN image size", 32, 512, step=8, key="s_simplecnn_size", width=200,
                                       help="128 is SimpleCNN's own size; 64 trains about 4x faster.")
        resnet_size = box.number_input("ResNet50 image size", 32, 512, step=8, key="s_resnet_size", width=200,
                                       help="224 is ResNet50's usual size; on a CPU, 64 makes its runs about 12x "
                                            "faster.")
        aa_text = box.text_input("AutoAttack ε", key="s_aa", width=200,
                                 help="AutoAttack takes minutes per model; empty skips it (e.g. 8/255, 0.05).")
        reuse_only = st.toggle("Only reuse stored runs (train nothing)", key="s_reuse_only")
        st.button("The study's full settings (both models, five seeds, AutoAttack: days on a CPU)",
                  key="s_full", on_click=lambda: st.session_state.update(FULL))
    try:
        seeds = parse_seed_list(seeds_text)
        autoattack = parse_epsilon_list(aa_text, "AutoAttack ε")
    except ValueError as exc:
        st.error(plain(exc))
        return None
    if not archs or not seeds:
        st.error("Choose at least one model and one seed.")
        return None
    config: dict[str, Any] = {"preset": "study", "archs": archs, "seeds": seeds, "epochs": int(epochs),
                              "image_sizes": {name: int(size) for name, size in (("simplecnn", simple_size),
                                                                                 ("resnet50", resnet_size))
                                              if name in archs and int(size) != MODELS.get(name).default_image_size},
                              "autoattack": autoattack, "run": not reuse_only}
    if data_setting():
        config["data"] = data_setting()
    return config


@st.cache_data(max_entries=8, show_spinner="Looking up stored runs…", ttl=300)
def _status(archs: tuple[str, ...], seeds: tuple[int, ...], epochs: int, sizes: tuple[tuple[str, int], ...],
            autoattack: tuple[float, ...], data: str | None) -> tuple[int, int, list[str], str, float]:
    plan = study_plan(data, archs, seeds, epochs, dict(sizes), autoattack)
    _, counts, missing = gather(plan, run=False)
    seconds, text = counts.time_left(*training_rates(), plan.eval_pgd_steps)
    return counts.reused, len(plan.runs()), missing, text, seconds


def status(config: dict[str, Any]) -> float:
    """Say how much of the study is already stored and roughly how long the rest takes; the seconds left."""
    reused, needed, missing, time_left, seconds = _status(
        tuple(config["archs"]), tuple(config["seeds"]), config["epochs"],
        tuple(sorted(config["image_sizes"].items())), tuple(config["autoattack"]), config.get("data"))
    if not config.get("run", True):
        seconds = 0.0  # reusing only: nothing is trained
    text = (f"{reused} of {needed} runs are already in the results store with every test they need; the report "
            f"trains or evaluates the other {needed - reused}") + (f": {time_left}" if time_left else "")
    text += "." + (" ResNet50 on a CPU takes long: consider a smaller image size above." if
                   "resnet50" in config["archs"] and needed - reused else "")
    if seconds > LONG_SECONDS:  # a click should not start hours or days of work unannounced
        st.warning(text, icon=":material/schedule:")
    else:
        st.caption(text)
    if missing:
        with st.expander(f"What is missing ({len(missing)})"):
            st.text("\n".join(missing[:200]))
    return seconds


def start_button(seconds: float) -> bool:
    """The start button: the page's primary action only when the work takes minutes, not hours."""
    if seconds > LONG_SECONDS:
        return st.button(f"Start anyway ({format_seconds(seconds)} of work)", key="study_start",
                         help="A background job: it survives closing this tab. Runs already stored are reused.")
    return st.button("Run or update the study report", type="primary", key="study_start",
                     help="A background job: it survives closing this tab. Runs already stored are reused.")


def start(config: dict[str, Any]) -> None:
    jobs.submit(jobs.job_store(), "report", config)


def latest() -> dict[str, Any] | None:
    reports = stored_reports()
    return reports[0] if reports else None


Collapse = dict[str, dict[str, tuple[int, int]]]  # model -> training mode -> (runs collapsed on clean images, runs)


def collapsed_behind(report: dict[str, Any]) -> Collapse:
    """Per model and training mode: runs that collapsed on clean test images, among the stored runs the
    report's settings draw on (active data).

    Why: a verdict on 1-epoch models that all answer one class says nothing about robustness; the page
    must not show it without saying so, whatever the report itself wrote.
    """
    settings = report.get("settings") if isinstance(report.get("settings"), dict) else {}
    try:
        key = json.dumps(settings, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return {}
    return _collapsed(key, data_setting())


@st.cache_data(max_entries=8, show_spinner="Checking the runs behind the verdicts…", ttl=300)
def _collapsed(settings_json: str, data: str | None) -> Collapse:
    settings = json.loads(settings_json)
    try:
        archs = tuple(str(a) for a in settings.get("archs") or [])
        plan = study_plan(data, archs, tuple(int(s) for s in settings.get("seeds") or []),
                          int(settings.get("epochs", 10)), {str(k): int(v) for k, v in
                                                            dict(settings.get("image_sizes") or {}).items()},
                          tuple(float(e) for e in settings.get("autoattack") or []))
        rows, _, _ = gather(plan, run=False)
    except (ValueError, TypeError, KeyError, AttributeError, OSError):
        return {}
    out: Collapse = {}
    for row in rows:
        if row.attack != "none":
            continue
        runs = out.setdefault(row.arch, {})
        collapsed, total = runs.get(row.train_mode, (0, 0))
        runs[row.train_mode] = (collapsed + bool(row.collapsed), total + 1)
    return out


# Which runs each finding of busadv.report.findings reads, told by its claim's words.
CLAIM_MODES = (("(online)", ("standard", "fgsm-study")), ("(offline)", ("standard", "fgsm-offline")),
               ("FGSM-trained", ("fgsm-study",)), ("split", ("standard",)), ("standard", ("standard",)))


def caveat(claim: str, collapse: Collapse) -> str | None:
    """The collapse caveat a verdict needs, or None when no run behind it collapsed on clean images."""
    for arch, by_mode in collapse.items():
        if f" {arch}" not in f" {claim}".replace("'", " "):
            continue
        modes = next((m for word, m in CLAIM_MODES if word in claim), tuple(by_mode))
        collapsed = sum(by_mode.get(m, (0, 0))[0] for m in modes)
        total = sum(by_mode.get(m, (0, 0))[1] for m in modes)
        if collapsed:
            return (f":orange-badge[caveat] {collapsed} of the {total} {plain(arch)} runs behind this collapsed (they "
                    "answer one class for almost every clean test image), so this verdict may describe collapse "
                    "rather than robustness. Train longer or check the Results page.")
    return None


def findings(report: dict[str, Any], collapse: Collapse | None = None) -> None:
    """The verdicts, natively (the full report with its figures is below), each with its collapse caveat."""
    for finding in report.get("findings", []):
        if not isinstance(finding, dict):
            continue
        trap = f" — *{plain(finding['trap'])}*" if finding.get("trap") else ""
        verdict = str(finding.get("verdict", ""))
        claim = str(finding.get("claim", ""))
        with st.container(border=True):
            st.markdown(f"{VERDICT_BADGES.get(verdict, plain(verdict))} **{plain(claim)}**{trap}")
            note = caveat(claim, collapse or {}) if verdict != "not seen" else None
            if note:
                st.markdown(note)
            for line in finding.get("evidence", []):
                st.caption(plain(line))


def settings_text(settings: Any) -> str:
    """The report's settings in words ('models simplecnn · seeds 0, 1 · 10 epochs · AutoAttack at ...'), no reprs."""
    if not isinstance(settings, dict):
        return ""
    parts = []
    archs = settings.get("archs")
    if archs:
        parts.append("models " + ", ".join(str(a) for a in archs))
    seeds = settings.get("seeds")
    if seeds:
        parts.append(("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(s) for s in seeds))
    if settings.get("epochs") is not None:
        parts.append(f"{settings['epochs']} epochs")
    sizes = settings.get("image_sizes") or {}
    if isinstance(sizes, dict) and sizes:
        parts.append(", ".join(f"{k} at {v} px" for k, v in sizes.items()))
    aa = settings.get("autoattack")
    try:
        parts.append(f"AutoAttack at ε {format_epsilon_list([float(e) for e in aa])}" if aa else "no AutoAttack")
    except (TypeError, ValueError):
        parts.append("AutoAttack: unreadable setting")
    return " · ".join(parts)


def full_report(report: dict[str, Any]) -> None:
    path = Path(str(report.get("html", "")))
    text = path.read_text(encoding="utf-8")
    st.download_button("Download the report (one HTML file, works offline, prints well)", data=text,
                       file_name=path.name, mime="text/html", key="report_download", icon=":material/download:")
    st.caption(f"{plain(path.name)} · {plain(report.get('data_source', ''))} · "
               f"{plain(settings_text(report.get('settings')))} · runs reused {report.get('reused', 0)}, "
               f"evaluated {report.get('evaluated', 0)}, trained {report.get('trained', 0)}")
    if st.toggle("Show the whole report here", key="report_inline"):
        components.html(text, height=1400, scrolling=True)
