"""What a training mode reads of a run's settings, as a protocol.

Why: training modes (busadv.training.modes, .offline) are registered before TrainConfig exists to check a
mode's name, so they must not import it back; they read only these settings of whatever run they are given.
"""

from __future__ import annotations

from typing import Protocol


class AdversarialRecipe(Protocol):
    """The settings of a run that a training mode's perturbation or loss reads (TrainConfig has them all)."""

    @property
    def mode(self) -> str: ...
    @property
    def epsilon(self) -> float: ...
    @property
    def adv_labels(self) -> str | None: ...
    @property
    def random_start(self) -> bool | None: ...
    @property
    def trades_beta(self) -> float | None: ...
    @property
    def pgd_steps(self) -> int: ...
    @property
    def device(self) -> str: ...
