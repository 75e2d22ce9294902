"""Measuring a trained model on clean and attacked test images."""

from busadv.evaluation.evaluate import CLEAN, accuracy_under_attack, condition_under_attack, conditions_for, evaluate
from busadv.evaluation.metrics import COLLAPSE_SHARE, ConditionResult
from busadv.evaluation.robustness import ImageFlip, flip_epsilons

__all__ = [
    "CLEAN", "COLLAPSE_SHARE", "ConditionResult", "ImageFlip", "accuracy_under_attack", "condition_under_attack",
    "conditions_for", "evaluate", "flip_epsilons",
]
