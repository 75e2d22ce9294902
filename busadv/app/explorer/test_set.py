"""The explorer's test-set section (a tab below the first screen): does attention stay on the lesion across all of
the model's held-out images as epsilon grows (the pointing game, on request)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from busadv.app import checkpoints
from busadv.app.checkpoints import mtime_ns
from busadv.app.layout import plain
from busadv.attacks import attack_label, format_epsilon
from busadv.data import ImageSet
from busadv.explain import NoLesionMasks, PointingRow, pointing_game
from busadv.models.checkpoints import CheckpointInfo


@st.cache_data(max_entries=16, show_spinner="Playing the pointing game on every test image with a lesion…")
def _pointing(path: str, version: int, attack: str, epsilons: tuple[float, ...],
              _images: ImageSet) -> list[PointingRow]:
    checkpoint = checkpoints.load_model(path, version)
    return pointing_game(checkpoint.require_model(), _images, attack, epsilons, arch=checkpoint.arch)


def test_set_attention(info: CheckpointInfo, test_set: ImageSet, attack: str) -> None:
    """The pointing game over the model's held-out lesion images as epsilon grows (on request: seconds to minutes)."""
    st.markdown("**Does attention stay on the lesion across all test images?**")
    if test_set.masks is None or not bool(test_set.masks.flatten(1).any(1).any()):
        st.info("Unavailable: these images have no lesion outlines (phantoms always do; a BUSI folder needs its "
                "'_mask.png' files beside the images).")
        return
    epsilons = (0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255)
    st.caption(f"Grad-CAM on every held-out image with an outlined lesion, under {attack_label(attack)} at "
               f"{', '.join(format_epsilon(e) for e in epsilons[1:])}. The same numbers from a terminal: "
               f"python -m busadv attention {plain(info.path.name)} --attack {attack}")
    if not st.button("Measure", key="pointing_game"):
        return
    try:
        rows = _pointing(str(info.path), mtime_ns(info.path), attack, epsilons, _images=test_set)
    except NoLesionMasks as exc:
        st.info(f"Unavailable: {plain(exc)}.")
        return
    st.dataframe([{"ε": format_epsilon(r.epsilon) if r.epsilon else "clean",
                   "peak on lesion": f"{r.on_lesion:.0%}", "attention on lesion": f"{r.lesion_share:.0%}",
                   "lesion area": f"{r.lesion_area:.0%}",
                   "correlation with clean": "—" if np.isnan(r.correlation) else f"{r.correlation:.2f}",
                   "diagnosis flipped": f"{r.flipped:.0%}"} for r in rows], hide_index=True)
    st.caption(f"{rows[0].images} images. Peak on lesion: the pointing game, the share of images whose map has its "
               "hottest pixel inside the lesion. Attention on lesion beside the lesion's own share of the image: a "
               "model that looks everywhere equally scores that area. Correlation with clean: how alike the clean "
               "and the perturbed maps are (1: the same places, 0: unrelated, below 0: elsewhere).")
