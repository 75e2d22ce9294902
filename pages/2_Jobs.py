"""Jobs: start training, evaluation and experiment runs in background workers, and follow them live.

Jobs run in worker processes (busadv.jobs) with their state in SQLite, so they survive page reloads,
several tabs and a restart of `streamlit run`.
"""

from __future__ import annotations

import streamlit as st

from busadv import plots
from busadv.app import checkpoints, dataset, forms, jobs, layout, recipes, widgets
from busadv.data import DEFAULT_SPLIT_POLICY
from busadv.models import MODELS, imagenet_weights_available
from busadv.training import MODES

layout.page_setup("Jobs")
st.title("Jobs")
facts = dataset.dataset_banner(compact=True)
store = jobs.job_store()

train_tab, eval_tab, exp_tab = st.tabs(["Train a model", "Evaluate a checkpoint", "Run an experiment (grid, seeds)"])

# Widgets sit in rows that wrap (layout.flow) at fixed widths: on a narrow screen a row moves down
# instead of cutting every label to a few letters.
# ------------------------------------------------------------------ train
with train_tab:
    row = layout.flow(gap="medium")
    arch = widgets.model_select("t_arch", container=row, width=280)
    mode = widgets.mode_select("t_mode", container=row, width=320)
    adversarial = MODES.get(mode).adversarial
    train_eps = widgets.epsilon_slider("Training ε", key="t_eps", default=8 / 255, disabled=not adversarial,
                                       container=row, width=300,
                                       help="The largest pixel change of the training perturbations. "
                                            "Standard training uses none.")
    recipe = recipes.recipe_radio("t_", help="The study preset on the experiment tab always uses the study's recipe.")
    row = layout.flow(gap="medium")
    epochs = row.number_input("Epochs", 1, 500, key="t_epochs", width=150)
    batch_size = row.number_input("Batch size", 1, 1024, 32, key="t_batch", width=150)
    seed = row.number_input("Seed", 0, 10**6, 0, key="t_seed", width=150)
    adv_labels = widgets.labels_select(mode, key="t_labels", container=row, width=240)
    test_eps = widgets.epsilon_list_input("Test ε (evaluated on the held-out images after training)",
                                          forms.DEFAULT_TEST_EPS, key="t_test_eps")
    test_attacks = widgets.attack_multiselect("Test attacks", key="t_attacks")
    spec = MODELS.get(arch)
    with st.expander("Advanced"):
        row = layout.flow(gap="medium")
        image_size = row.number_input("Image size (px, square)", spec.min_image_size, spec.max_image_size,
                                      spec.default_image_size, step=spec.size_multiple, key=f"t_size_{arch}",
                                      help=f"{spec.label} needs a multiple of {spec.size_multiple}.", width=200)
        lr = row.number_input("Learning rate (peak of the schedule)", 1e-6, 1.0, format="%.5f", key="t_lr",
                              width=200)
        random_start = widgets.random_start_select(mode, key="t_rs", container=row, width=200)
        class_balance = widgets.class_balance_select(mode, key="t_balance", container=row, width=380,
                                                     recipe_value=recipes.recipe_settings(recipe)["class_balance"])
        split_policy = widgets.split_policy_select("t_split", container=row, width=420)
        eval_steps = row.number_input("PGD steps when testing", 1, 200, 10, key="t_eval_steps", width=200)
        levers = widgets.recipe_levers("t_", recipes.recipe_settings(recipe), container=row)  # and the epoch kept
        critical_weight = widgets.critical_weight_input("t_cw", container=row, width=200)
        pretrained = st.checkbox("Start from ImageNet weights", key="t_pre",
                                 disabled=spec.pretrained_available is None or not imagenet_weights_available(),
                                 help="Only when the weights are already in torchvision's cache.")
    if spec.pretrained_available is not None:
        st.caption(checkpoints.resnet_note())
    config, problem = forms.train_config(
        {"arch": arch, "mode": mode, "epsilon": float(train_eps) if adversarial else 0.0, "epochs": int(epochs),
         "batch_size": int(batch_size), "seed": int(seed), "image_size": int(image_size), "lr": float(lr),
         "adv_labels": adv_labels, "random_start": random_start, "class_balance": class_balance,
         "split_policy": split_policy, "pretrained": bool(pretrained), "critical_weight": critical_weight,
         **levers}, test_eps, test_attacks, recipe)
    if config is None:
        st.error(problem)
    else:
        estimate = forms.estimate_text(forms.single_run(config), facts)
        if estimate:
            st.caption(f"One training run: {estimate}.")
    if st.button("Start training", type="primary", disabled=config is None, key="t_start") and config:
        jobs.submit(store, "train", dict(config, eval_pgd_steps=int(eval_steps)))

