"""The explorer's sections below the main view: the epsilon strip, the original file, two models, the test set.

Each section is one function the page calls in order; none of them changes what the main view shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

from busadv import plots
from busadv.app import checkpoints, layout, probes
from busadv.app.attention_views import Lesion, zoomable
from busadv.app.checkpoints import mtime_ns
from busadv.attacks import attack_label, format_epsilon
from busadv.data import ImageSet
from busadv.explain import NoLesionMasks, Panel, PointingRow, cam_overlay, lesion_score, pointing_game
from busadv.explorer import to_uint8
from busadv.models.checkpoints import CheckpointInfo

STRIP_SHOWS = {"images": "the perturbed images", "attention": "where the model looks"}


def strip(view: probes.ProbeView, attack: str, lesion: Lesion) -> None:
    """The image at several epsilons with each prediction; or the Grad-CAM maps, with the pointing game per epsilon."""
    st.subheader("The same image at several ε")
    shows = st.segmented_control("The strip shows", list(STRIP_SHOWS), format_func=lambda k: STRIP_SHOWS[k],
                                 key="strip_shows", default="images", required=True)
    clean_pred = int(view.clean().argmax())
    with layout.flow(gap="xsmall"):
        for item in view.strip(attack):
            flipped = item.predicted != clean_pred
            with st.container(width=104, gap="xsmall"):
                text = ("**clean (ε = 0)**" if item.epsilon == 0 else f"**ε = {format_epsilon(item.epsilon)}**")
                text += "  \n" + (f":red[**{view.classes[item.predicted]} {item.confidence:.0%}** "
                                  ":material/warning: flipped]" if flipped
                                  else f"{view.classes[item.predicted]} {item.confidence:.0%}")
                if shows == "attention":
                    cam = view.attention(attack, item.epsilon)
                    st.image(cam_overlay(view.probe.perturbed(attack, item.epsilon), cam.maps[0], lesion.mask),
                             width="stretch")
                    score = None if lesion.mask is None else lesion_score(cam.maps[0], lesion.mask)
                    if score is not None:
                        text += "  \npeak on lesion: " + ("**yes**" if score.hit else ":orange[**no**]")
                else:
                    st.image(item.image, width="stretch")
                st.markdown(text)
    if shows == "attention":
        st.caption("Each map explains the model's answer on that image. " + (
            "Peak on lesion: the pointing game, is the map's hottest pixel inside the white outline?"
            if lesion.mask is not None else f"No pointing game: {lesion.reason}."))


def original(view: probes.ProbeView) -> None:
    """The image as stored, at its own resolution, beside the model's square input: zoom both to compare."""
    if not st.toggle("Show the original image at full resolution beside the model's input", key="show_original"):
        return
    pixels, what = probes.original_image(view.choice, int(view.probe.x.shape[-1]))
    if pixels is None:
        st.info(f"The original cannot be shown: {what}.")
        return
    size = int(view.probe.x.shape[-1])
    h, w = pixels.shape
    changes = [word for word, applies in (("shrunk", max(h, w) > size), ("enlarged", max(h, w) < size),
                                          ("squeezed to a square", h != w)) if applies]
    first = Panel(f"Original: {what}", pixels, note=f"{w}×{h} px")
    second = Panel("What the model is given", to_uint8(view.probe.x),
                   note=f"{size}×{size} px" + (f", {' and '.join(changes)}" if changes else ", the same pixels"))
    zoomable([first, second], columns=2, key="original", row_height=420)
    st.caption("Both pictures cover the same field of view: zoom into one and the other follows, each at its own "
               "resolution." + (" Speckle finer than the model's pixels is averaged away before the model sees it."
                                if max(h, w) > size else ""))


