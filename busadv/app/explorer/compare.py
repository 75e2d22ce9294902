"""The explorer's comparison (a tab below the first screen): a second model on the same image, under its own attack
(white-box) or judged on the first model's perturbed image (transfer)."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from busadv import plots
from busadv.app import checkpoints, layout
from busadv.app.explorer.probes import ProbeView, image_for, open_probe, progress_bar
from busadv.app.layout import plain
from busadv.attacks import attack_label, format_epsilon
from busadv.models.checkpoints import CheckpointError, CheckpointInfo


def compare(view: ProbeView, others: Sequence[CheckpointInfo], attack: str, eps: float) -> None:
    """A second model on this image: under its own attack, or judged on the first model's perturbed image."""
    if not others:
        st.caption("Train a second model (for example FGSM-trained) on the Jobs page to compare it with this one.")
        return
    by_name = {o.name: o for o in others}
    if st.session_state.get("model_b") not in by_name:
        st.session_state["model_b"] = checkpoints.contrasting(view.info, others).name  # the healthiest other way
    other = by_name[st.selectbox("Second model", list(by_name), key="model_b",
                                 format_func=lambda n: checkpoints.checkpoint_label(by_name[n]))]
    transfer = st.radio("The second model is judged on", ["own", "transfer"], key="compare_mode", horizontal=True,
                        format_func={"own": f"its own {attack_label(attack)} image (white-box)",
                                     "transfer": "the first model's perturbed image (transfer)"}.get) == "transfer"
    image_b, problem = image_for(view.choice, other)
    if image_b is None:
        st.error(problem or "This image cannot be used.")
        return
    second = open_probe(other, view.choice, image_b)
    pair = layout.flow(gap="medium")
    for side in (view, second):
        c = side.clean()
        p = side.transferred(view, attack, eps) if transfer and side is second else side.probabilities(attack, eps)
        names = [plain(c) for c in side.classes]
        with pair.container(width=440):
            st.markdown(f"**{checkpoints.checkpoint_heading(side.info)}**")
            if transfer and side is second:
                made, given = int(view.probe.x.shape[-1]), int(second.probe.x.shape[-1])
                resized = f", resized from {made} to {given} px" if made != given else ""
                tail = f"Judged on the first model's {attack_label(attack)} image{resized}."
            else:
                searching = progress_bar(f"Searching the smallest flipping ε with {attack_label(attack)}")
                flip = side.smallest_flip(attack, searching if side.slow(attack) else None)
                tail = f"Smallest flipping ε: **{format_epsilon(flip) if flip is not None else 'none up to 0.5'}**"
            verdict = (f":red[**flipped**: {names[int(c.argmax())]} → {names[int(p.argmax())]}]"
                       if int(p.argmax()) != int(c.argmax()) else f"unchanged: {names[int(c.argmax())]}")
            if side.choice.true_label is not None and int(c.argmax()) != side.choice.true_label:
                verdict += " :orange-badge[:material/error: wrong without any noise]"
            st.markdown(f"At ε = {format_epsilon(eps)}: {verdict}. {tail}")
            name = attack_label(attack) + (" (transferred)" if transfer and side is second else "")
            st.plotly_chart(plots.probability_bars(side.classes, c.tolist(), p.tolist(), perturbed_name=name,
                                                   title="Class probabilities"),
                            key=f"compare-{side.info.name}", config={"displayModeBar": False})
    try:
        held_out = checkpoints.test_images_for(other)[0].names if view.choice.upload is None else []
    except CheckpointError:  # its classes are not the data's: it has no held-out split here
        held_out = []
    if view.choice.upload is None and view.choice.name not in held_out:
        st.caption("Note: this image was in the second model's training images (its split differs), "
                   "so its answer on it is not a held-out result.")
