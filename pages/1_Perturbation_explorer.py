"""Perturbation explorer: one trained model, one ultrasound image, a moving epsilon.

The gradient is computed once per model and image (busadv.explorer.PerturbationProbe, cached in
busadv.ui), so each slider position costs one forward pass.
"""

from __future__ import annotations

import streamlit as st

from busadv import plots, ui
from busadv.attacks import STRIP_EPSILONS, Attack, format_epsilon
from busadv.data import CLASSES
from busadv.explorer import amplified_perturbation, to_uint8

ui.page_setup("Perturbation explorer")
st.title("Perturbation explorer")
st.markdown("Pick a trained model and an ultrasound image, then drag **ε**, the most any pixel may change "
            "(pixel scale 0–1; 8/255 ≈ 0.031 is one step of 8 grey levels out of 255). "
            "The question: *how little noise flips this diagnosis?*")
facts = ui.dataset_banner(compact=True)
store = ui.job_store()

infos = ui.checkpoint_infos()
if not infos:
    ui.quick_train_panel(store)
    st.stop()

# ------------------------------------------------------------------ model, image, attack, epsilon
# First offered: a model trained on the active kind of data (simulated or real), standard training, most
# accurate; a fresh FGSM-trained model that answers one class for everything is a poor first example.
infos = sorted(infos, key=lambda i: (bool(i.data.get("simulated")) != bool(facts["simulated"]),
                                     i.train_config.get("mode", "standard") != "standard",
                                     -float(i.metrics.get("clean_accuracy") or 0.0)))
by_name = {info.name: info for info in infos}
model_name = st.selectbox("Trained model", list(by_name), key="model",
                          format_func=lambda n: ui.checkpoint_label(by_name[n]))
info = by_name[model_name]
pick = ui.flow(gap="medium")  # image source, diagnosis and file side by side; one under another on a narrow screen
source = pick.radio("Image", ["Test image", "Upload your own"], horizontal=True, key="source",
                    help="Test images are the model's own held-out images when it was trained on the active data.")

choice: ui.ImageChoice | None = None
if source == "Test image":
    if facts["error"]:
        st.error("Test images need a usable data folder; upload an image instead.")
        st.stop()
    test_set, which = ui.test_images_for(info)
    wanted = pick.segmented_control("True diagnosis", list(CLASSES), default=CLASSES[1], key="true_class",
                                      required=True)
    label = CLASSES.index(wanted or CLASSES[1])
    candidates = [i for i in range(len(test_set)) if int(test_set.labels[i]) == label]
    if not candidates:
        st.warning(f"No {wanted} image among the test images.")
        st.stop()
    index = pick.selectbox(f"{wanted.capitalize()} test image ({len(candidates)})", candidates, key="image_index",
                           format_func=lambda i: test_set.names[i], width=320)
    st.caption(f"Showing {which}" + (f" — {ui.SIMULATED_LABEL}." if facts["simulated"] else "."))
    choice = ui.ImageChoice(key=f"{test_set.fingerprint}:{test_set.names[index]}", name=test_set.names[index],
                            true_label=label)
else:
    known = pick.selectbox("Known diagnosis (optional)", ["unknown", *CLASSES], key="known", width=260,
                           help="With a known diagnosis FGSM pushes away from it; otherwise from the model's answer.")
    upload = st.file_uploader("Ultrasound image (PNG or JPEG, up to 20 MB)", type=["png", "jpg", "jpeg"],
                              key="upload")
    if upload is None:
        st.info("Upload a breast-ultrasound image to see how the model's answer changes. It is converted to "
                "grayscale and resized to the model's square input, as the training images were.")
        st.stop()
    content = upload.getvalue()
    choice = ui.ImageChoice(key=ui.image_key(content), name=upload.name,
                            true_label=None if known == "unknown" else CLASSES.index(known), upload=content)

attack = st.radio("Perturbation", list(ui.EXPLORER_ATTACKS), key="attack", horizontal=True,
                  format_func=lambda a: Attack(a).label)
st.caption(ui.EXPLORER_ATTACKS[attack] + (
    ". No known diagnosis: FGSM attacks the model's own prediction." if attack != Attack.NOISE.value
    and choice.true_label is None else "."))
eps = ui.epsilon_slider("ε: the largest change of any pixel (pixel scale 0–1, also shown as k/255 grey levels)",
                        key="eps", default=4 / 255)

trained_on_phantoms = bool(info.data.get("simulated"))
if choice.upload is not None and trained_on_phantoms:
    st.warning(f"This model learned from {ui.SIMULATED_LABEL}: its answer on a real ultrasound image is not a "
               "diagnosis. Train on BUSI (set BUSADV_DATA) to explore real images.", icon=":material/warning:")
elif choice.upload is None and trained_on_phantoms != bool(facts["simulated"]):
    st.warning("This model was trained on " + (ui.SIMULATED_LABEL if trained_on_phantoms else "real BUSI images")
               + " but the images shown are " + (ui.SIMULATED_LABEL if facts["simulated"] else "real BUSI images")
               + ": its answers here are outside what it learned.", icon=":material/warning:")

image, problem = ui.image_for(choice, info)
if problem:
    st.error(problem, icon=":material/block:")
    st.stop()