def compare(view: probes.ProbeView, others: Sequence[CheckpointInfo], attack: str, eps: float) -> None:
    """A second model on this image: under its own attack, or judged on the first model's perturbed image."""
    st.subheader("Compare two models on this image")
    if not others:
        st.caption("Train a second model (for example FGSM-trained) on the Jobs page to compare it with this one.")
        return
    by_name = {o.name: o for o in others}
    if st.session_state.get("model_b") not in by_name:
        st.session_state["model_b"] = checkpoints.contrasting(view.info, others).name
    other = by_name[st.selectbox("Second model", list(by_name), key="model_b",
                                 format_func=lambda n: checkpoints.checkpoint_label(by_name[n]))]
    transfer = st.radio("The second model is judged on", ["own", "transfer"], key="compare_mode", horizontal=True,
                        format_func={"own": f"its own {attack_label(attack)} image (white-box)",
                                     "transfer": "the first model's perturbed image (transfer)"}.get) == "transfer"
    image_b, problem = probes.image_for(view.choice, other)
    if image_b is None:
        st.error(problem or "This image cannot be used.")
        return
    second = probes.open_probe(other, view.choice, image_b)
    pair = layout.flow(gap="medium")
    for side in (view, second):
        c = side.clean()
        p = side.transferred(view, attack, eps) if transfer and side is second else side.probabilities(attack, eps)
        names = side.classes
        with pair.container(width=440):
            st.markdown(f"**{checkpoints.checkpoint_heading(side.info)}**")
            if transfer and side is second:
                made, given = int(view.probe.x.shape[-1]), int(second.probe.x.shape[-1])
                resized = f", resized from {made} to {given} px" if made != given else ""
                tail = f"Judged on the first model's {attack_label(attack)} image{resized}."
            else:
                flip = side.smallest_flip(attack)
                tail = f"Smallest flipping ε: **{format_epsilon(flip) if flip is not None else 'none up to 0.5'}**"
            verdict = (f":red[**flipped**: {names[int(c.argmax())]} → {names[int(p.argmax())]}]"
                       if int(p.argmax()) != int(c.argmax()) else f"unchanged: {names[int(c.argmax())]}")
            if side.choice.true_label is not None and int(c.argmax()) != side.choice.true_label:
                verdict += " :orange-badge[:material/error: wrong without any noise]"
            st.markdown(f"At ε = {format_epsilon(eps)}: {verdict}. {tail}")
            name = attack_label(attack) + (" (transferred)" if transfer and side is second else "")
            st.plotly_chart(plots.probability_bars(names, c.tolist(), p.tolist(), perturbed_name=name,
                                                   title="Class probabilities"),
                            key=f"compare-{side.info.name}", config={"displayModeBar": False})
    if view.choice.upload is None and view.choice.name not in checkpoints.test_images_for(other)[0].names:
        st.caption("Note: this image was in the second model's training images (its split differs), "
                   "so its answer on it is not a held-out result.")


@st.cache_data(max_entries=16, show_spinner="Playing the pointing game on every test image with a lesion…")
def _pointing(path: str, version: int, attack: str, epsilons: tuple[float, ...],
              _images: ImageSet) -> list[PointingRow]:
    checkpoint = checkpoints.load_model(path, version)
    return pointing_game(checkpoint.require_model(), _images, attack, epsilons, arch=checkpoint.arch)


def test_set_attention(info: CheckpointInfo, test_set: ImageSet, attack: str) -> None:
    """The pointing game over the model's held-out lesion images as epsilon grows (on request: seconds to minutes)."""
    with st.expander("Does attention stay on the lesion across all test images?"):
        if test_set.masks is None or not bool(test_set.masks.flatten(1).any(1).any()):
            st.info("Unavailable: these images have no lesion outlines (phantoms always do; a BUSI folder needs its "
                    "'_mask.png' files beside the images).")
            return
        epsilons = (0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255)
        st.caption(f"Grad-CAM on every held-out image with an outlined lesion, under {attack_label(attack)} at "
                   f"{', '.join(format_epsilon(e) for e in epsilons[1:])}. The same numbers from a terminal: "
                   f"`python -m busadv attention {info.path.name} --attack {attack}`.")
        if not st.button("Measure", key="pointing_game"):
            return
        try:
            rows = _pointing(str(info.path), mtime_ns(info.path), attack, epsilons, _images=test_set)
        except NoLesionMasks as exc:
            st.info(f"Unavailable: {exc}.")
            return
        st.dataframe([{"ε": format_epsilon(r.epsilon) if r.epsilon else "clean",
                       "peak on lesion": f"{r.on_lesion:.0%}", "attention on lesion": f"{r.lesion_share:.0%}",
                       "lesion area": f"{r.lesion_area:.0%}",
                       "correlation with clean": "—" if np.isnan(r.correlation) else f"{r.correlation:.2f}",
                       "diagnosis flipped": f"{r.flipped:.0%}"} for r in rows], hide_index=True)
        st.caption(f"{rows[0].images} images. Peak on lesion: the pointing game. Attention on lesion beside the "
                   "lesion's own share of the image: a model that looks everywhere equally scores that area.")

