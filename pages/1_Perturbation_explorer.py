"""Perturbation explorer: one trained model, one ultrasound image, a moving epsilon.

The gradient is computed once per model and image (busadv.explorer.PerturbationProbe, shared through
busadv.app.probes), so each slider position of a single-step attack costs one forward pass.
"""

from __future__ import annotations

import streamlit as st

from busadv import plots
from busadv.app import checkpoints, dataset, jobs, layout, probes, widgets
from busadv.attacks import ADVERSARIAL, attack_label, explorer_attacks, format_epsilon
from busadv.explorer import amplified_perturbation, to_uint8

layout.page_setup("Perturbation explorer")
st.title("Perturbation explorer")
st.markdown("Pick a trained model and an ultrasound image, then drag **ε**, the most any pixel may change "
            "(pixel scale 0–1; 8/255 ≈ 0.031 is a change of 8 grey levels out of 255). "
            "The question: *how little noise flips this diagnosis?*")
facts = dataset.dataset_banner(compact=True)
store = jobs.job_store()

infos = checkpoints.checkpoint_infos()
if not infos:
    jobs.quick_train_panel(store, facts.label)
    st.stop()

# ------------------------------------------------------------------ model, image, attack, epsilon
by_name = {info.name: info for info in checkpoints.explorer_order(infos, facts.simulated)}
model_name = st.selectbox("Trained model", list(by_name), key="model",
                          format_func=lambda n: checkpoints.checkpoint_label(by_name[n]))
info = by_name[model_name]
if checkpoints.is_collapsed(info):
    st.warning("This model answers one class for (almost) every clean test image: it has not learned to tell "
               "the classes apart, so a flip says little. Pick another model if you can.", icon=":material/warning:")
classes = list(info.classes)
pick = layout.flow(gap="medium")  # image source, diagnosis and file side by side; stacked on a narrow screen
source = pick.radio("Image", ["Test image", "Upload your own"], horizontal=True, key="source",
                    help="Test images are the model's own held-out images when it was trained on the active data.")

if source == "Test image":
    if facts.error:
        st.error("Test images need a usable data folder; upload an image instead.")
        st.stop()
    test_set, which = checkpoints.test_images_for(info)
    wanted = pick.segmented_control("True diagnosis", classes, default=classes[1], key="true_class", required=True)
    label = classes.index(wanted or classes[1])
    candidates = probes.images_of_class(test_set, label)
    if not candidates:
        st.warning(f"No {classes[label]} image among the test images.")
        st.stop()
    index = pick.selectbox(f"{classes[label].capitalize()} test image ({len(candidates)})", candidates,
                           key="image_index", format_func=lambda i: test_set.names[i], width=320)
    st.caption(f"Showing {which}" + (f" — {dataset.SIMULATED_LABEL}." if facts.simulated else "."))
    choice = probes.ImageChoice(key=f"{test_set.fingerprint}:{test_set.names[index]}", name=test_set.names[index],
                                true_label=label)
else:
    known = pick.selectbox("Known diagnosis (optional)", ["unknown", *classes], key="known", width=260,
                           help="With a known diagnosis the attack pushes away from it; otherwise from the "
                                "model's own answer.")
    upload = st.file_uploader("Ultrasound image (PNG or JPEG, up to 20 MB)", type=["png", "jpg", "jpeg"],
                              key="upload")
    if upload is None:
        st.info("Upload a breast-ultrasound image to see how the model's answer changes. It is converted to "
                "grayscale and resized to the model's square input, as the training images were.")
        st.stop()
    content = upload.getvalue()
    choice = probes.ImageChoice(key=dataset.image_key(content), name=upload.name,
                                true_label=None if known == "unknown" else classes.index(known), upload=content)

offered = {spec.name: spec for spec in explorer_attacks()}
attack = st.radio("Perturbation", list(offered), key="attack", horizontal=True, format_func=attack_label)
aims_at_prediction = offered[attack].family == ADVERSARIAL and choice.true_label is None
st.caption(offered[attack].explanation + (". No known diagnosis: the attack aims at the model's own prediction."
                                          if aims_at_prediction else "."))
eps = widgets.epsilon_slider("ε: the largest change of any pixel (pixel scale 0–1, also shown as k/255 grey levels)",
                             key="eps", default=4 / 255)

if choice.upload is not None and info.simulated:
    st.warning(f"This model learned from {dataset.SIMULATED_LABEL}: its answer on a real ultrasound image is not a "
               "diagnosis. Train on BUSI (set BUSADV_DATA) to explore real images.", icon=":material/warning:")
elif choice.upload is None and info.simulated != facts.simulated:
    trained_on = dataset.SIMULATED_LABEL if info.simulated else "real BUSI images"
    st.warning(f"This model was trained on {trained_on} but the images shown are {facts.label}: its answers here "
               "are outside what it learned.", icon=":material/warning:")

image, problem = probes.image_for(choice, info)
if image is None:
    st.error(problem or "This image cannot be used.", icon=":material/block:")
    st.stop()

# ------------------------------------------------------------------ one model, one image
view = probes.open_probe(info, choice, image)
clean = view.clean()
perturbed_x = view.probe.perturbed(attack, eps)
perturbed = view.probabilities(attack, eps)
clean_pred, new_pred = int(clean.argmax()), int(perturbed.argmax())
flip_eps = view.smallest_flip(attack)
flip_text = format_epsilon(flip_eps) if flip_eps is not None else "none up to 0.5"

