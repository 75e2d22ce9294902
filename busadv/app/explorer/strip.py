"""The explorer's epsilon strip (a tab below the first screen): the same image at several epsilons, in increasing
order, each with the model's answer, or the Grad-CAM maps with the pointing game; and the probabilities as
epsilon grows."""

from __future__ import annotations

import streamlit as st

from busadv import plots
from busadv.app import layout
from busadv.app.explorer.closer import Lesion
from busadv.app.explorer.probes import ProbeView, progress_bar
from busadv.app.layout import plain
from busadv.attacks import attack_label, format_epsilon
from busadv.explain import cam_overlay, lesion_score

STRIP_SHOWS = {"images": "the perturbed images", "attention": "where the model looks"}


def strip(view: ProbeView, attack: str, lesion: Lesion) -> None:
    """The image at several epsilons with each prediction; or the Grad-CAM maps, with the pointing game per epsilon."""
    shows = st.segmented_control("The strip shows", list(STRIP_SHOWS), format_func=lambda k: STRIP_SHOWS[k],
                                 key="strip_shows", default="images", required=True)
    clean_pred = int(view.clean().argmax())
    names = [plain(c) for c in view.classes]
    items = view.strip(attack, progress=progress_bar(f"Running {attack_label(attack)} at each ε of the strip")
                       if view.slow(attack) else None)
    with layout.flow(gap="xsmall"):
        for item in items:
            flipped = item.predicted != clean_pred
            with st.container(width=104, gap="xsmall"):
                text = ("**clean (ε = 0)**" if item.epsilon == 0 else f"**ε = {format_epsilon(item.epsilon)}**")
                text += "  \n" + (f":red[**{names[item.predicted]} {item.confidence:.0%}** "
                                  ":material/warning: flipped]" if flipped
                                  else f"{names[item.predicted]} {item.confidence:.0%}")
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


def sweep(view: ProbeView, attack: str, flip_eps: float | None, eps: float) -> None:
    """Each class's probability on a fine epsilon grid up to 0.2, on request."""
    if st.toggle("Show the probabilities as ε grows (up to 0.2)", key="show_sweep"):
        grid, probs = view.sweep(attack)
        st.plotly_chart(plots.probability_sweep(grid, probs.tolist(), view.classes, flip_epsilon=flip_eps,
                                                current=eps if eps <= 0.2 else None), key="sweep")
