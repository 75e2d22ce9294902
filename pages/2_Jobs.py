"""Jobs: start training, evaluation and experiment runs in background workers, and follow them live.

Jobs run in worker processes (busadv.jobs) with their state in SQLite, so they survive page reloads,
several tabs and a restart of `streamlit run`.
"""

from __future__ import annotations

import streamlit as st

from busadv import plots, ui
from busadv.attacks import Attack, format_epsilon
from busadv.experiments import ExperimentConfig, estimate_seconds, study_preset
from busadv.models import DEFAULT_IMAGE_SIZE, Arch, imagenet_weights_available
from busadv.training import TrainConfig

ui.page_setup("Jobs")
st.title("Jobs")
facts = ui.dataset_banner(compact=True)
store = ui.job_store()

ARCH_NAMES = {"simplecnn": "SimpleCNN (the study's small CNN)", "resnet50": "ResNet50"}
MODE_NAMES = {"standard": "Standard training", "fgsm": "FGSM adversarial training",
              "pgd": "PGD adversarial training (stronger, ~8x slower)"}
ATTACKS = [Attack.FGSM.value, Attack.FGSM_PRED.value, Attack.PGD.value, Attack.NOISE.value]
DEFAULT_TEST_EPS = "2/255, 8/255, 0.05, 0.2, 0.5"
resnet_note = ("ResNet50 starts from ImageNet weights only if you tick the box below (they are in torchvision's cache)."
               if imagenet_weights_available() else
               "ResNet50 trains **from scratch** here: no ImageNet weights are in torchvision's cache and busadv never "
               "downloads them. On CPU it is slow (about 3 images/s at 224 px: a 10-epoch BUSI run takes over half an hour).")


def submit(kind: str, config: dict) -> None:
    job_id = store.submit(kind, config)
    st.toast(f"Job {job_id} queued", icon=":material/check_circle:")


train_tab, eval_tab, exp_tab = st.tabs(["Train a model", "Evaluate a checkpoint", "Run an experiment (grid, seeds)"])

# ------------------------------------------------------------------ train
with train_tab:
    c = st.columns(3)
    arch = c[0].selectbox("Model", list(ARCH_NAMES), format_func=ARCH_NAMES.get, key="t_arch")
    mode = c[1].selectbox("Training", list(MODE_NAMES), format_func=MODE_NAMES.get, key="t_mode")
    with c[2]:
        train_eps = ui.epsilon_slider("Training ε", key="t_eps", default=8 / 255, disabled=mode == "standard",
                                      help="Standard training uses no ε.")
    c = st.columns(4)
    epochs = c[0].number_input("Epochs", 1, 500, 10, key="t_epochs")
    batch_size = c[1].number_input("Batch size", 1, 1024, 32, key="t_batch")
    seed = c[2].number_input("Seed", 0, 10**6, 0, key="t_seed")
    adv_labels = c[3].selectbox("FGSM labels", ["true", "predicted"], key="t_labels", disabled=mode == "standard",
                                help="'predicted' avoids label leaking (Kurakin et al. 2016).")
    test_eps = ui.epsilon_list_input("Test ε (evaluated on the held-out images after training)", DEFAULT_TEST_EPS,
                                     key="t_test_eps")
    test_attacks = st.multiselect("Test attacks", ATTACKS, default=["fgsm"], key="t_attacks",
                                  format_func=lambda a: Attack(a).label)
    with st.expander("Advanced"):
        a = st.columns(4)
        image_size = a[0].number_input("Image size (px, square)", 8, 512, DEFAULT_IMAGE_SIZE[Arch(arch)], step=8,
                                       key=f"t_size_{arch}", help="SimpleCNN needs a multiple of 8.")
        lr = a[1].number_input("Learning rate (Adam)", 1e-6, 1.0, 1e-3, format="%.5f", key="t_lr")
        random_start = a[2].checkbox("FGSM random start (Wong et al. 2020)", key="t_rs", disabled=mode != "fgsm")
        pretrained = a[3].checkbox("ImageNet weights", key="t_pre",
                                   disabled=arch != "resnet50" or not imagenet_weights_available(),
                                   help="Only when the weights are already in torchvision's cache.")
    if arch == "resnet50":
        st.caption(resnet_note)
    config = {"arch": arch, "mode": mode, "epsilon": float(train_eps) if mode != "standard" else 0.0,
              "epochs": int(epochs), "batch_size": int(batch_size), "seed": int(seed), "image_size": int(image_size),
              "lr": float(lr), "adv_labels": adv_labels, "random_start": bool(random_start),
              "pretrained": bool(pretrained)}
    try:
        TrainConfig.from_dict(config)
        problem = None if test_eps is not None and test_attacks else "Choose at least one test attack and ε."
    except ValueError as exc:
        problem = str(exc)
    if problem:
        st.error(problem)
    if st.button("Start training", type="primary", disabled=problem is not None, key="t_start"):
        submit("train", dict(config, test_epsilons=test_eps, test_attacks=test_attacks))