truth = f" (true diagnosis: **{classes[choice.true_label]}**)" if choice.true_label is not None else ""
wrong_already = choice.true_label is not None and clean_pred != choice.true_label
if new_pred != clean_pred:
    st.error(f"#### :material/warning: Diagnosis flipped: {classes[clean_pred]} ({clean[clean_pred]:.0%}) → "
             f"{classes[new_pred]} ({perturbed[new_pred]:.0%}) at ε = {format_epsilon(eps)}{truth}")
elif wrong_already:  # "unchanged" in green would read as good news
    st.warning(f"#### Prediction unchanged, and wrong without any noise: {classes[clean_pred]} "
               f"({clean[clean_pred]:.0%} → {perturbed[clean_pred]:.0%}) at ε = {format_epsilon(eps)}{truth}",
               icon=":material/error:")
else:
    st.success(f"#### Prediction unchanged: {classes[clean_pred]} ({clean[clean_pred]:.0%} → "
               f"{perturbed[clean_pred]:.0%}) at ε = {format_epsilon(eps)}{truth}")

# Tile and image widths: three readouts, or three images and the chart, fit one row of a 1366 px
# screen beside the sidebar; narrower screens move whole tiles down (layout.flow) instead of squeezing them.
with layout.flow():
    layout.readout("Clean prediction", f"{classes[clean_pred]} {clean[clean_pred]:.0%}",
                   note=":orange-badge[:material/error: wrong]" if wrong_already else None)
    layout.readout(f"With {attack_label(attack)}, ε = {format_epsilon(eps)}",
                   f"{classes[new_pred]} {perturbed[new_pred]:.0%}",
                   note=":red-badge[:material/warning: flipped]" if new_pred != clean_pred else
                   ":gray-badge[unchanged]")
    layout.readout("Smallest ε that flips it", flip_text,
                   help="Searched on every k/255 up to 127/255, then at 0.5.")

with layout.flow():
    st.image(to_uint8(view.probe.x), caption="Original", width=180)
    st.image(to_uint8(perturbed_x), caption=f"Perturbed, ε = {format_epsilon(eps)}", width=180)
    st.image(amplified_perturbation(view.probe.x, perturbed_x), width=180,
             caption="The perturbation, amplified to full contrast (grey = no change)")
    with st.container(width=300):
        st.plotly_chart(plots.probability_bars(classes, clean, perturbed,
                                               perturbed_name=f"{attack_label(attack)}, ε={format_epsilon(eps)}",
                                               title="Class probabilities"),
                        key="probabilities", config={"displayModeBar": False})

# ------------------------------------------------------------------ the epsilon strip
st.subheader("The same image at several ε")
with layout.flow(gap="xsmall"):
    for item in view.strip(attack):
        flipped = item.predicted != clean_pred
        with st.container(width=104, gap="xsmall"):
            st.image(item.image, width="stretch")
            st.markdown(("**clean (ε = 0)**" if item.epsilon == 0 else f"**ε = {format_epsilon(item.epsilon)}**")
                        + "  \n" + (f":red[**{classes[item.predicted]} {item.confidence:.0%}** "
                                     ":material/warning: flipped]" if flipped
                                     else f"{classes[item.predicted]} {item.confidence:.0%}"))

if st.toggle("Show the probabilities as ε grows (up to 0.2)", key="show_sweep"):
    grid, probs = view.sweep(attack)
    st.plotly_chart(plots.probability_sweep(grid, probs, classes, flip_epsilon=flip_eps,
                                            current=eps if eps <= 0.2 else None), key="sweep")

# ------------------------------------------------------------------ compare two models
st.subheader("Compare two models on this image")
others = [n for n in by_name if n != model_name]
if not others:
    st.caption("Train a second model (for example FGSM-trained) on the Jobs page to compare it with this one.")
else:
    preferred = checkpoints.contrasting(info, [by_name[n] for n in others]).name
    other_name = st.selectbox("Second model", others, index=others.index(preferred), key="model_b",
                              format_func=lambda n: checkpoints.checkpoint_label(by_name[n]))
    other = by_name[other_name]
    image_b, problem_b = probes.image_for(choice, other)
    if image_b is None:
        st.error(problem_b or "This image cannot be used.")
    else:
        pair = layout.flow(gap="medium")
        for side in (view, probes.open_probe(other, choice, image_b)):
            c, p, names = side.clean(), side.probabilities(attack, eps), side.classes
            flip = side.smallest_flip(attack)
            with pair.container(width=440):
                st.markdown(f"**{checkpoints.checkpoint_heading(side.info)}**")
                verdict = (f":red[**flipped**: {names[int(c.argmax())]} → {names[int(p.argmax())]}]"
                           if int(p.argmax()) != int(c.argmax()) else f"unchanged: {names[int(c.argmax())]}")
                if choice.true_label is not None and int(c.argmax()) != choice.true_label:
                    verdict += " :orange-badge[:material/error: wrong without any noise]"
                st.markdown(f"At ε = {format_epsilon(eps)}: {verdict}. Smallest flipping ε: "
                            f"**{format_epsilon(flip) if flip is not None else 'none up to 0.5'}**")
                st.plotly_chart(plots.probability_bars(names, c, p, perturbed_name=attack_label(attack),
                                                       title="Class probabilities"),
                                key=f"compare-{side.info.name}", config={"displayModeBar": False})
        if choice.upload is None and choice.name not in checkpoints.test_images_for(other)[0].names:
            st.caption("Note: this image was in the second model's training images (its split differs), "
                       "so its answer on it is not a held-out result.")
