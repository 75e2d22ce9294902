"""The first start: on a fresh install (no data folder, no model) the explorer gets ready by itself.

Why: a first visitor should see what busadv is about, a diagnosis flipping under a tiny perturbation,
without reading instructions or pressing a button. With no checkpoint and no BUSI folder configured, the
first page load (Home or the explorer) starts one small training run: SimpleCNN at 48 px on the simulated
phantoms, 8 epochs of batch 16 (`train_job`, as a job would, so its checkpoint and result rows land where
every other run's do). The page shows its progress and opens the explorer when the checkpoint lands (Home
switches to it). The benchmark's first-start row measures the time from the server's start to a flipping
explorer, opened at /.

Why in the server, on a thread, and not as a background job: a job worker first starts a Python process
and imports torch (seconds, minutes on a loaded machine), and trains with torch's default two threads,
which on busy cores is several times slower than the server's one (busadv.app.layout sets it). The run
is a few seconds of one thread.

The recipe (seed 3 of it) was picked by measuring: ~90% of the held-out phantoms right, and the first
image the explorer shows (the first malignant test phantom) flips under FGSM at 3/255, below the
slider's 4/255 default; the explorer says so, with the smallest flipping epsilon, as for any model.

What is not done: nothing real is ever labelled as clinical (the model and its images say "Simulated
phantoms (not clinical images)" wherever they appear), and a BUSI folder is never trained on unasked
(BUSADV_DATA set: the quick-train panel offers a model with a button instead). A failed first start
says why and hands over to the quick-train panel. BUSADV_FIRST_START=off turns it off (the tests of
the no-model pages set it).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from busadv.app import jobs
from busadv.app.dataset import SIMULATED_LABEL
from busadv.app.layout import EXPLORER_PAGE
from busadv.data import data_setting
from busadv.progress import ProgressEvent
from busadv.settings import checkpoints_dir

SWITCH = "BUSADV_FIRST_START"
FIRST_START_CONFIG: dict[str, Any] = {
    "arch": "simplecnn", "mode": "standard", "image_size": 48, "epochs": 8, "batch_size": 16, "lr": 2e-3,
    "seed": 3, "monitor_images": 0, "data": None, "device": "cpu", "test_attacks": ["fgsm"],
    "test_epsilons": [2 / 255, 4 / 255, 8 / 255],
    # The plain recipe it was measured with, pinned: the default recipe's validation split, weight averaging and
    # schedule need more than 8 short epochs and left this model answering ~34% for every class.
    "augment": "none", "optimizer": "adam", "weight_decay": 0.0, "schedule": "constant", "ema_decay": 0.0,
    "val_fraction": 0.0, "select": "last", "patience": 0, "refit": False}
OPENING = "_first_start_opens_explorer"


def enabled() -> bool:
    """On unless switched off, and only on the simulated phantoms (never a real folder unasked)."""
    return os.environ.get(SWITCH, "on").strip().lower() not in ("0", "off", "no", "false") and data_setting() is None


@dataclass
class FirstStart:
    """The first-start run of one server and checkpoints folder: started once, shared by every tab."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None
    fraction: float = 0.0
    message: str = "starting: making the simulated phantoms"
    error: str | None = None
    finished: float | None = None

    def start(self) -> FirstStart:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="busadv-first-start", daemon=True)
                self.thread.start()
        return self

    def _report(self, event: ProgressEvent) -> None:
        self.fraction, self.message = min(max(float(event.fraction), 0.0), 1.0), event.message

    def _run(self) -> None:
        from busadv.experiments import train_job

        try:
            train_job(dict(FIRST_START_CONFIG), progress=self._report)
            self.fraction, self.message = 1.0, "ready"
        except Exception as exc:  # noqa: BLE001 - shown on the page, which then offers the quick-train panel
            self.error = f"{type(exc).__name__}: {exc}"
        self.finished = time.time()

    @property
    def training(self) -> bool:
        return self.thread is not None and self.finished is None


@st.cache_resource(show_spinner=False)
def _first_start(folder: str) -> FirstStart:
    return FirstStart()


def ensure_started() -> FirstStart | None:
    """Start the first-start run once per checkpoints folder; its state, or None where it does not apply."""
    return _first_start(str(checkpoints_dir())).start() if enabled() else None


def _progress(state: FirstStart) -> None:
    """The run's progress, redrawn every second; one full rerun when it ends (the explorer then has a model)."""
    @st.fragment(run_every=1.0)
    def bar() -> None:
        st.progress(state.fraction, text=f"{state.message} · {state.fraction:.0%}")
        if not state.training:
            st.rerun()

    bar()


def panel(store: jobs.PageJobStore, data_label: str) -> None:
    """The explorer with no model: the first start's progress (nothing to click), else the quick-train panel."""
    state = ensure_started()
    if state is None or not state.training:
        if state is not None and state.error:
            st.error(f"The demonstration model could not be trained: {state.error}", icon=":material/error:")
        jobs.quick_train_panel(store, data_label)
        return
    st.info("**No trained model yet: getting the explorer ready.** busadv is training a small demonstration "
            f"model (SimpleCNN, {FIRST_START_CONFIG['image_size']} px) on {SIMULATED_LABEL.lower()}. The explorer "
            "opens here by itself when it is done, usually within half a minute; nothing to click. Train on real "
            "images from the Jobs page once BUSADV_DATA points at your BUSI folder.", icon=":material/hourglass_top:")
    _progress(state)


def home_notice() -> None:
    """Home with no model: say that one is being made (and start it), or how to get one."""
    state = ensure_started()
    if state is not None and state.training:
        st.session_state[OPENING] = True
        st.info("No trained model yet: a small demonstration model is being trained on "
                f"{SIMULATED_LABEL.lower()}. The Perturbation explorer opens here by itself when it is ready, "
                "usually within half a minute; nothing to click.", icon=":material/hourglass_top:")
        _progress(state)
    else:
        st.info("No trained model yet. The Perturbation explorer offers to train a quick one "
                "(about a minute on two CPU cores).")


def open_explorer_when_ready() -> None:
    """Home, once the first start it was waiting for has its model: open the explorer by itself.

    Why: a fresh install opened at / must show the demonstration, a diagnosis flipping under a slider,
    without a click. Only the session that watched the first start is sent on; Home stays Home otherwise.
    """
    if st.session_state.pop(OPENING, False):
        st.switch_page(EXPLORER_PAGE)
