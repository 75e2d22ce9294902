"""Perturbation explorer: one trained model, one ultrasound image, a moving epsilon, and where the model looks.

The gradient is computed once per model and image (busadv.explorer.PerturbationProbe, shared through
busadv.app.probes), so each slider position of a single-step attack costs one forward pass; Grad-CAM
(busadv.explain) adds one forward-backward pass per position. Presenter mode walks a lecture hall
through four steps; deep links (?model=...&image=...&attack=...&eps=...) open a given case.
"""

from __future__ import annotations

import streamlit as st

from busadv import plots
from busadv.app import (
    attention_views,
    checkpoints,
    dataset,
    explorer_sections,
    explorer_views,
    first_start,
    jobs,
    layout,
    presenter,
    probes,
    widgets,
)
from busadv.attacks import ADVERSARIAL, explorer_attacks

layout.page_setup("Perturbation explorer")
link = explorer_views.pending_link()
explorer_views.apply_attack_link(link, explorer_attacks())
with st.container(horizontal=True, vertical_alignment="center"):
    st.title("Perturbation explorer", width="stretch")
    presenting = st.toggle("Presenter mode", key="presenter",
                           help="Four steps for a lecture hall: clean, a tiny change, the smallest change that flips "
                                "the diagnosis, and the same amount of scanner variation. Keys: → next, ← back.")
if presenting:
    presenter.style()
else:
    st.markdown("Pick a trained model and an ultrasound image, then drag **ε**, the most any pixel may change "
                "(pixel scale 0–1; 8/255 ≈ 0.031 is a change of 8 grey levels out of 255). "
                "The question: *how little noise flips this diagnosis?*")
facts = dataset.dataset_banner(compact=True)
store = jobs.job_store()

infos = checkpoints.checkpoint_infos()
if not infos:
    explorer_views.await_first_model(lambda: first_start.panel(store, facts.label))
    st.stop()

# ------------------------------------------------------------------ model, image, attack, epsilon
settings = st.expander("Model, image and perturbation", expanded=False) if presenting else st.container()
by_name = {info.name: info for info in checkpoints.explorer_order(infos, facts.simulated)}
explorer_views.apply_model_link(link, list(by_name))
model_name = settings.selectbox("Trained model", list(by_name), key="model",
                                format_func=lambda n: checkpoints.checkpoint_label(by_name[n]))
info = by_name[model_name]
if checkpoints.is_collapsed(info):
    st.warning("This model answers one class for (almost) every clean test image: it has not learned to tell "
               "the classes apart, so a flip says little. Pick another model if you can.", icon=":material/warning:")
classes = list(info.classes)
with settings:
    pick = layout.flow(gap="medium")  # image source, diagnosis and file side by side; stacked on a narrow screen
source = pick.radio("Image", ["Test image", "Upload your own"], horizontal=True, key="source",
                    help="Test images are the model's own held-out images when it was trained on the active data.")

test_set = None
if source == "Test image":
    if facts.error:
        st.error("Test images need a usable data folder; upload an image instead.")
        st.stop()
    test_set, which = checkpoints.test_images_for(info)
    explorer_views.apply_image_link(link, test_set, classes)
    if st.session_state.get("true_class") not in classes:
        st.session_state["true_class"] = classes[1]
    wanted = pick.segmented_control("True diagnosis", classes, key="true_class", required=True)
    label = classes.index(wanted or classes[1])
    candidates = probes.images_of_class(test_set, label)
    if not candidates:
        st.warning(f"No {classes[label]} image among the test images.")
        st.stop()
    if st.session_state.get("image_index") not in candidates:
        st.session_state["image_index"] = candidates[0]
    index = pick.selectbox(f"{classes[label].capitalize()} test image ({len(candidates)})", candidates,
                           key="image_index", format_func=lambda i: test_set.names[i], width=320)
    settings.caption(f"Showing {which}" + (f" — {dataset.SIMULATED_LABEL}." if facts.simulated else "."))
    choice = probes.ImageChoice(key=f"{test_set.fingerprint}:{test_set.names[index]}", name=test_set.names[index],
                                true_label=label)