# ------------------------------------------------------------------ evaluate
with eval_tab:
    infos = checkpoints.checkpoint_infos()
    if not infos:
        st.info("No checkpoint yet: train a model first.")
    else:
        by_name = {i.name: i for i in infos}
        name = st.selectbox("Checkpoint", list(by_name), key="e_ckpt",
                            format_func=lambda n: checkpoints.checkpoint_label(by_name[n]))
        attacks = widgets.attack_multiselect("Attacks", key="e_attacks")
        eps_list = widgets.epsilon_list_input("Test ε", forms.DEFAULT_TEST_EPS, key="e_eps")
        row = layout.flow(gap="medium")
        pgd_steps = row.number_input("PGD steps", 1, 200, 10, key="e_steps", width=200)
        e_seed = row.number_input("Seed (noise, PGD start)", 0, 10**6, 0, key="e_seed", width=200)
        st.caption("The checkpoint's own held-out images are used when the active data is what it was trained on; "
                   "otherwise every image of the active data.")
        if not attacks:
            st.error("Choose at least one attack.")
        ok = bool(attacks) and eps_list is not None
        if st.button("Start evaluation", type="primary", disabled=not ok, key="e_start"):
            jobs.submit(store, "evaluate", {"checkpoint": str(by_name[name].path), "attacks": attacks,
                                            "epsilons": eps_list, "pgd_steps": int(pgd_steps), "seed": int(e_seed)})

