"""The explorer's closer look at one epsilon (first tab below the first screen): the verdict, big zoomable pictures
with the amplified change and Grad-CAM, the attention numbers, and the exports.

Each Grad-CAM map explains the model's own answer on that image unless a class is chosen: "the model
said benign, here is where it looked; now it says malignant, here is where it looked".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import streamlit as st

from busadv import plots
from busadv.app import layout
from busadv.app.checkpoints import checkpoint_heading
from busadv.app.explorer import choices
from busadv.app.explorer.probes import ProbeView
from busadv.app.layout import plain
from busadv.attacks import attack_label, format_epsilon
from busadv.explain import (
    AttentionShift,
    CamResult,
    Comparison,
    Panel,
    attention_difference,
    attention_shift,
    cam_overlay,
    comparison_html,
    comparison_png,
)
from busadv.explorer import amplified_perturbation, to_uint8
from busadv.plots.images import ZOOM_CONFIG, grid_css_height, image_grid

CAM_LEGEND = ("Grad-CAM (the grad-cam package): red where the evidence for the explained class is strongest, blue "
              "where there is none; the cross marks the map's peak.")
ZOOM_HINT = "Drag a box on any picture to zoom all of them to the same region; double-click to zoom out."


def cam_legend(lesion: Lesion) -> str:
    """The pictures' legend: the lesion's white outline is named only where one is drawn."""
    outline = " **White outline: the lesion.**" if lesion.mask is not None else ""
    return f"{CAM_LEGEND}{outline} {ZOOM_HINT}"


@dataclass(frozen=True)
class Lesion:
    """The chosen image's lesion outline at the model's size, or why there is none."""

    mask: np.ndarray | None
    reason: str | None


def verdict(view: ProbeView, attack: str, eps: float, clean: np.ndarray, perturbed: np.ndarray) -> str:
    """Draw the one-line verdict (flipped in red, wrong-already in orange, unchanged in green) and return it."""
    classes, true_label = [plain(c) for c in view.classes], view.choice.true_label
    before, after = int(clean.argmax()), int(perturbed.argmax())
    truth = f" (true diagnosis: **{classes[true_label]}**)" if true_label is not None else ""
    where = "on the clean image" if eps == 0 else f"at ε = {format_epsilon(eps)}"
    if after != before:
        text = (f"Diagnosis flipped: {classes[before]} ({clean[before]:.0%}) → {classes[after]} "
                f"({perturbed[after]:.0%}) {where}{truth}")
        st.error(f"#### :material/warning: {text}")
    elif true_label is not None and before != true_label:  # "unchanged" in green would read as good news
        text = (f"Prediction unchanged, and wrong without any noise: {classes[before]} ({clean[before]:.0%} → "
                f"{perturbed[before]:.0%}) {where}{truth}")
        st.warning(f"#### {text}", icon=":material/error:")
    elif eps == 0:
        text = f"The model's answer: {classes[before]} ({clean[before]:.0%}){truth}"
        st.info(f"#### {text}", icon=":material/visibility:")
    else:
        text = f"Prediction unchanged: {classes[before]} ({clean[before]:.0%} → {perturbed[before]:.0%}) {where}{truth}"
        st.success(f"#### {text}")
    return text.replace("**", "")


def _explains(classes: list[str], cam: CamResult, probs: np.ndarray) -> str:
    target = cam.targets[0]
    return f"for '{classes[target]}' ({probs[target]:.0%})"


def panels(view: ProbeView, attack: str, eps: float, lesion: Lesion, clean_cam: CamResult, cam: CamResult,
           columns: int) -> list[Panel]:
    """The pictures of one condition, ordered for `columns` per row (3: clean | perturbed | difference)."""
    classes, size = view.classes, view.probe.x.shape[-1]
    x, perturbed_x = view.probe.x, view.probe.perturbed(attack, eps)
    clean_probs, probs = clean_cam.probabilities[0], cam.probabilities[0]
    clean_in = Panel("Clean", to_uint8(x), note=f"model input, {size}×{size} px")
    clean_map = Panel("Looks at: clean", cam_overlay(x, clean_cam.maps[0], lesion.mask),
                      note=_explains(classes, clean_cam, clean_probs))
    if eps == 0:
        return [clean_in, clean_map]
    delta = (perturbed_x - x).abs().max().item()
    gain = f" ×{127 / (delta * 255):.0f}" if delta > 0 else ""
    return _ordered([
        clean_in,
        Panel(attack_label(attack), to_uint8(perturbed_x), note=f"ε = {format_epsilon(eps)}"),
        Panel(f"Change{gain}", amplified_perturbation(x, perturbed_x), note="amplified; grey: none"),
        clean_map,
        Panel("Looks at: perturbed", cam_overlay(perturbed_x, cam.maps[0], lesion.mask),
              note=_explains(classes, cam, probs)),
        Panel("Attention moved", attention_difference(x, clean_cam.maps[0], cam.maps[0], lesion.mask),
              note="red: more, blue: less"),
    ], columns)


def _ordered(six: list[Panel], columns: int) -> list[Panel]:
    """Three per row: pictures over maps. Two per row: clean beside perturbed, maps beside maps, differences."""
    if columns == 3:
        return six
    return [six[i] for i in (0, 1, 3, 4, 2, 5)]


def shift_readouts(shift: AttentionShift, lesion: Lesion, eps: float) -> list[str]:
    """Tiles with how far attention moved; returns the same facts as sentences for the export."""
    r = shift.correlation
    kept = "—" if r is None else f"r = {r:.2f}"
    words = correlation_words(r)
    facts = [f"Attention kept (correlation of the clean and perturbed maps): {kept}, {words}"] if eps > 0 else []
    with layout.flow():
        if eps > 0:
            layout.readout("Attention kept", kept, width=250, note=words,
                           help="Pearson correlation r of the clean and the perturbed Grad-CAM maps: 1 means the "
                                "model looks at exactly the same places, 0 that the two maps are unrelated, and a "
                                "negative r that it now looks where it did not before.")
        if lesion.mask is None or shift.clean is None or shift.perturbed is None:
            layout.readout("Attention on the lesion", "unavailable", note=f"Why: {lesion.reason}.", width=396)
            return [*facts, f"Attention on the lesion: unavailable ({lesion.reason})"]
        before, after = shift.clean, shift.perturbed
        share = f"{before.share:.0%}" if eps == 0 else f"{before.share:.0%} → {after.share:.0%}"
        peak = _yes(before.peak_inside) if eps == 0 else f"{_yes(before.peak_inside)} → {_yes(after.peak_inside)}"
        layout.readout("Attention on the lesion", share, width=190,
                       note=f"the lesion is {before.area:.0%} of the image",
                       help="Share of the Grad-CAM map's total inside the lesion outline. A map spread evenly "
                            "over the image would score the lesion's share of the image.")
        layout.readout("Peak on the lesion", peak, width=190, note="the pointing game",
                       help="Is the map's hottest pixel (the cross) inside the lesion outline?")
    return [*facts, f"Attention on the lesion: {share} (the lesion covers {before.area:.0%} of the image)",
            f"Map peak on the lesion (pointing game): {peak}"]


def correlation_words(r: float | None) -> str:
    """A correlation of two attention maps said in words: 'r = -0.36' means little to most of an audience."""
    if r is None:
        return "a map has no evidence to compare"
    if r >= 0.8:
        return "it looks at the same places"
    if r >= 0.5:
        return "mostly the same places"
    if r >= 0.2:
        return "partly the same places"
    if r > -0.2:
        return "unrelated places: attention moved"
    return "it now looks where it did not before"


def _yes(value: bool | None) -> str:
    return "no peak" if value is None else ("yes" if value else "no")


def condition(view: ProbeView, attack: str, eps: float, lesion: Lesion, *, flip_eps: float | None,
              target: int | None = None, columns: int = 3, row_height: int = 330, key: str = "main",
              large: bool = False, flip_attack: str | None = None,
              below_pictures: Callable[[], None] | None = None) -> Comparison:
    """One condition drawn in full: verdict, readouts, pictures, probabilities and attention numbers; returns
    what was shown, for the exports.

    `large` (presenter mode): bigger titles and bars, and no readout tiles, which would only repeat the verdict
    and push the pictures below a projector's fold. `below_pictures` draws the pictures' own controls.
    """
    classes = view.classes
    names = [plain(c) for c in classes]  # Markdown below; the charts escape for Plotly themselves
    clean, probs = view.clean(), view.probabilities(attack, eps)
    said = verdict(view, attack, eps, clean, probs)
    before, after = int(clean.argmax()), int(probs.argmax())
    wrong = view.choice.true_label is not None and before != view.choice.true_label
    flip_text = format_epsilon(flip_eps) if flip_eps is not None else "none up to 0.5"
    if not large:
        with layout.flow():
            layout.readout("Clean prediction", f"{names[before]} {clean[before]:.0%}", width=230,
                           note=":orange-badge[:material/error: wrong]" if wrong else None)
            if eps > 0:
                layout.readout(f"With {attack_label(attack)}, ε = {format_epsilon(eps)}",
                               f"{names[after]} {probs[after]:.0%}", width=230,
                               note=":red-badge[:material/warning: flipped]" if after != before else
                               ":gray-badge[unchanged]")
            layout.readout("Smallest ε that flips it", flip_text, note=f"with {attack_label(flip_attack or attack)}",
                           help="Searched on every k/255 up to 127/255, then at 0.5.", width=230)
    clean_cam = view.attention(attack, 0.0, target)
    cam = view.attention(attack, eps, target)
    shown = panels(view, attack, eps, lesion, clean_cam, cam, columns)
    zoomable(shown, columns, key=f"pictures-{key}", title_size=20 if large else 16, row_height=row_height)
    st.caption(cam_legend(lesion))
    if below_pictures is not None:
        below_pictures()
    shift = attention_shift(clean_cam.maps[0], cam.maps[0], lesion.mask)
    with layout.flow(gap="medium"):
        with st.container(width=440 if large else 300):
            bars = plots.probability_bars(classes, clean.tolist(), probs.tolist(), title="Class probabilities",
                                          perturbed_name=f"{attack_label(attack)}, ε={format_epsilon(eps)}")
            if eps == 0:
                bars.data = bars.data[:1]  # clean only: the same bars twice would read as a second condition
            if large:
                bars.update_layout(font=dict(size=17), height=440)
            st.plotly_chart(bars, key=f"probabilities-{key}" if key != "main" else "probabilities",
                            config={"displayModeBar": False})
        with st.container(width="stretch"):
            facts = shift_readouts(shift, lesion, eps)
    settings = (("Model", checkpoint_heading(view.info)), ("Checkpoint", view.info.name),
                ("Image", view.choice.name), ("Perturbation", attack_label(attack) if eps > 0 else "none (clean)"),
                ("ε (largest change of any pixel, 0–1 scale)", format_epsilon(eps)),
                ("Smallest flipping ε", f"{flip_text} with {attack_label(flip_attack or attack)}"),
                ("Data", "simulated phantoms (not clinical images)" if view.info.simulated else "BUSI"))
    probabilities = (("Clean", tuple(float(p) for p in clean)),) + (
        ((f"{attack_label(attack)} ε={format_epsilon(eps)}", tuple(float(p) for p in probs)),) if eps > 0 else ())
    legend = ("Grad-CAM (grad-cam package): red where the evidence for the explained class is strongest; the cross "
              "marks the map's peak" + ("; the white outline is the lesion." if lesion.mask is not None else "."))
    return Comparison(title=said, classes=tuple(classes), probabilities=probabilities, panels=tuple(shown),
                      settings=settings, notes=(*facts, legend))


def zoomable(pictures: list[Panel], columns: int, key: str, title_size: int = 16, row_height: int = 330) -> None:
    """The pictures as one zoomable figure whose height follows the page's width (CSS container units), so
    they stay square and close together on a 900 px laptop and on a 1920 px projector alike."""
    height = grid_css_height(pictures, columns, title_size)
    st.html(f"<style>.st-key-{key}-box {{ container-type: inline-size; }} "
            f".st-key-{key}-box [data-testid='stPlotlyChart'] {{ height: {height}; }}</style>")
    with st.container(key=f"{key}-box"):
        st.plotly_chart(image_grid(pictures, columns=columns, row_height=row_height, title_size=title_size),
                        key=key, config=ZOOM_CONFIG, height="stretch")


def export_buttons(comparison: Comparison, image_name: str, key: str) -> None:
    """PNG for slides and self-contained HTML for notes; each is built only when its button is pressed."""
    stem = "busadv-" + "".join(c if c.isalnum() else "-" for c in image_name)[-40:].strip("-")
    with layout.flow():
        st.download_button("Download this comparison as PNG", data=lambda: comparison_png(comparison),
                           file_name=f"{stem}.png", mime="image/png", key=f"png-{key}", icon=":material/image:")
        st.download_button("Download as HTML (works offline)", data=lambda: comparison_html(comparison),
                           file_name=f"{stem}.html", mime="text/html", key=f"html-{key}",
                           icon=":material/description:")


def closer_look(view: ProbeView, attack: str, lesion: Lesion, flip_eps: float | None) -> None:
    """One epsilon in full (its own slider, the page's epsilon): verdict, the amplified change, Grad-CAM before and
    after, the attention numbers, the probabilities and the exports.

    Why a slider of its own: the first screen's slider moves in the browser alone, so the server never hears of
    it; this one starts where the first screen started and sets where it starts next.
    """
    from busadv.app.widgets import epsilon_slider

    eps = epsilon_slider("ε for this closer look: the largest change of any pixel (pixel scale 0–1, also shown as "
                         "k/255 grey levels)", key="eps", default=float(st.session_state.get("_eps", 4 / 255)))
    choices.remember(eps=eps)  # the first screen starts there while this tab is closed
    classes = view.classes

    def picture_controls() -> None:
        """Under the pictures: how many per row (fewer: larger, for speckle), and what Grad-CAM explains."""
        with layout.flow(gap="medium"):
            st.segmented_control("Pictures per row", [3, 2, 1], key="per_row", default=3, required=True,
                                 help="Fewer per row: larger pictures, to see speckle. Zoom also works at any size.")
            st.selectbox("Grad-CAM explains", [None, *range(len(classes))], key="cam_target", width=360,
                         format_func=lambda t: "the model's answer on each image" if t is None else
                         f"the class '{plain(classes[t])}' on both images",
                         help="By default each map explains the answer given on that image: why it said benign, "
                              "and why it now says malignant. Pick a class to compare attention for that one class.")

    per_row = int(st.session_state.get("per_row") or 3)
    shown = condition(view, attack, eps, lesion, flip_eps=flip_eps, target=st.session_state.get("cam_target"),
                      columns=per_row, row_height={3: 300, 2: 440, 1: 620}[per_row], below_pictures=picture_controls)
    export_buttons(shown, view.choice.name, key="main")
