"""Study: the seed study's protocol run (or reused) on the active data, and each of its findings judged."""

from __future__ import annotations

import streamlit as st

from busadv.app import dataset, jobs, layout, study

layout.page_setup("Study")
st.title("The study, answered")
st.markdown(
    "busadv starts from a study that trained a small CNN and ResNet50 on BUSI, attacked the test images with "
    "FGSM at ε = 0.05, 0.2 and 0.5, trained models on FGSM-perturbed images, and compared accuracy on clean and "
    "perturbed test sets. This page runs that protocol (five seeds, online and offline FGSM training), reusing "
    "every run already in the results store, and adds what the study lacked: PGD and AutoAttack at the same and "
    "at small ε, balanced accuracy and malignant sensitivity, a split that keeps near-duplicate scans apart, and "
    "busadv's own FGSM recipe. Each of the study's findings then gets a verdict computed from the data.")
dataset.dataset_banner(compact=True)
config = study.settings()
if config is not None:
    st.caption(f"Planned: {layout.plain(study.settings_text(config))}; the study's recipes (standard, FGSM online and "
               "offline at ε = 0.05, 0.2 and 0.5, busadv's recipe, the random split) for each.")
    seconds = study.status(config)
    if study.start_button(seconds):
        study.start(config)

store = jobs.job_store()


def report_jobs() -> None:
    running = [j for j in store.list(limit=50) if j.kind == "report" and j.active]
    if running:
        jobs.job_list(store, running, key="study")


jobs.live(store, report_jobs, key="study")

report = study.latest()
if report is None:
    st.info("No study report yet. Start one above (or `python -m busadv report --preset study --out study.html`).")
    st.stop()
st.subheader("The study's findings, judged from the data")
study.findings(report, study.collapsed_behind(report))
st.subheader("The full report")
study.full_report(report)
