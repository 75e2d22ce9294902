"""busadv's Streamlit entry point and home page: `streamlit run app.py`.

Streamlit's classic multipage layout: this file is the home page (served at /) and every file in
pages/ is one more page (pages/1_Perturbation_explorer.py at /Perturbation_explorer, and so on).
No st.navigation here: a request for /Jobs runs pages/2_Jobs.py alone, so each page begins with
ui.page_setup(...), which sets the wide layout and draws the same menu and data label everywhere.
"""

from __future__ import annotations

import streamlit as st

from busadv import ui
from busadv.models import imagenet_weights_available
from busadv.settings import checkpoints_dir

ui.page_setup("Home")

st.title("busadv: how little noise flips a breast-ultrasound diagnosis?")
st.markdown(
    "busadv shows how FGSM adversarial perturbations, pixel changes too small to see, change the diagnosis "
    "(benign, malignant or normal) that a neural network gives a breast-ultrasound image. "
    "It also measures, over repeated training runs, how much accuracy standard and adversarially trained "
    "models keep on perturbed test images.")
ui.dataset_banner()
st.caption("A research and teaching tool: its models are not medical devices and its outputs are not diagnoses.")
links = st.columns(3)
links[0].page_link(ui.EXPLORER_PAGE, label="Perturbation explorer: drag ε on one image", icon=":material/tune:")
links[1].page_link(ui.JOBS_PAGE, label="Jobs: train, evaluate, run experiments", icon=":material/model_training:")
links[2].page_link(ui.RESULTS_PAGE, label="Results: accuracy with error bars", icon=":material/bar_chart:")

st.subheader("Trained models")
infos = ui.checkpoint_infos()
if infos:
    st.dataframe(ui.checkpoint_table(infos), hide_index=True, column_config=ui.CHECKPOINT_COLUMNS)
else:
    st.info("No trained model yet. The Perturbation explorer offers to train a quick one "
            "(about a minute on two CPU cores).")
resnet = ("ResNet50 can start from the ImageNet weights found in torchvision's cache."
          if imagenet_weights_available() else
          "ResNet50 trains **from scratch**: no ImageNet weights are in torchvision's cache and busadv never "
          "downloads them (copy them there, or set TORCH_HOME, to use them).")
st.caption(f"Checkpoints folder: `{checkpoints_dir()}` (BUSADV_CHECKPOINTS moves it). {resnet}")

st.subheader("Jobs")
store = ui.job_store()


def running_jobs() -> None:
    jobs = store.list(limit=50)
    active = [j for j in jobs if j.active]
    if active:
        ui.job_list(store, active, key="home")
    else:
        st.caption("Nothing is running.")
    finished = [j for j in jobs if not j.active][:3]
    if finished:
        st.caption("Latest finished: " + "; ".join(f"job {j.id} ({j.kind}) {j.status}" for j in finished))


ui.live(store, running_jobs, key="home")