# ------------------------------------------------------------------ one model, one image
probe = ui.probe_for(info, choice, image)
key = ui.probe_key(info, choice)
classes = list(ui.load_model(key[0], key[1]).classes)
clean = probe.probabilities(Attack.NONE, 0.0)
perturbed_x = probe.perturbed(attack, eps)
perturbed = probe.probabilities(attack, eps)
clean_pred, new_pred = int(clean.argmax()), int(perturbed.argmax())

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
# screen beside the sidebar; narrower screens move whole tiles down (ui.flow) instead of squeezing them.
with ui.flow():
    ui.readout("Clean prediction", f"{classes[clean_pred]} {clean[clean_pred]:.0%}",
               note=":orange-badge[:material/error: wrong]" if wrong_already else None)
    ui.readout(f"With {Attack(attack).label}, ε = {format_epsilon(eps)}",
               f"{classes[new_pred]} {perturbed[new_pred]:.0%}",
               note=":red-badge[:material/warning: flipped]" if new_pred != clean_pred else ":gray-badge[unchanged]")
    flip_eps = ui.smallest_flip(*key, attack, _probe=probe)
    ui.readout("Smallest ε that flips it", format_epsilon(flip_eps) if flip_eps is not None else "none up to 0.5",
               help="Searched on every k/255 up to 127/255, then at 0.5.")

with ui.flow():
    st.image(to_uint8(probe.x), caption="Original", width=180)
    st.image(to_uint8(perturbed_x), caption=f"Perturbed, ε = {format_epsilon(eps)}", width=180)
    st.image(amplified_perturbation(probe.x, perturbed_x), width=180,
             caption="The perturbation, amplified to full contrast (grey = no change)")
    with st.container(width=300):
        st.plotly_chart(plots.probability_bars(classes, clean, perturbed,
                                               perturbed_name=f"{Attack(attack).label}, ε={format_epsilon(eps)}",
                                               title="Class probabilities"),
                        key="probabilities", config={"displayModeBar": False})

# ------------------------------------------------------------------ the epsilon strip
st.subheader("The same image at several ε")
items = ui.strip(*key, attack, tuple(STRIP_EPSILONS), _probe=probe)
with ui.flow(gap="xsmall"):
    for item in items:
        flipped = item.predicted != clean_pred
        with st.container(width=104, gap="xsmall"):
            st.image(item.image, width="stretch")
            st.markdown(("**clean (ε = 0)**" if item.epsilon == 0 else f"**ε = {format_epsilon(item.epsilon)}**")
                        + "  \n" + (f":red[**{classes[item.predicted]} {item.confidence:.0%}** "
                                     ":material/warning: flipped]" if flipped
                                     else f"{classes[item.predicted]} {item.confidence:.0%}"))

if st.toggle("Show the probabilities as ε grows (up to 0.2)", key="show_sweep"):
    grid, probs = ui.sweep(*key, attack, _probe=probe)
    st.plotly_chart(plots.probability_sweep(grid, probs, classes, flip_epsilon=flip_eps,
                                            current=eps if eps <= 0.2 else None), key="sweep")

# ------------------------------------------------------------------ compare two models
st.subheader("Compare two models on this image")
others = [n for n in by_name if n != model_name]
if not others:
    st.caption("Train a second model (for example FGSM-trained) on the Jobs page to compare it with this one.")
else:
    preferred = next((n for n in others if by_name[n].train_config.get("mode", "standard")
                      != info.train_config.get("mode", "standard")), others[0])
    other_name = st.selectbox("Second model", others, index=others.index(preferred), key="model_b",
                              format_func=lambda n: ui.checkpoint_label(by_name[n]))
    other = by_name[other_name]
    image_b, problem_b = ui.image_for(choice, other)
    if problem_b:
        st.error(problem_b)
    else:
        probe_b = ui.probe_for(other, choice, image_b)
        key_b = ui.probe_key(other, choice)
        pair = ui.flow(gap="medium")
        for name, inf, pr, k in ((model_name, info, probe, key), (other_name, other, probe_b, key_b)):
            c, p = pr.probabilities(Attack.NONE, 0.0), pr.probabilities(attack, eps)
            flip = ui.smallest_flip(*k, attack, _probe=pr)
            with pair.container(width=440):
                st.markdown(f"**{ui.checkpoint_label(inf)}**")
                verdict = (f":red[**flipped**: {classes[int(c.argmax())]} → {classes[int(p.argmax())]}]"
                           if int(p.argmax()) != int(c.argmax()) else f"unchanged: {classes[int(c.argmax())]}")
                if choice.true_label is not None and int(c.argmax()) != choice.true_label:
                    verdict += " :orange-badge[:material/error: wrong without any noise]"
                st.markdown(f"At ε = {format_epsilon(eps)}: {verdict}. Smallest flipping ε: "
                            f"**{format_epsilon(flip) if flip is not None else 'none up to 0.5'}**")
                st.plotly_chart(plots.probability_bars(classes, c, p, perturbed_name=Attack(attack).label,
                                                       title=f"{inf.arch}, {ui.training_text(inf.train_config)}"),
                                key=f"compare-{name}", config={"displayModeBar": False})
        if choice.upload is None:
            test_b, _ = ui.test_images_for(other)
            if choice.name not in test_b.names:
                st.caption("Note: this image was in the second model's training images (its split differs), "
                           "so its answer on it is not a held-out result.")
