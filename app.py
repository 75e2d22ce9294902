"""busadv's Streamlit entry point and home page: `streamlit run app.py`.

Streamlit's classic multipage layout: this file is the home page (served at /) and every file in
pages/ is one more page (pages/1_Perturbation_explorer.py at /Perturbation_explorer, and so on).
No st.navigation here: a request for /Jobs runs pages/2_Jobs.py alone, so each page begins with
layout.page_setup(...), which sets the wide layout and draws the same menu and data label everywhere.
"""

from __future__ import annotations

import streamlit as st

from busadv.app import checkpoints, dataset, first_start, jobs, layout
from busadv.settings import checkpoints_dir

layout.page_setup("Home")

st.title("busadv: how little noise flips a breast-ultrasound diagnosis?")
st.markdown(
    "busadv shows how adversarial perturbations, pixel changes too small to see, change the diagnosis "
    "(benign, malignant or normal) that a neural network gives a breast-ultrasound image. "
    "It also measures, over repeated training runs, how well standard and adversarially trained "
    "models still tell the classes apart on perturbed test images.")
dataset.dataset_banner()
st.caption("A research and teaching tool: its models are not medical devices and its outputs are not diagnoses.")
with layout.flow(gap="medium"):
    st.page_link(layout.EXPLORER_PAGE, label="Perturbation explorer: drag ε on one image", icon=":material/tune:")
    st.page_link(layout.JOBS_PAGE, label="Jobs: train, evaluate, run experiments", icon=":material/model_training:")
    st.page_link(layout.RESULTS_PAGE, label="Results: measures with error bars", icon=":material/bar_chart:")

infos = checkpoints.checkpoint_infos()
if infos:
    first_start.open_explorer_when_ready()  # a fresh install's first visit: straight to the demonstration
st.subheader("Trained models")
if infos:
    st.dataframe(checkpoints.checkpoint_table(infos), hide_index=True, column_config=checkpoints.CHECKPOINT_COLUMNS)
    st.caption("Measured on each model's own held-out test images. Balanced accuracy is the mean of the three "
               "per-class recalls, so a model that answers one class for everything scores 33%, whatever the "
               "class sizes; sensitivity is the share of malignant images it calls malignant.")
    collapsed = [info for info in infos if checkpoints.is_collapsed(info)]
    if collapsed:
        st.warning(f"**{len(collapsed)} of these models answer one class for (almost) every clean test image** "
                   "(⚠ collapsed): their accuracy is that class's share of the images, not skill. Train them "
                   "longer or with a smaller ε before reading their results.", icon=":material/warning:")
else:
    first_start.home_notice()
st.caption(f"Checkpoints folder: `{checkpoints_dir()}` (BUSADV_CHECKPOINTS moves it). {checkpoints.resnet_note()}")

st.subheader("Jobs")
store = jobs.job_store()


def running_jobs() -> None:
    listed = store.list(limit=50)
    active = [j for j in listed if j.active]
    if active:
        jobs.job_list(store, active, key="home")
    else:
        st.caption("Nothing is running.")
    finished = [j for j in listed if not j.active][:3]
    if finished:
        st.caption("Latest finished: " + "; ".join(f"job {j.id} ({j.kind}) {j.status.value}" for j in finished))


jobs.live(store, running_jobs, key="home")
