"""busadv's Streamlit entry point: `streamlit run app.py`.

It names the pages (st.navigation), labels the active data in every page's sidebar and draws the
home page: what the tool shows, which data, which trained models and which jobs exist.

The pages live in app_pages/, not pages/: while a folder named pages/ exists, Streamlit 1.67 starts a
fresh server in its older file-based navigation, so a first request straight to /explorer would run
that page without this script (no wide layout, no data label, a different menu).
"""

from __future__ import annotations

import streamlit as st

from busadv import ui

st.set_page_config(page_title="busadv — adversarial ultrasound", page_icon=":material/biotech:", layout="wide")


def home() -> None:
    """What the tool is for, which data is active, which models exist and what is running."""
    st.title("busadv: how little noise flips a breast-ultrasound diagnosis?")
    st.markdown(
        "busadv shows how FGSM adversarial perturbations, pixel changes too small to see, change the diagnosis "
        "(benign, malignant or normal) that a neural network gives a breast-ultrasound image. "
        "It also measures, over repeated training runs, how much accuracy standard and adversarially trained "
        "models keep on perturbed test images.")
    ui.dataset_banner()
    st.caption("A research and teaching tool: its models are not medical devices and its outputs are not diagnoses.")
    links = st.columns(3)
    links[0].page_link(EXPLORER, label="Perturbation explorer: drag ε on one image", icon=":material/tune:")
    links[1].page_link(JOBS, label="Jobs: train, evaluate, run experiments", icon=":material/model_training:")
    links[2].page_link(RESULTS, label="Results: accuracy with error bars", icon=":material/bar_chart:")

    st.subheader("Trained models")
    infos = ui.checkpoint_infos()
    if infos:
        st.dataframe(ui.checkpoint_table(infos), hide_index=True,
                     column_config={"clean test accuracy": st.column_config.NumberColumn(format="percent")})
    else:
        st.info("No trained model yet. The Perturbation explorer offers to train a quick one "
                "(about a minute on two CPU cores).")
    from busadv.models import imagenet_weights_available
    from busadv.settings import checkpoints_dir

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


HOME = st.Page(home, title="Home", icon=":material/home:", default=True, url_path="home")
EXPLORER = st.Page("app_pages/explorer.py", title="Perturbation explorer", icon=":material/tune:", url_path="explorer")
JOBS = st.Page("app_pages/jobs.py", title="Jobs", icon=":material/model_training:", url_path="jobs")
RESULTS = st.Page("app_pages/results.py", title="Results", icon=":material/bar_chart:", url_path="results")

page = st.navigation([HOME, EXPLORER, JOBS, RESULTS])
ui.sidebar_dataset_label()
page.run()
