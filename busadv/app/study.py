"""The Study page's pieces: its settings, what is already stored, starting the report job, showing a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
import streamlit.components.v1 as components

from busadv.app import jobs
from busadv.app.checkpoints import training_rates
from busadv.app.dataset import data_setting
from busadv.app.layout import flow, plain
from busadv.attacks import parse_epsilon_list
from busadv.models import MODELS
from busadv.report import stored_reports
from busadv.report.plan import gather
from busadv.report.study import study_plan
from busadv.training import parse_seed_list

LONG_SECONDS = 2 * 3600
VERDICT_BADGES = {"holds": ":green-badge[holds]", "artefact": ":red-badge[artefact]", "mixed": ":orange-badge[mixed]",
                  "not seen": ":gray-badge[not seen]"}


def settings() -> dict[str, Any] | None:
    """The report's settings from the page's widgets; None (after a message) when one is invalid."""
    with st.expander("Settings (the study's own by default)", expanded=False):
        box = flow(gap="medium")
        archs = box.multiselect("Models", MODELS.names(), default=list(MODELS.names()), key="s_archs",
                                format_func=lambda n: MODELS.get(n).label, width=420)
        seeds_text = box.text_input("Seeds", "0-4", key="s_seeds", width=160, help="e.g. 0-4 or 0, 1, 2")
        epochs = box.number_input("Epochs", 1, 200, 10, key="s_epochs", width=140)
        resnet_size = box.number_input("ResNet50 image size", 32, 512, 224, step=8, key="s_resnet_size", width=200,
                                       help="224 is the default; on a CPU, 64 makes ResNet50 runs about 12x faster.")
        aa_text = box.text_input("AutoAttack ε", "8/255, 0.05", key="s_aa", width=200,
                                 help="AutoAttack takes minutes per model; leave empty to skip it.")
        reuse_only = st.toggle("Only reuse stored runs (train nothing)", key="s_reuse_only")
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
                              "image_sizes": {"resnet50": int(resnet_size)} if "resnet50" in archs else {},
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


def status(config: dict[str, Any]) -> None:
    """How much of the study is already in the results store, and roughly how long the rest takes."""
    reused, needed, missing, time_left, seconds = _status(
        tuple(config["archs"]), tuple(config["seeds"]), config["epochs"],
        tuple(sorted(config["image_sizes"].items())), tuple(config["autoattack"]), config.get("data"))
    text = (f"{reused} of {needed} runs are already in the results store with every test they need; the report "
            f"trains or evaluates the other {needed - reused}") + (f": {time_left}" if time_left else "")
    text += "." + (" ResNet50 on a CPU takes long: consider a smaller image size above." if
                   "resnet50" in config["archs"] and needed - reused else "")
    if seconds > LONG_SECONDS:  # a click should not start days of work unannounced
        st.warning(text, icon=":material/schedule:")
    else:
        st.caption(text)
    if missing:
        with st.expander(f"What is missing ({len(missing)})"):
            st.text("\n".join(missing[:200]))


def start(config: dict[str, Any]) -> None:
    jobs.submit(jobs.job_store(), "report", config)


def latest() -> dict[str, Any] | None:
    reports = stored_reports()
    return reports[0] if reports else None


def findings(report: dict[str, Any]) -> None:
    """The verdicts, natively (the full report with its figures is below)."""
    for finding in report.get("findings", []):
        trap = f" — *{plain(finding['trap'])}*" if finding.get("trap") else ""
        with st.container(border=True):
            st.markdown(f"{VERDICT_BADGES.get(finding['verdict'], plain(finding['verdict']))} "
                        f"**{plain(finding['claim'])}**{trap}")
            for line in finding.get("evidence", []):
                st.caption(plain(line))


def full_report(report: dict[str, Any]) -> None:
    path = Path(report["html"])
    text = path.read_text(encoding="utf-8")
    st.download_button("Download the report (one HTML file, works offline, prints well)", data=text,
                       file_name=path.name, mime="text/html", key="report_download", icon=":material/download:")
    settings_text = ", ".join(f"{k} {v}" for k, v in report.get("settings", {}).items())
    st.caption(f"{plain(path.name)} · {plain(report.get('data_source', ''))} · {plain(settings_text)} · runs reused "
               f"{report.get('reused', 0)}, evaluated {report.get('evaluated', 0)}, trained {report.get('trained', 0)}")
    if st.toggle("Show the whole report here", key="report_inline"):
        components.html(text, height=1400, scrolling=True)
