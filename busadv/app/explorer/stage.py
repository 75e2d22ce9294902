"""The explorer's first screen, as one component: what a lecture hall sees without scrolling.

On the left one figure holds the original and the perturbed image side by side, each with its class
probabilities as text (the predicted class marked), and the epsilon slider under them. Every slider
position is computed when the model, image and perturbation are chosen (for FGSM: one backward pass and
one batched forward pass; busadv.explorer.PerturbationProbe.strip), and the slider moves between those
precomputed frames in the browser: a step shows the new picture and its numbers with no page rerun and no
round trip to the server (busadv.bench.browser measures it). On the right: the model, the image and the
perturbation, and the smallest epsilon that flips the diagnosis.

The sections below (a closer look with Grad-CAM, the strip, the comparison, the original file, the test
set) read the returned `Stage`; presenter mode draws the same figure larger and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from busadv.app import checkpoints, dataset, layout
from busadv.app.dataset import DataFacts
from busadv.app.explorer import choices
from busadv.app.explorer.closer import Lesion
from busadv.app.explorer.probes import (
    ImageChoice,
    ProbeView,
    image_for,
    images_of_class,
    lesion_for,
    open_probe,
    progress_bar,
)
from busadv.app.layout import plain
from busadv.app.widgets import EPSILON_CHOICES
from busadv.attacks import ADVERSARIAL, AttackSpec, attack_label, explorer_attacks, format_epsilon
from busadv.data import ImageSet
from busadv.explorer import to_uint8
from busadv.models.checkpoints import CheckpointError, CheckpointInfo
from busadv.plots import explorer as plots  # the stage's figure and its geometry

DEFAULT_EPSILON = 4 / 255
FIGURE_KEY = "stage"

# The first screen's frame: less room above the title, the figure's height follows its width (CSS container
# units, so the pictures stay square on a 1280 px laptop and a 1920 px projector alike) but never exceeds the
# window's height, and the controls column keeps its widgets compact.
STYLE = """<style>
div[data-testid="stMainBlockContainer"] { padding-top: 2.4rem; padding-left: 2.5rem; padding-right: 2.5rem; }
.st-key-explorer-head h1 { font-size: 2rem; padding: 0.25rem 0 0.25rem 0; }
.st-key-stage-box { container-type: inline-size; }
.st-key-stage-box [data-testid="stPlotlyChart"] { height: min(calc((100cqw - 8px) * %(side).4f + %(fixed)dpx),
                                                              calc(100vh - %(above)dpx)); min-height: 420px; }
</style>"""


@dataclass(frozen=True)
class Stage:
    """What the first screen shows: the sections below read it."""

    info: CheckpointInfo
    others: list[CheckpointInfo]          # the other models, healthiest first (for the comparison)
    view: ProbeView
    test_set: ImageSet | None             # None for an uploaded image
    offered: tuple[AttackSpec, ...]
    attack: str
    eps: float                            # the page's epsilon (the slider's starting position)
    flip_eps: float | None
    lesion: Lesion


def style(large: bool) -> None:
    fixed = plots.STAGE_TOP + plots.STAGE_BOTTOM + 4 + (plots.LARGE_EXTRA if large else 0)
    # What the window holds above the figure: the title row (presenter mode: the switch, the step bar and its sentence).
    st.html(STYLE % {"side": plots.STAGE_SIDE, "fixed": fixed, "above": 200 if large else 120})


def header() -> bool:
    """The page's title with the presenter-mode switch beside it; returns whether presenter mode is on."""
    with st.container(horizontal=True, vertical_alignment="center", key="explorer-head"):
        st.title("Perturbation explorer", width="stretch", anchor=False)
        presenting = bool(st.toggle(
            "Presenter mode", key="presenter",
            help="For a lecture hall: the two pictures, their diagnoses and the ε slider, large, and nothing else; "
                 "four steps (→ next, ← back): clean, a tiny change, the smallest change that flips the diagnosis, "
                 "and the same amount of scanner variation."))
    return presenting


def current_epsilon() -> float:
    """The page's epsilon: the closer look's slider when drawn, else the value it last had (or a link's)."""
    choices.restore("eps")
    wanted = float(st.session_state.get("eps", DEFAULT_EPSILON))
    return min(EPSILON_CHOICES, key=lambda e: abs(e - wanted))