else:
    known = pick.selectbox("Known diagnosis (optional)", ["unknown", *classes], key="known", width=260,
                           help="With a known diagnosis the attack pushes away from it; otherwise from the "
                                "model's own answer.")
    upload = settings.file_uploader("Ultrasound image (PNG or JPEG, up to 20 MB)", type=["png", "jpg", "jpeg"],
                                    key="upload")
    if upload is None:
        st.info("Upload a breast-ultrasound image to see how the model's answer changes. It is converted to "
                "grayscale and resized to the model's square input, as the training images were.")
        st.stop()
    content = upload.getvalue()
    choice = probes.ImageChoice(key=dataset.image_key(content), name=upload.name,
                                true_label=None if known == "unknown" else classes.index(known), upload=content)

offered = explorer_attacks()
attack = explorer_views.attack_choice(offered, settings)
spec = next(s for s in offered if s.name == attack)
if spec.family == ADVERSARIAL and choice.true_label is None:
    settings.caption("No known diagnosis: the attack aims at the model's own prediction.")
explorer_views.restore("eps")
if presenting:
    eps = float(st.session_state.get("eps", 4 / 255))
else:
    eps = widgets.epsilon_slider("ε: the largest change of any pixel (pixel scale 0–1, also shown as k/255 grey "
                                 "levels)", key="eps", default=4 / 255)
explorer_views.remember(eps=eps)

if choice.upload is not None and info.simulated:
    st.warning(f"This model learned from {dataset.SIMULATED_LABEL}: its answer on a real ultrasound image is not a "
               "diagnosis. Train on BUSI (set BUSADV_DATA) to explore real images.", icon=":material/warning:")
elif choice.upload is None and info.simulated != facts.simulated:
    trained_on = dataset.SIMULATED_LABEL if info.simulated else "real BUSI images"
    st.warning(f"This model was trained on {trained_on} but the images shown are {facts.label}: its answers here "
               "are outside what it learned.", icon=":material/warning:")

explorer_views.link_notes()
image, problem = probes.image_for(choice, info)
if image is None:
    st.error(problem or "This image cannot be used.", icon=":material/block:")
    st.stop()

# ------------------------------------------------------------------ one model, one image
view = probes.open_probe(info, choice, image)
lesion = attention_views.Lesion(*probes.lesion_for(choice, info))
flip_eps = view.smallest_flip(attack)
explorer_views.write_link(model_name, choice.name if choice.upload is None else None, attack, eps, presenting)

if presenting:
    steps = presenter.plan(attack, flip_eps, explorer_views.equal_size_comparison(offered))
    step = presenter.controls(steps)
    shown = attention_views.condition(view, step.attack, step.epsilon, lesion, flip_eps=flip_eps, row_height=400,
                                      key="present", large=True, flip_attack=attack)
    attention_views.export_buttons(shown, choice.name, key="present")
    st.stop()



def picture_controls() -> None:
    """Under the pictures: how many per row (fewer: larger, for speckle), and what Grad-CAM explains."""
    with layout.flow(gap="medium"):
        st.segmented_control("Pictures per row", [3, 2, 1], key="per_row", default=3, required=True,
                             help="Fewer per row: larger pictures, to see speckle. Zoom also works at any size.")
        st.selectbox("Grad-CAM explains", [None, *range(len(classes))], key="cam_target", width=360,
                     format_func=lambda t: "the model's answer on each image" if t is None else
                     f"the class '{classes[t]}' on both images",
                     help="By default each map explains the answer given on that image: why it said benign, and "
                          "why it now says malignant. Pick a class to compare attention for that one class.")


per_row = int(st.session_state.get("per_row") or 3)
shown = attention_views.condition(view, attack, eps, lesion, flip_eps=flip_eps,
                                  target=st.session_state.get("cam_target"), columns=per_row,
                                  row_height={3: 300, 2: 440, 1: 620}[per_row], below_pictures=picture_controls)
attention_views.export_buttons(shown, choice.name, key="main")
explorer_sections.original(view)

# ------------------------------------------------------------------ the epsilon strip and the sweep
explorer_sections.strip(view, attack, lesion)
if st.toggle("Show the probabilities as ε grows (up to 0.2)", key="show_sweep"):
    grid, probs = view.sweep(attack)
    st.plotly_chart(plots.probability_sweep(grid, probs, classes, flip_epsilon=flip_eps,
                                            current=eps if eps <= 0.2 else None), key="sweep")

# ------------------------------------------------------------------ two models; the whole test set
explorer_sections.compare(view, [by_name[n] for n in by_name if n != model_name], attack, eps)
if test_set is not None:
    explorer_sections.test_set_attention(info, test_set, attack)
