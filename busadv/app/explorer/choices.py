"""The explorer's choices and links: the attack picker grouped by family, deep links, the wait for a first model.

Deep links: `?model=<checkpoint file stem>&image=<image name>&attack=<name>&eps=<8/255 or 0.031>` (and
`present=1` for presenter mode) open a given image in the explorer, so the Results page or a per-image
list can point at one case. The page writes its current choice back into the URL, so the address bar is
always a link to what is on screen. A link is applied when the page opens; later choices win.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from busadv.app.checkpoints import checkpoint_infos
from busadv.app.layout import plain
from busadv.app.widgets import EPSILON_CHOICES
from busadv.attacks import ADVERSARIAL, BASELINE, AttackSpec, format_epsilon, parse_epsilon, strongest_attack
from busadv.data import ImageSet

CORRUPTION = "corruption"  # busadv.attacks' family of scanner variations
FAMILIES: dict[str, str] = {ADVERSARIAL: "Adversarial attack (worst case)", CORRUPTION: "Scanner variation",
                            BASELINE: "Random noise"}
LINK_KEYS = ("model", "image", "attack", "eps", "present")
NOTES = "_link_notes"


def family_name(family: str) -> str:
    return FAMILIES.get(family, family.replace("-", " ").capitalize())


def families(offered: Sequence[AttackSpec]) -> dict[str, list[str]]:
    """Attack names by family, families in the order adversarial, scanner variation, random noise, others."""
    grouped: dict[str, list[str]] = {}
    for spec in offered:
        grouped.setdefault(spec.family, []).append(spec.name)
    rank = list(FAMILIES)
    return dict(sorted(grouped.items(), key=lambda kv: rank.index(kv[0]) if kv[0] in rank else len(rank)))


def equal_size_comparison(offered: Sequence[AttackSpec]) -> str:
    """What the presenter shows beside an attack at the same size: a scanner variation if one is registered,
    else random noise (every registered perturbation is L-inf eps in size)."""
    grouped = families(offered)
    return (grouped.get(CORRUPTION) or grouped.get(BASELINE) or [offered[-1].name])[0]


def attack_choice(offered: Sequence[AttackSpec], container: Any = st) -> str:
    """The kind of change (family), then the perturbation within it; the strongest attack is marked as such."""
    grouped = families(offered)
    labels = {spec.name: plain(spec.label) for spec in offered}  # a plugin's label is text, not Markdown
    current = st.session_state.get("attack")
    if st.session_state.get("attack_family") not in grouped:
        st.session_state["attack_family"] = next((f for f, names in grouped.items() if current in names),
                                                 next(iter(grouped)))
    family = container.selectbox(
        "Kind of change", list(grouped), key="attack_family", format_func=lambda f: plain(family_name(f)),
        help="Adversarial attacks search for the worst change of size ε; scanner variations are what another "
             "machine or setting does anyway, scaled to the same size; random noise is the baseline an attack "
             "must beat.") or next(iter(grouped))
    names = grouped[family]
    if st.session_state.get("attack") not in names:
        st.session_state["attack"] = names[0]
    strongest = strongest_attack(names)
    attack = container.radio("Perturbation", names, key="attack", horizontal=True,
                             format_func=lambda n: labels[n] + (" · strongest offered" if n == strongest else ""))
    spec = next(s for s in offered if s.name == attack)
    note = plain(spec.explanation) + "."
    if family == ADVERSARIAL and strongest is not None:
        note += (f" **{labels[strongest]} is the strongest attack offered here**: quote its smallest flipping ε; "
                 "a weaker attack can only need more (or the model is masking its gradients).")
    container.caption(note)
    return str(attack)


# --------------------------------------------------------------------------------------------- deep links

def pending_link() -> dict[str, str] | None:
    """The URL's explorer parameters when the page has just been opened (a new tab, a reload, or a link from
    another page), else None.

    Why only then: the page writes every choice back into the URL, and while a user drags the slider the
    browser can send a URL that is a step behind; applying it would drag the slider back. Streamlit forgets
    the explorer's widgets when another page is shown, so a missing model choice means "just arrived".
    """
    current = {k: str(st.query_params[k]) for k in LINK_KEYS if k in st.query_params}
    if "model" in st.session_state or not current:
        return None
    st.session_state[NOTES] = []
    return current


def _note(text: str) -> None:
    st.session_state.setdefault(NOTES, []).append(text)


def apply_model_link(link: dict[str, str] | None, names: Sequence[str]) -> None:
    """Select the linked checkpoint (by file stem) before the model picker is drawn."""
    if link and "model" in link:
        if link["model"] in names:
            st.session_state["model"] = link["model"]
        else:
            _note(f"The link names the model “{plain(link['model'])}”, which is not in the checkpoints folder; "
                  "showing another model instead.")
    if st.session_state.get("model") not in names:
        st.session_state.pop("model", None)  # a checkpoint deleted since: the picker starts over


def apply_image_link(link: dict[str, str] | None, test_set: ImageSet, classes: Sequence[str]) -> None:
    """Select the linked image (by name) among the model's test images: its class first, then the image."""
    if not link or "image" not in link:
        return
    name = link["image"]
    if name in test_set.names:
        index = test_set.names.index(name)
        st.session_state["true_class"] = classes[int(test_set.labels[index])]
        st.session_state["image_index"] = index
    else:
        _note(f"The link's image “{plain(name)}” is not among this model's held-out test images (it may be one the "
              "model was trained on, or from other data); showing another image.")