def _model(infos: list[CheckpointInfo], facts: DataFacts, link: dict[str, str] | None,
           container: Any) -> tuple[CheckpointInfo, list[CheckpointInfo]]:
    ordered = checkpoints.explorer_order(infos, facts.simulated)
    by_name = {info.name: info for info in ordered}
    choices.apply_model_link(link, list(by_name))
    name = container.selectbox("Trained model", list(by_name), key="model",
                               format_func=lambda n: plain(checkpoints.checkpoint_label(by_name[n])),
                               help="The healthiest model comes first: trained on this kind of data, not collapsed, "
                                    "best clean balanced accuracy.")
    return by_name[name], [o for o in ordered if o.name != name]


def _image(info: CheckpointInfo, facts: DataFacts, link: dict[str, str] | None,
           container: Any) -> tuple[ImageChoice | None, ImageSet | None]:
    """The image picker: a held-out test image by diagnosis, or an upload. (None, ...) when there is nothing yet."""
    classes = list(info.classes)
    source = container.radio("Image", ["Test image", "Upload your own"], horizontal=True, key="source",
                             help="Test images are the model's own held-out images when it was trained on the active "
                                  "data.")
    if source == "Test image":
        if facts.error:
            container.error("Test images need a usable data folder; upload an image instead.")
            return None, None
        try:
            test_set, which = checkpoints.test_images_for(info)
        except CheckpointError as exc:  # its classes are not the data's: its test images cannot be scored
            container.error(f"This model's test images cannot be shown: {plain(exc)} Upload an image instead.",
                            icon=":material/block:")
            return None, None
        choices.apply_image_link(link, test_set, classes)
        if st.session_state.get("true_class") not in classes:
            st.session_state["true_class"] = classes[1] if len(classes) > 1 else classes[0]
        wanted = container.segmented_control("True diagnosis", classes, key="true_class", required=True,
                                             format_func=plain)
        label = classes.index(wanted) if wanted in classes else 0
        candidates = images_of_class(test_set, label)
        if not candidates:
            container.warning(f"No {plain(classes[label])} image among the test images.")
            return None, test_set
        if st.session_state.get("image_index") not in candidates:
            st.session_state["image_index"] = candidates[0]
        index = container.selectbox(f"{plain(classes[label]).capitalize()} test image ({len(candidates)})",
                                    candidates, key="image_index", format_func=lambda i: plain(test_set.names[i]))
        container.caption(f"Showing {plain(which)}.")
        return ImageChoice(key=f"{test_set.fingerprint}:{test_set.names[index]}", name=test_set.names[index],
                           true_label=label), test_set
    known = container.selectbox("Known diagnosis (optional)", ["unknown", *classes], key="known", format_func=plain,
                                help="With a known diagnosis the attack pushes away from it; otherwise from the "
                                     "model's own answer.")
    upload = container.file_uploader("Ultrasound image (PNG or JPEG, up to 20 MB)", type=["png", "jpg", "jpeg"],
                                     key="upload")
    if upload is None:
        return None, None
    content = upload.getvalue()
    return ImageChoice(key=dataset.image_key(content), name=upload.name,
                       true_label=None if known == "unknown" else classes.index(known), upload=content), None


def _warnings(info: CheckpointInfo, choice: ImageChoice, facts: DataFacts, container: Any) -> None:
    if checkpoints.is_collapsed(info):
        container.warning("This model answers one class for (almost) every clean test image: a flip says little. "
                          "Pick another model if you can.", icon=":material/warning:")
    if choice.upload is not None and info.simulated:
        container.warning(f"This model learned from {dataset.SIMULATED_LABEL}: its answer on a real ultrasound image "
                          "is not a diagnosis. Train on BUSI (set BUSADV_DATA) to explore real images.",
                          icon=":material/warning:")
    elif choice.upload is None and info.simulated != facts.simulated:
        trained_on = dataset.SIMULATED_LABEL if info.simulated else "real BUSI images"
        container.warning(f"This model was trained on {trained_on} but the images shown are {facts.label}: its "
                          "answers here are outside what it learned.", icon=":material/warning:")