# ------------------------------------------------------------------ evaluate
with eval_tab:
    infos = ui.checkpoint_infos()
    if not infos:
        st.info("No checkpoint yet: train a model first.")
    else:
        by_name = {i.name: i for i in infos}
        name = st.selectbox("Checkpoint", list(by_name), format_func=lambda n: ui.checkpoint_label(by_name[n]),
                            key="e_ckpt")
        attacks = st.multiselect("Attacks", ATTACKS, default=["fgsm", "pgd"], key="e_attacks",
                                 format_func=lambda a: Attack(a).label,
                                 help="Report PGD beside FGSM: FGSM is weak, and PGD above FGSM means masked gradients.")
        eps_list = ui.epsilon_list_input("Test ε", DEFAULT_TEST_EPS, key="e_eps")
        c = st.columns(3)
        pgd_steps = c[0].number_input("PGD steps", 1, 200, 10, key="e_steps")
        e_seed = c[1].number_input("Seed (noise, PGD start)", 0, 10**6, 0, key="e_seed")
        st.caption("The checkpoint's own held-out images are used when the active data is what it was trained on; "
                   "otherwise every image of the active data.")
        ok = bool(attacks) and eps_list is not None
        if st.button("Start evaluation", type="primary", disabled=not ok, key="e_start"):
            submit("evaluate", {"checkpoint": str(by_name[name].path), "attacks": attacks, "epsilons": eps_list,
                                "pgd_steps": int(pgd_steps), "seed": int(e_seed)})

