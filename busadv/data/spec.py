"""What a dataset is about: its classes and the one whose misses cost patients most.

Why a description and not module constants: models size their heads from it, evaluation counts the
critical class's misses from it, plots outline its row, and a second dataset would only need a new
description, not edits across the package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    critical: str  # the clinically critical class: its misses are counted and shown on their own

    def __post_init__(self) -> None:
        if self.critical not in self.classes:
            raise ValueError(f"critical class {self.critical!r} is not one of {self.classes}")

    @property
    def critical_index(self) -> int:
        return self.classes.index(self.critical)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


BUSI = DatasetSpec(name="busi", classes=("benign", "malignant", "normal"), critical="malignant")
