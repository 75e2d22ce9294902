"""The frame every page shares: wide layout, one menu, the data label, rows that wrap, readout tiles.

Why every page calls page_setup first: in Streamlit's classic multipage layout (app.py plus pages/,
no st.navigation) a request for /Jobs runs pages/2_Jobs.py alone, never app.py, so anything a page
needs must come from the page itself. The menu is drawn here rather than by Streamlit
(client.showSidebarNavigation = false) because Streamlit would name the home page "app", after its file.
"""

from __future__ import annotations

import functools
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from busadv.app.dataset import sidebar_dataset_label
from busadv.app.markdown import plain
from busadv.plots.style import legend_below  # noqa: F401 - the pages call layout.legend_below

# The app's pages: (script, menu label, icon). Streamlit serves app.py at / and pages/N_Name.py at
# /Name; the numbers only order the files.
HOME_PAGE = "app.py"
EXPLORER_PAGE = "pages/1_Perturbation_explorer.py"
JOBS_PAGE = "pages/2_Jobs.py"
RESULTS_PAGE = "pages/3_Results.py"
STUDY_PAGE = "pages/4_Study.py"
DATASET_PAGE = "pages/5_Dataset.py"
PAGES: tuple[tuple[str, str, str], ...] = (
    (HOME_PAGE, "Home", ":material/home:"),
    (EXPLORER_PAGE, "Perturbation explorer", ":material/tune:"),
    (JOBS_PAGE, "Jobs", ":material/model_training:"),
    (RESULTS_PAGE, "Results", ":material/bar_chart:"),
    (STUDY_PAGE, "Study", ":material/fact_check:"),
    (DATASET_PAGE, "Dataset", ":material/photo_library:"),
)


def page_setup(title: str) -> None:
    """The first call of every page: wide layout, tab title, the menu and the data label in the sidebar."""
    import torch

    # One thread for the page's own small forward passes: with a training job on the same cores, two
    # threads wait on each other (7-10x slower slider, measured by busadv.bench's levers).
    torch.set_num_threads(1)
    # The tab's icon is drawn here: a ":material/...:" page icon makes the browser fetch it from Google's servers,
    # and busadv must work in a lecture hall or a hospital with no way out (nothing from another host).
    st.set_page_config(page_title=f"{title} · busadv" if title != "Home" else "busadv — adversarial ultrasound",
                       page_icon=_favicon(), layout="wide")
    problem = environment_problem()
    if problem:  # a bad BUSADV_* variable: one line naming it and the fix, instead of a traceback further down
        st.error(plain(problem), icon=":material/error:")
        st.stop()
    with st.sidebar:
        for path, label, page_icon in PAGES:
            st.page_link(path, label=label, icon=page_icon)
    sidebar_dataset_label()


def environment_problem() -> str | None:
    """The environment's first problem (busadv's folders, job limit, plugins) in one line, or None."""
    from busadv.registry import PluginError, load_plugins
    from busadv.settings import environment_problem as settings_problem

    problem = settings_problem()
    if problem is None:
        try:
            load_plugins()
        except PluginError as exc:
            problem = str(exc)
    return problem


@functools.cache
def _favicon() -> Any:
    """busadv's tab icon, drawn once: a grey speckle square under a blue band (an ultrasound and its slider)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = np.stack([rng.integers(60, 200, (32, 32))] * 3, axis=-1).astype(np.uint8)
    pixels[22:28, 3:29] = (31, 90, 150)
    return Image.fromarray(pixels)


def flow(gap: str = "small") -> DeltaGenerator:
    """A row whose items wrap onto the next line when the screen is narrow.

    Why not st.columns: columns share the width whatever it is, so on a 900 px screen beside the
    sidebar an image or a number gets a few dozen pixels and is cut off or broken mid-word. Items
    of fixed width in a flow keep their size and move down instead.
    """
    return st.container(horizontal=True, wrap=True, gap=gap)  # type: ignore[arg-type]


def readout_row(label: str, value: str, key: str, note: str | None = None, help: str | None = None) -> None:
    """A readout on one line (label, value, note), for under a figure where a tile would fall below the fold."""
    with st.container(horizontal=True, vertical_alignment="center", gap="small", key=key):
        st.caption(label, help=help, width="content")
        st.markdown(f"#### {value}", anchors=False, width="content")
        if note:
            st.markdown(note, width="content")


def readout(label: str, value: str, note: str | None = None, help: str | None = None, width: int = 280) -> None:
    """A bordered tile: a small label over a large value that wraps between words (st.metric cuts it with '…')."""
    with st.container(border=True, width=width):
        st.caption(label, help=help)
        st.markdown(f"#### {value}", anchors=False)
        if note:
            st.markdown(note)


