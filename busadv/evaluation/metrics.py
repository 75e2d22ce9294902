"""What one test condition's confusion matrix says, in measures class imbalance cannot fool.

BUSI is 56% benign: a model that answers "benign" for everything scores 0.56 accuracy and misses every
cancer. Balanced accuracy (mean per-class recall) gives that model 1/3, malignant sensitivity gives it
0, and `collapsed` names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from busadv.data.spec import BUSI

COLLAPSE_SHARE = 0.9  # one class for at least this share of images: the model has stopped discriminating


@dataclass
class ConditionResult:
    """One test condition (an attack at an epsilon) over one test set."""

    attack: str
    epsilon: float
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    classes: tuple[str, ...] = BUSI.classes
    critical: str = BUSI.critical
    changed: int = 0            # predictions that differ from the clean prediction
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return sum(map(sum, self.confusion))

    @property
    def accuracy(self) -> float:
        return sum(self.confusion[i][i] for i in range(len(self.classes))) / max(self.n, 1)

    @property
    def recall(self) -> dict[str, float]:
        return {c: self.confusion[i][i] / max(sum(self.confusion[i]), 1) for i, c in enumerate(self.classes)}

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes present: chance is 1/classes whatever the imbalance."""
        present = [i for i in range(len(self.classes)) if sum(self.confusion[i])]
        return sum(self.confusion[i][i] / sum(self.confusion[i]) for i in present) / max(len(present), 1)

    @property
    def critical_index(self) -> int:
        return self.classes.index(self.critical)

    @property
    def critical_total(self) -> int:
        return sum(self.confusion[self.critical_index])

    @property
    def critical_missed(self) -> int:
        """Critical-class images (malignant) predicted as anything else."""
        return self.critical_total - self.confusion[self.critical_index][self.critical_index]

    @property
    def sensitivity(self) -> float:
        """Recall of the critical class: the share of cancers the model finds."""
        return 1.0 - self.critical_missed / self.critical_total if self.critical_total else float("nan")

    @property
    def majority_rate(self) -> float:
        """Accuracy of always answering the test set's most common class."""
        return max(sum(row) for row in self.confusion) / max(self.n, 1)

    @property
    def dominant_prediction(self) -> tuple[str, float]:
        """The most predicted class and its share: near 1.0 means the model answers one class for everything."""
        columns = [sum(row[j] for row in self.confusion) for j in range(len(self.classes))]
        top = max(range(len(columns)), key=columns.__getitem__)
        return self.classes[top], columns[top] / max(self.n, 1)

    @property
    def collapsed(self) -> bool:
        return self.dominant_prediction[1] >= COLLAPSE_SHARE

    def metrics(self) -> dict[str, Any]:
        """Every measure of this condition, as flat values for a result row."""
        dominant, share = self.dominant_prediction
        out: dict[str, Any] = {
            "n": self.n, "accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy,
            "malignant_sensitivity": self.sensitivity, "malignant_missed": self.critical_missed,
            "malignant_total": self.critical_total, "majority_rate": self.majority_rate, "changed": self.changed,
            "dominant_class": dominant, "dominant_share": share, "collapsed": self.collapsed,
        }
        out.update({f"recall_{c}": r for c, r in self.recall.items()})
        out["confusion"] = self.confusion
        return out