def apply_attack_link(link: dict[str, str] | None, offered: Sequence[AttackSpec]) -> None:
    """Select the linked perturbation and epsilon (snapped to the slider's nearest stop)."""
    if not link:
        return
    if "attack" in link:
        match = next((s for s in offered if s.name == link["attack"].strip().lower()), None)
        if match is None:
            _note(f"The link's perturbation “{plain(link['attack'])}” is not offered here; showing another.")
        else:
            st.session_state["attack"], st.session_state["attack_family"] = match.name, match.family
    if "eps" in link:
        try:
            wanted = parse_epsilon(link["eps"])
        except ValueError as exc:
            _note(f"The link's ε is not usable ({plain(exc)}).")
            return
        nearest = min(EPSILON_CHOICES, key=lambda e: abs(e - wanted))
        st.session_state["eps"] = nearest
        if abs(nearest - wanted) > 5e-6:  # links written as 0.054902 mean 14/255
            _note(f"The link's ε = {format_epsilon(wanted)} is shown at the slider's nearest stop, "
                  f"{format_epsilon(nearest)}.")
    if link.get("present", "").lower() in ("1", "true", "yes"):
        st.session_state["presenter"] = True


def link_notes() -> None:
    """Say what of a link could not be followed (once, on the run that applied it)."""
    for text in st.session_state.pop(NOTES, []):
        st.warning(text, icon=":material/link_off:")


def eps_text(eps: float) -> str:
    """'8/255' where epsilon is a whole number of grey levels, else the decimal: the URL's form."""
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 and eps > 0 else f"{eps:.6g}"


def write_link(model: str, image: str | None, attack: str, eps: float, presenting: bool) -> None:
    """Put the current choice in the address bar, so copying the URL shares exactly this view."""
    values = {"model": model, "attack": attack, "eps": eps_text(eps)}
    if image is not None:
        values["image"] = image
    if presenting:
        values["present"] = "1"
    if {k: str(st.query_params[k]) for k in LINK_KEYS if k in st.query_params} != values:
        st.query_params.from_dict(values)


# --------------------------------------------------------------------------------------------- state

def restore(*keys: str) -> None:
    """Give widgets that a mode hides their value back (Streamlit forgets a widget's state when it is not drawn)."""
    for key in keys:
        if key not in st.session_state and f"_{key}" in st.session_state:
            st.session_state[key] = st.session_state[f"_{key}"]


def remember(**values: Any) -> None:
    for key, value in values.items():
        st.session_state[f"_{key}"] = value


def await_first_model(quick_panel: Any) -> None:
    """No model yet: offer a quick one, and reopen the explorer by itself as soon as any checkpoint appears
    (one trained here, by a job, or made available at first start), without a reload."""
    quick_panel()

    @st.fragment(run_every=3.0)
    def watch() -> None:
        if checkpoint_infos():
            st.rerun()

    watch()