def figure(view: ProbeView, attack: str, eps: float, large: bool = False) -> None:
    """The two pictures, their probabilities and the slider over every epsilon, precomputed (see the module)."""
    epsilons = list(EPSILON_CHOICES)
    active = min(range(len(epsilons)), key=lambda i: abs(epsilons[i] - eps))
    slow = view.slow(attack)
    items = view.strip(attack, tuple(epsilons), progress=progress_bar(
        f"Computing {attack_label(attack)} at every slider position (one attack each)") if slow else None)
    fig = plots.epsilon_stage(to_uint8(view.probe.x), view.clean().tolist(), epsilons, [i.image for i in items],
                              [i.probabilities.tolist() for i in items], view.classes, attack_label(attack), active,
                              true_label=view.choice.true_label, large=large)
    with st.container(key=f"{FIGURE_KEY}-box"):
        st.plotly_chart(fig, key=FIGURE_KEY, height="stretch", config={
            "displaylogo": False, "scrollZoom": False, "responsive": True,
            "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d", "toImage"]})


def flip_readout(view: ProbeView, attack: str, container: Any) -> float | None:
    """'Smallest ε that flips it', searched where it is shown (with a progress bar for an iterative attack)."""
    with container:
        flip = view.smallest_flip(attack, progress_bar(f"Searching the smallest flipping ε with {attack_label(attack)}")
                                  if view.slow(attack) else None)
        layout.readout_row("Smallest ε that flips it", format_epsilon(flip) if flip is not None else "none up to 0.5",
                           key="flip-row", note=f"with {attack_label(attack)}",
                           help="Searched on every k/255 up to 127/255, then at 0.5. Drag the slider there to see it.")
    return flip


# Presenter mode's steps: given the page's attack and its smallest flipping epsilon, draw the step bar and return
# the perturbation and epsilon to show.
Steps = Callable[[str, "float | None"], tuple[str, float]]


def first_screen(infos: list[CheckpointInfo], facts: DataFacts, link: dict[str, str] | None,
                 steps: Steps | None = None) -> Stage | None:
    """Draw the first screen; None when there is no image to show yet (an upload not given, an unusable file).

    With `steps` (presenter mode) the step bar comes first, then the figure in larger type, and the pickers
    wait folded below it.
    """
    presenting = steps is not None
    style(presenting)
    if presenting:
        bar, left = st.container(), st.container()
        right: Any = st.expander("Model, image and perturbation", expanded=False)
    else:
        left, right = st.columns([2.2, 1], gap="medium")
    info, others = _model(infos, facts, link, right)
    choice, test_set = _image(info, facts, link, right)
    offered = explorer_attacks()
    attack = choices.attack_choice(offered, right)
    spec = next(s for s in offered if s.name == attack)
    right.caption(f"Data: {dataset.SIMULATED_LABEL if facts.simulated else plain(facts.label)}.")
    if choice is None:
        if st.session_state.get("source") == "Upload your own":
            left.info("Upload a breast-ultrasound image (on the right) to see how the model's answer changes. It is "
                      "converted to grayscale and resized to the model's square input, as the training images were.",
                      icon=":material/upload:")
        return None
    if spec.family == ADVERSARIAL and choice.true_label is None:
        right.caption("No known diagnosis: the attack aims at the model's own prediction.")
    _warnings(info, choice, facts, right)
    with left:
        choices.link_notes()
    image, problem = image_for(choice, info)
    if image is None:
        left.error(plain(problem or "This image cannot be used."), icon=":material/block:")
        return None
    view = open_probe(info, choice, image)
    eps = current_epsilon()
    if steps is not None:
        with bar:
            flip = view.smallest_flip(attack, progress_bar(f"Searching the smallest flipping ε with "
                                                           f"{attack_label(attack)}") if view.slow(attack) else None)
            shown_attack, shown_eps = steps(attack, flip)
        with left:
            figure(view, shown_attack, shown_eps, large=True)
    else:
        with left:
            figure(view, attack, eps)
        flip = flip_readout(view, attack, left)  # under the slider: on the first screen of a 1280x720 laptop
    choices.write_link(info.name, choice.name if choice.upload is None else None, attack, eps, presenting)
    return Stage(info=info, others=others, view=view, test_set=test_set, offered=offered, attack=attack, eps=eps,
                 flip_eps=flip, lesion=Lesion(*lesion_for(choice, info)))