# ------------------------------------------------------------------ experiment
with exp_tab:
    with st.container(horizontal=True):
        st.button("Fill in the study's settings", key="x_preset",
                  on_click=lambda: st.session_state.update(forms.preset_state("study", "x_")),
                  help=forms.study_help())
        st.button("Fill in the frontier's settings", key="x_frontier",
                  on_click=lambda: st.session_state.update(forms.preset_state("frontier", "x_")),
                  help=forms.frontier_help())
    x_recipe = recipes.recipe_radio("x_", help="For every run of the grid; settings below that you change override it.")
    for k, v in {"x_batch": 32, "x_name": "experiment", "x_split": DEFAULT_SPLIT_POLICY,
                 **{f"x_size_{m.name}": m.default_image_size for m in MODELS}}.items():
        st.session_state.setdefault(k, v)  # widget defaults live in Session State so the preset can set them
    row = layout.flow(gap="medium")
    archs = widgets.registry_multiselect("Models", MODELS, key="x_archs", default=["simplecnn"], container=row,
                                         width=420)
    modes = widgets.registry_multiselect("Training modes", MODES, key="x_modes", default=["standard", "fgsm"],
                                         container=row, width=420)
    row = layout.flow(gap="medium")
    with row.container(width=420):
        x_train_eps = widgets.epsilon_list_input("Training ε (adversarial modes)", "0.05, 0.2, 0.5", key="x_train_eps")
    with row.container(width=420):
        x_test_eps = widgets.epsilon_list_input("Test ε", "0.05, 0.2, 0.5", key="x_test_eps")
    row = layout.flow(gap="medium")
    with row.container(width=200):
        seeds = widgets.seed_list_input("Seeds", "0, 1, 2", key="x_seeds")
    x_epochs = row.number_input("Epochs", 1, 500, key="x_epochs", width=150)
    x_batch = row.number_input("Batch size", 1, 1024, key="x_batch", width=150)
    x_labels = widgets.labels_select(None, key="x_labels", container=row, width=240)
    x_attacks = widgets.attack_multiselect("Test attacks", key="x_attacks")
    with st.expander("Advanced"):
        row = layout.flow(gap="medium")
        sizes = {m.name: int(row.number_input(f"{m.label} image size", m.min_image_size, m.max_image_size,
                                              step=m.size_multiple, key=f"x_size_{m.name}", width=260))
                 for m in MODELS}
        x_rs = widgets.random_start_select(None, key="x_rs", container=row, width=220)
        x_lr = row.number_input("Learning rate (peak of the schedule)", 1e-6, 1.0, format="%.5f", key="x_lr",
                                width=200)
        x_balance = widgets.class_balance_select(None, key="x_balance", container=row, width=380,
                                                 recipe_value=recipes.recipe_settings(x_recipe)["class_balance"])
        x_split = widgets.split_policy_select("x_split", container=row, width=420)
        x_eval_steps = row.number_input("PGD steps when testing", 1, 200, 10, key="x_eval_steps", width=200)
        x_levers = widgets.recipe_levers("x_", recipes.recipe_settings(x_recipe), container=row)  # and epoch kept
        x_cw = widgets.critical_weight_input("x_cw", container=row, width=200)
        x_name = row.text_input("Name", key="x_name", width=260)
        x_epochs_on = row.text_input(
            "Choose the epoch counts first on seeds", key="x_epochs_on", width=300, placeholder="empty: epochs as set",
            help="e.g. 5-9: these seeds train first with the recipe's validation split; their validation, pooled, "
                 "chooses each model, mode and training ε's epoch count; then the seeds above train that many epochs "
                 "on every training image and keep the last, so the seeds tested choose nothing")
        x_choose = row.text_input(
            "Choose among values on those seeds", key="x_choose", width=420, disabled=not x_epochs_on.strip(),
            placeholder="empty: the values as set", help=forms.CHOOSE_AMONG_HELP)
        save = st.checkbox("Save every model as a checkpoint", key="x_save")
    row = layout.flow(gap="medium")
    backends = forms.backend_labels()
    x_backend = row.segmented_control("Where the runs execute", list(backends), key="x_backend", default="local",
                                      required=True, format_func=backends.get,
                                      help="This machine: runs side by side in worker processes. Ray: each run a "
                                           "Ray task, on a cluster or on a Ray started here; workers need busadv "
                                           "installed, not the data folder.") or "local"
    x_address = row.text_input("Ray cluster (host:port)", key="x_address", width=260, disabled=x_backend != "ray",
                               placeholder="empty: RAY_ADDRESS, else Ray starts here")
    x_workers = row.number_input("Runs at a time (0: as many as the machine holds)", 0, 4096, 0, key="x_workers",
                                 width=260)
    if any(MODELS.get(m).pretrained_available is not None for m in archs):
        st.caption(checkpoints.resnet_note())
    experiment, problem = forms.experiment_config({
        "archs": archs, "modes": modes, "train_epsilons": x_train_eps, "seeds": seeds, "test_attacks": x_attacks,
        "test_epsilons": x_test_eps, "epochs": int(x_epochs), "batch_size": int(x_batch), "lr": float(x_lr),
        "adv_labels": x_labels,
        "image_sizes": {name: sizes[name] for name in archs}, "random_start": x_rs, "class_balance": x_balance,
        "split_policy": x_split, "eval_pgd_steps": int(x_eval_steps), "save_checkpoints": bool(save),
        "name": x_name.strip() or "experiment", "backend": x_backend,
        "address": (x_address.strip() or None) if x_backend == "ray" else None, "workers": int(x_workers) or None,
        "epochs_chosen_on": x_epochs_on.strip(), "critical_weight": x_cw, **x_levers,
        "choose_among": x_choose if x_epochs_on.strip() else ""},
        x_recipe)
    if experiment is None:
        st.error(problem)
    else:
        st.caption(forms.experiment_summary(experiment, facts))
    if st.button("Start experiment", type="primary", disabled=experiment is None, key="x_start") and experiment:
        jobs.submit(store, "experiment", experiment.to_dict())

# ------------------------------------------------------------------ the job list
st.subheader("Jobs")


def show_jobs() -> None:
    listed = jobs.active_first(store)
    if listed:
        jobs.job_list(store, listed, key="jobs", curves=True)
    else:
        st.caption("No jobs yet.")


jobs.live(store, show_jobs, key="jobs")

with st.expander("Training curves of a finished training job"):
    trained = {j.id: j for j in store.list(limit=100) if j.status == "done" and jobs.training_history(j)}
    if trained:
        shown = trained[st.selectbox("Job", list(trained), key="curve_job",
                                     format_func=lambda i: f"job {i}: {jobs.describe_job(trained[i])}")]
        history = jobs.training_history(shown)
        st.plotly_chart(layout.legend_below(plots.training_curves(history, title=f"Job {shown.id}: training curves")),
                        key="curves")
    else:
        st.caption("None yet.")
