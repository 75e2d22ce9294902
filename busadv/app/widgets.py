"""Widgets several pages share: epsilon sliders and lists, seed lists, and choices read from the registries.

Why registries: every list a user picks from (models, training modes, attacks, split policies) is read
from its registry here, so an attack registered by a plugin appears on every page without edits.
Widget defaults live in Session State, so buttons (the study preset) can fill them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from busadv.attacks import ATTACKS, STUDY_EPSILONS, attack_label, format_epsilon, parse_epsilon_list
from busadv.data import SPLIT_POLICIES
from busadv.models import MODELS
from busadv.registry import Registry
from busadv.training import CLASS_BALANCE, LABEL_SOURCES, MODES, parse_seed_list
from busadv.training.config import (
    AUGMENTATIONS,
    FALLBACK,
    MAX_CRITICAL_WEIGHT,
    MIN_CRITICAL_WEIGHT,
    OPTIMIZERS,
    SCHEDULES,
    SELECTIONS,
)

# The slider's stops: every k/255 up to 16, then coarser steps up to the study's 0.5.
EPSILON_CHOICES: tuple[float, ...] = tuple(sorted(
    {k / 255 for k in range(17)} | {20 / 255, 24 / 255, 32 / 255, 0.1, 64 / 255, 96 / 255} | set(STUDY_EPSILONS)))
EPSILON_HELP = "Comma-separated, as fractions of 255 or decimals: 2/255, 8/255, 0.05"


def epsilon_slider(label: str, key: str, default: float = 4 / 255, help: str | None = None,
                   disabled: bool = False, container: Any = st, width: int | str = "stretch") -> float:
    """A select slider over EPSILON_CHOICES that shows each stop as '0.031 (8/255)'."""
    if key not in st.session_state:
        st.session_state[key] = min(EPSILON_CHOICES, key=lambda e: abs(e - default))
    return float(container.select_slider(label, options=list(EPSILON_CHOICES), key=key, format_func=format_epsilon,
                                         help=help, disabled=disabled, width=width))


def epsilon_list_input(label: str, default: str, key: str, allow_empty: bool = False) -> list[float] | None:
    """A text box for a list of epsilons, echoed back in both forms; None (with a message) when invalid."""
    st.session_state.setdefault(key, default)
    text = st.text_input(label, key=key, help=EPSILON_HELP)
    try:
        values = parse_epsilon_list(text, label)
    except ValueError as exc:
        st.error(str(exc))
        return None
    if not values and not allow_empty:
        st.error(f"{label}: give at least one epsilon.")
        return None
    st.caption("= " + ", ".join(format_epsilon(v) for v in values) if values else "none")
    return values


def seed_list_input(label: str, default: str, key: str) -> list[int] | None:
    """A text box for seeds ('0, 1, 2' or '0-4'); None (with a message) when invalid or empty."""
    st.session_state.setdefault(key, default)
    text = st.text_input(label, key=key, help="Whole numbers like 0, 1, 2 or a range like 0-4")
    try:
        seeds = parse_seed_list(text, label)
    except ValueError as exc:
        st.error(str(exc))
        return None
    if not seeds:
        st.error(f"{label}: give at least one seed.")
        return None
    return seeds


# --------------------------------------------------------------------------- registry choices

def _labels(registry: Registry[Any]) -> dict[str, str]:
    return {entry.name: entry.label for entry in registry}


def registry_select(label: str, registry: Registry[Any], key: str, *, help: str | None = None,
                    container: Any = st, width: int | str = "stretch") -> str:
    """One registry entry by name, shown by its label."""
    labels = _labels(registry)
    return str(container.selectbox(label, list(labels), key=key, format_func=labels.get, help=help, width=width))


def registry_multiselect(label: str, registry: Registry[Any], key: str, *, default: Sequence[str] = (),
                         help: str | None = None, container: Any = st, width: int | str = "stretch") -> list[str]:
    """Several registry entries by name, shown by their labels; defaults that are not registered are left out."""
    labels = _labels(registry)
    if key not in st.session_state:
        st.session_state[key] = [name for name in default if name in labels]
    else:  # an entry unregistered since (a plugin gone) must not break the widget
        st.session_state[key] = [name for name in st.session_state[key] if name in labels]
    return list(container.multiselect(label, list(labels), key=key, format_func=labels.get, help=help, width=width))


def model_select(key: str, container: Any = st, width: int | str = "stretch") -> str:
    return registry_select("Model", MODELS, key, container=container, width=width,
                           help="; ".join(f"{m.label}: {m.description}" for m in MODELS))


def mode_select(key: str, container: Any = st, width: int | str = "stretch") -> str:
    return registry_select("Training", MODES, key, container=container, width=width,
                           help="; ".join(f"{m.label}: {m.description}" for m in MODES))


ATTACK_HELP = ("Report PGD beside FGSM: FGSM is weak, and a stronger attack scoring higher than a weaker one "
               "means masked gradients.")


def attack_multiselect(label: str, key: str, *, default: Sequence[str] = ("fgsm", "pgd"),
                       container: Any = st) -> list[str]:
    """Test attacks from the attack registry (every registered attack is offered)."""
    return registry_multiselect(label, ATTACKS, key, default=default, container=container,
                                help=ATTACK_HELP + " " + " ".join(f"{a.label}: {a.explanation}." for a in ATTACKS))


def attack_text(names: Sequence[str]) -> str:
    """'FGSM, PGD' for captions."""
    return ", ".join(attack_label(n) for n in names)


def split_policy_select(key: str, container: Any = st, width: int | str = "stretch") -> str:
    """How images are split into training and test sets (the engine's policies, described)."""
    return str(container.selectbox("Train/test split", list(SPLIT_POLICIES), key=key, width=width,
                                   format_func=lambda p: f"{p}: {SPLIT_POLICIES[p]}",
                                   help="'grouped' keeps copies of one image (BUSI has some) on one side, so no "
                                        "model is tested on an image it learned from."))


# Explicit values of recipe settings a training mode otherwise fills in, with their words.
RANDOM_START_CHOICES: dict[Any, str] = {True: "on", False: "off"}
LABEL_CHOICES: dict[Any, str] = {name: f"{name} labels" for name in LABEL_SOURCES}
BALANCE_CHOICES: dict[Any, str] = dict(CLASS_BALANCE)
SELECTION_CHOICES: dict[Any, str] = {
    "last": "the last epoch",
    "best": "best on validation: robust balanced accuracy",
    "best-both": "best on validation: clean and robust balanced accuracy",
    "best-sensitive": "best on validation: balanced accuracy, cancers missed docked",
}


def choice_index(choices: dict[Any, str], value: Any) -> int:
    """The widget state of mode_default_select for a value (0: the mode's default)."""
    return 0 if value is None else list(choices).index(value) + 1


def mode_default_select(label: str, setting: str, choices: dict[Any, str], mode: str | None, key: str, *,
                        adversarial_only: bool = True, help: str | None = None, container: Any = st,
                        width: int | str = "stretch", recipe_value: Any = None, disabled: bool = False) -> Any:
    """A recipe setting left to the training mode (None) or set explicitly to one of `choices`.

    Why "the mode's default" as the first choice: a mode brings its own recipe (plain FGSM as in the
    study starts without a random start, busadv's FGSM and PGD with one), so a checkbox would have to
    guess which of them the user meant whenever the mode changes. mode=None: several modes at once.
    """
    disabled = disabled or (adversarial_only and mode is not None and not MODES.get(mode).adversarial)
    if recipe_value is not None:  # the chosen recipe fixes it, whatever the mode: say the value that will apply
        default, where = f"default: {choices.get(recipe_value, recipe_value)}", " The default is the recipe's."
    elif mode is None:
        default, where = "each mode's default", ""
    else:
        value = MODES.get(mode).defaults.get(setting, FALLBACK.get(setting))
        default, where = f"default: {choices.get(value, value)}", f" The default is {MODES.get(mode).label}'s own."
    # The choices are keyed by their index: None would read as "nothing chosen" to the widget.
    names = [default, *choices.values()]
    values = [None, *choices]
    index = container.selectbox(label, range(len(names)), key=key, format_func=names.__getitem__, disabled=disabled,
                                help=(help or "") + where, width=width)
    return values[index or 0]


def random_start_select(mode: str | None, key: str, container: Any = st, width: int | str = "stretch") -> bool | None:
    """Random start of the training perturbations: the mode's default, on or off."""
    return mode_default_select(
        "Random start", "random_start", RANDOM_START_CHOICES, mode, key, container=container, width=width,
        help="Start each adversarial example from a random point within ε: FGSM with a random start (Wong et al. "
             "2020) resists catastrophic overfitting; PGD uses one as a rule (Madry et al. 2018).")


def labels_select(mode: str | None, key: str, container: Any = st, width: int | str = "stretch") -> str | None:
    """Which labels adversarial training attacks: the mode's default, the true ones or the model's own."""
    return mode_default_select(
        "Attacked labels", "adv_labels", LABEL_CHOICES, mode, key, container=container, width=width,
        help="'predicted' avoids label leaking (Kurakin et al. 2016): the perturbation then cannot carry the true "
             "label into training.")


def class_balance_select(mode: str | None, key: str, container: Any = st, width: int | str = "stretch",
                         recipe_value: str | None = None) -> str | None:
    """How training copes with unequal class sizes (BUSI is about half benign); recipe_value: the chosen recipe's,
    which applies when the user leaves it (the modes' own otherwise)."""
    return mode_default_select("Class balance", "class_balance", BALANCE_CHOICES, mode, key,
                               adversarial_only=False, container=container, width=width, recipe_value=recipe_value,
                               help="; ".join(f"{k}: {v}" for k, v in CLASS_BALANCE.items()))


def selection_select(key: str, recipe_value: str, validation: bool, container: Any = st,
                     width: int | str = "stretch") -> str | None:
    """Which epoch a run keeps: the recipe's way (None), or one of SELECTIONS. All but the last choose on the
    recipe's validation split, so without one (the study's recipe, or a validation share of 0) the run keeps its
    last epoch and the choice is off."""
    help = "; ".join(f"{k}: {v}" for k, v in SELECTIONS.items())
    if not validation:
        help = "No validation split to choose on: the run keeps the last epoch. " + help
    chosen = mode_default_select("Epoch kept", "select", SELECTION_CHOICES, None, key, adversarial_only=False,
                                 container=container, width=width, recipe_value=recipe_value, help=help,
                                 disabled=not validation)
    return chosen if validation else "last"


def critical_weight_input(key: str, container: Any = st, width: int | str = "stretch") -> float:
    """How much more a missed cancer costs in the loss than the class balance alone makes it: finds more cancers,
    at the price of calling more benign and normal images malignant."""
    st.session_state.setdefault(key, 1.0)
    return float(container.number_input(
        "Malignant loss weight", MIN_CRITICAL_WEIGHT, MAX_CRITICAL_WEIGHT, step=0.25, key=key, width=width,
        help="Multiplies the malignant class's share of the loss (1: as the class balance sets it). Measured on "
             "BUSI at FGSM 8/255: weight 2 found +0.18 of the cancers under AutoAttack and lost 0.065 clean "
             "balanced accuracy (README)."))


# The levers recipe_levers offers: chosen from a list, or typed as a number.
LEVER_CHOICES: dict[str, dict[str, str]] = {"augment": AUGMENTATIONS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}
LEVER_SELECTS: tuple[str, ...] = tuple(LEVER_CHOICES)
LEVER_NUMBERS: tuple[str, ...] = ("weight_decay", "ema_decay", "val_fraction")


def recipe_levers(prefix: str, recipe: dict[str, Any], container: Any = st, width: int | str = 260
                  ) -> dict[str, Any]:
    """The training levers a recipe fixes (augmentation, optimizer, schedule, weight average, validation share),
    each left to the recipe (None) unless the user sets it; the recipe's value is shown as the default. Then the
    epoch kept (selection_select), which can choose only where the validation share in force is above 0.

    Why here and not only on the command line: a researcher comparing recipes from the app needs the same levers
    `train` and `experiment` take, and a lever left alone must follow the recipe picked, not a stale number.
    """
    out: dict[str, Any] = {}
    for setting, label in zip(LEVER_SELECTS, ("Augmentation", "Optimizer", "Learning-rate schedule"), strict=True):
        choices = LEVER_CHOICES[setting]
        out[setting] = mode_default_select(
            label, setting, {k: k for k in choices}, None, f"{prefix}{setting}", adversarial_only=False,
            container=container, width=width, recipe_value=recipe[setting],
            help="; ".join(f"{k}: {v}" for k, v in choices.items()) + ".")
    for setting, label, low, high, step, help in (
            ("weight_decay", "Weight decay", 0.0, 1.0, 1e-4,
             "AdamW's decoupled weight decay (Adam: an L2 penalty)."),
            ("ema_decay", "Weight average's decay", 0.0, 0.9999, 0.001,
             "An exponential moving average of the weights, evaluated and saved; 0: off, else 0.5 to 0.9999. "
             "On BUSI the average's ramp-up sets it below about 1,800 steps (README)."),
            ("val_fraction", "Validation share", 0.0, 0.5, 0.05,
             "Share of the training images held out (near-duplicates kept together) to choose the epoch kept; "
             "0: none, as in the study. The test images never choose anything.")):
        out[setting] = container.number_input(
            label, low, high, value=None, step=step, format="%g", key=f"{prefix}{setting}", width=width,
            placeholder=f"the recipe's: {recipe[setting]:g}", help=help + " Empty: the recipe's value.")
    validation = recipe["val_fraction"] if out["val_fraction"] is None else out["val_fraction"]
    out["select"] = selection_select(f"{prefix}select", recipe["select"], bool(validation), container=container,
                                     width=420)
    return out
