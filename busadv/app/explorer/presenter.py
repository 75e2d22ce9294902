"""Presenter mode: the explorer's first screen in large type, walked through in four steps for a lecture hall.

The story: the clean image and its answer; a change too small to see; the smallest change that flips
the answer; and the same amount of ordinary scanner variation (or random noise), which does not. The
plan is plain data (`plan`), so it can be tested without a browser; `controls` draws the step buttons
(→ and ← work as shortcuts, as do most presentation clickers' arrow keys).
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from busadv.attacks import attack_label, format_epsilon

SMALL_EPSILON = 2 / 255
STEP_KEY = "presenter_step"

# Presenter mode hides the sidebar and enlarges the step buttons and the verdict: read from the back row.
STYLE = """<style>
section[data-testid="stSidebar"], div[data-testid="stSidebarCollapsedControl"] { display: none; }
div[data-testid="stMainBlockContainer"] { padding-top: 1.2rem !important; }
.st-key-explorer-head h1 { font-size: 1.05rem !important; padding: 0 !important; color: #808495; }
.st-key-explorer-head { min-height: 0; }
div[data-testid="stMainBlockContainer"] h5 { padding: 0; }
.st-key-presenter-prev button, .st-key-presenter-next button { min-height: 3rem; }
.st-key-presenter-prev button p, .st-key-presenter-next button p { font-size: 1.3rem; }
</style>"""


@dataclass(frozen=True)
class Step:
    """One step of the walk-through: what is shown and the sentence that goes with it."""

    key: str        # clean, small, flip, compare
    title: str
    attack: str
    epsilon: float
    lead: str


def plan(attack: str, flip: float | None, compare_with: str, small: float = SMALL_EPSILON,
         largest: float = 0.5) -> list[Step]:
    """clean -> a small epsilon -> the smallest flipping epsilon -> the same size of `compare_with`.

    The small step stays below the flip (1/255 when the flip is at 2/255; left out when 1/255 already flips).
    Without a flip up to `largest`, the third step shows `largest` and says so.
    """
    name = attack_label(attack)
    steps = [Step("clean", "The image, as the model sees it", attack, 0.0,
                  "No change at all: this is the model's answer and where it looks.")]
    if flip is not None and flip <= small:
        small = flip - 1 / 255
    if small >= 1 / 255 - 1e-9:
        grey = round(small * 255)
        steps.append(Step("small", f"A change too small to see: ε = {format_epsilon(small)}", attack, small,
                          f"{name} may move each pixel by at most {grey} grey level{'s' if grey != 1 else ''} of "
                          "255, in the direction that hurts the model most."))
    if flip is not None:
        steps.append(Step("flip", f"The smallest change that flips it: ε = {format_epsilon(flip)}", attack, flip,
                          f"At this size {name} changes the diagnosis. Compare the two images: can you see the "
                          "change? Then look at where the model now looks."))
    else:
        steps.append(Step("flip", f"No ε up to {format_epsilon(largest)} flips it", attack, largest,
                          f"Even at ε = {format_epsilon(largest)}, {name} does not change this diagnosis. Try PGD, "
                          "the strongest attack, or another image."))
    size = steps[-1].epsilon
    other = attack_label(compare_with)
    steps.append(Step("compare", f"The same size of {other.lower()}: ε = {format_epsilon(size)}", compare_with, size,
                      f"{other} changes pixels by as much as the attack did, but without aiming. What happens to "
                      "the answer?"))
    return steps


def _go(delta: int, count: int) -> None:
    st.session_state[STEP_KEY] = max(0, min(count - 1, int(st.session_state.get(STEP_KEY, 0)) + delta))


def controls(steps: list[Step]) -> Step:
    """One compact row: previous, the step and its title, next (← and → on the keyboard); the step's sentence
    under it. Returns the step to show."""
    count = len(steps)
    step = max(0, min(count - 1, int(st.session_state.get(STEP_KEY, 0))))
    st.session_state[STEP_KEY] = step
    chosen = steps[step]
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
        st.button("Previous", key="presenter-prev", on_click=_go, args=(-1, count), disabled=step == 0,
                  shortcut="Left", width=170)
        st.markdown(f"### Step {step + 1} of {count}: {chosen.title}", width="stretch")
        st.button("Next", key="presenter-next", on_click=_go, args=(1, count), disabled=step == count - 1,
                  type="primary", shortcut="Right", width=170)
    st.markdown(f"##### {chosen.lead}")
    return chosen


def style() -> None:
    st.html(STYLE)
