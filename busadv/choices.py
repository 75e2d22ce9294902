"""Closed choices (models, attacks, training modes) typed as strings by users, coerced in one place."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

E = TypeVar("E", bound=Enum)


def coerce_choice(cls: type[E], value: "str | E", noun: str) -> E:
    """'FGSM', 'fgsm' or Attack.FGSM -> Attack.FGSM; anything else gets the list of valid names."""
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).strip().lower())
    except ValueError:
        raise ValueError(f"unknown {noun} {value!r}; choose one of: {', '.join(m.value for m in cls)}") from None