# ------------------------------------------------------------------ experiment
with exp_tab:
    def fill_study() -> None:
        preset = study_preset()
        st.session_state.update({
            "x_archs": list(preset.archs), "x_modes": list(preset.modes),
            "x_train_eps": ", ".join(f"{e:g}" for e in preset.train_epsilons),
            "x_seeds": ", ".join(str(s) for s in preset.seeds), "x_attacks": list(preset.test_attacks),
            "x_test_eps": ", ".join(f"{e:g}" for e in preset.test_epsilons), "x_epochs": preset.epochs,
            "x_batch": preset.batch_size, "x_name": preset.name, "x_labels": preset.adv_labels})

    st.button("Fill in the study's settings", on_click=fill_study, key="x_preset",
              help="SimpleCNN and ResNet50, standard and FGSM training at ε = 0.05, 0.2, 0.5, five seeds, "
                   "10 epochs, batch 32, tested clean and under FGSM at the same ε.")
    for k, v in {"x_archs": ["simplecnn"], "x_modes": ["standard", "fgsm"], "x_seeds": "0, 1, 2", "x_epochs": 10,
                 "x_batch": 32, "x_labels": "true", "x_attacks": ["fgsm"], "x_name": "experiment"}.items():
        st.session_state.setdefault(k, v)  # widget defaults live in Session State so the preset can set them
    c = st.columns(2)
    archs = c[0].multiselect("Models", list(ARCH_NAMES), key="x_archs", format_func=ARCH_NAMES.get)
    modes = c[1].multiselect("Training modes", list(MODE_NAMES), key="x_modes", format_func=MODE_NAMES.get)
    c = st.columns(2)
    with c[0]:
        x_train_eps = ui.epsilon_list_input("Training ε (adversarial modes)", "0.05, 0.2, 0.5", key="x_train_eps")
    with c[1]:
        x_test_eps = ui.epsilon_list_input("Test ε", "0.05, 0.2, 0.5", key="x_test_eps")
    c = st.columns(4)
    seeds_text = c[0].text_input("Seeds", key="x_seeds", help="e.g. 0, 1, 2 or 0-4")
    x_epochs = c[1].number_input("Epochs", 1, 500, key="x_epochs")
    x_batch = c[2].number_input("Batch size", 1, 1024, key="x_batch")
    x_labels = c[3].selectbox("FGSM labels", ["true", "predicted"], key="x_labels",
                              help="'predicted' avoids label leaking (Kurakin et al. 2016).")
    x_attacks = st.multiselect("Test attacks", ATTACKS, key="x_attacks", format_func=lambda a: Attack(a).label)
    with st.expander("Advanced"):
        a = st.columns(4)
        size_cnn = a[0].number_input("SimpleCNN image size", 8, 512, 128, step=8, key="x_size_cnn")
        size_rn = a[1].number_input("ResNet50 image size", 32, 512, 224, step=8, key="x_size_rn")
        x_name = a[2].text_input("Name", key="x_name")
        save = a[3].checkbox("Save every model as a checkpoint", key="x_save")
    if "resnet50" in archs:
        st.caption(resnet_note)
    problem = None
    try:
        seeds = ui.parse_int_list(seeds_text)
    except ValueError:
        seeds, problem = [], f"Seeds must be whole numbers like '0, 1, 2' or '0-4', not {seeds_text!r}."
    experiment = None
    if problem is None and x_train_eps is not None and x_test_eps is not None:
        try:
            experiment = ExperimentConfig(
                archs=archs, modes=modes, train_epsilons=x_train_eps, seeds=seeds, test_attacks=x_attacks,
                test_epsilons=x_test_eps, epochs=int(x_epochs), batch_size=int(x_batch), adv_labels=x_labels,
                image_sizes={"simplecnn": int(size_cnn), "resnet50": int(size_rn)}, save_checkpoints=bool(save),
                name=x_name.strip() or "experiment")
            if not x_attacks:
                problem = "Choose at least one test attack."
        except ValueError as exc:
            problem = str(exc)
    if problem:
        st.error(problem)
    if experiment is not None:
        runs = experiment.runs()
        n_train = int(0.8 * facts["images"]) if facts["images"] else 0
        measured, here = ui.training_rates()  # images/s at the default sizes; time grows with the pixel count
        rates = {"simplecnn": measured["simplecnn"] * (DEFAULT_IMAGE_SIZE[Arch.SIMPLECNN] / int(size_cnn)) ** 2,
                 "resnet50": measured["resnet50"] * (DEFAULT_IMAGE_SIZE[Arch.RESNET50] / int(size_rn)) ** 2}
        seconds = estimate_seconds(experiment, rates, n_train) if n_train else None
        speed = ("at the training speed this machine's saved models measured" if here else
                 "at the design notes' speed for two CPU cores (a GPU is much faster)")
        st.caption(f"{len(runs)} training runs, each tested clean and at "
                   f"{', '.join(format_epsilon(e) for e in experiment.test_epsilons)}"
                   + (f"; roughly {ui.format_seconds(seconds)} {speed}." if seconds else "."))
    if st.button("Start experiment", type="primary", disabled=experiment is None or problem is not None, key="x_start"):
        submit("experiment", experiment.to_dict())

# ------------------------------------------------------------------ the job list
st.subheader("Jobs")


def show_jobs() -> None:
    jobs = store.list(limit=50)
    if not jobs:
        st.caption("No jobs yet.")
        return
    active = [j for j in jobs if j.active]
    ui.job_list(store, active + [j for j in jobs if not j.active], key="jobs", curves=True)


ui.live(store, show_jobs, key="jobs")

with st.expander("Training curves of a finished training job"):
    trained = {j.id: j for j in store.list(limit=100) if j.status == "done" and (j.result or {}).get("history")}
    if trained:
        pick = trained[st.selectbox("Job", list(trained), key="curve_job",
                                    format_func=lambda i: f"job {i}: {ui.describe_job(trained[i])}")]
        st.plotly_chart(plots.training_curves(pick.result["history"], title=f"Job {pick.id}: training curves"),
                        key="curves")
    else:
        st.caption("None yet.")
