"""The explorer's original file (a tab below the first screen): the image as stored, at its own resolution, beside
the model's square input."""

from __future__ import annotations

import streamlit as st

from busadv.app.explorer.closer import zoomable
from busadv.app.explorer.probes import ProbeView, original_image
from busadv.explain import Panel
from busadv.explorer import to_uint8


def original(view: ProbeView) -> None:
    """The image as stored, at its own resolution, beside the model's square input: zoom both to compare."""
    pixels, what = original_image(view.choice, int(view.probe.x.shape[-1]))
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
