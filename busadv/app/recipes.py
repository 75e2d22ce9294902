"""The Jobs page's two recipes (busadv's best, the study's) and the radio that picks one.

Why a module of its own: the train and experiment tabs both pick a recipe, and the forms that check their
settings read the same recipes; widgets cannot import the forms (the forms import widgets).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from busadv.training.config import recipe_training

RECIPES: dict[str, str] = {
    "best": "busadv's best: augmentation, AdamW one-cycle, weight average, the epoch chosen on a validation split "
            "(40 epochs)",
    "study": "the study's: Adam at 1e-3, 10 epochs, nothing added, the last epoch",
}


def recipe_settings(recipe: str) -> dict[str, Any]:
    """The training settings a recipe fixes (epochs, learning rate, class balance, the levers)."""
    return recipe_training(recipe)


def recipe_widget_state(recipe: str, prefix: str = "t_") -> dict[str, Any]:
    """Session-state values that move the form's epochs and learning rate to a recipe's when it is picked."""
    settings = recipe_settings(recipe)
    return {f"{prefix}epochs": settings["epochs"], f"{prefix}lr": settings["lr"]}


def recipe_radio(prefix: str, help: str) -> str:
    """The recipe picker of a form whose widget keys start with `prefix`: picking one moves the form's epochs
    and learning rate to the recipe's; they start at the best recipe's."""
    key = f"{prefix}recipe"
    recipe = st.radio("Recipe", list(RECIPES), format_func=RECIPES.get, key=key, horizontal=True, help=help,
                      on_change=lambda: st.session_state.update(recipe_widget_state(st.session_state[key], prefix)))
    for name, value in recipe_widget_state("best", prefix).items():
        st.session_state.setdefault(name, value)
    return str(recipe)
