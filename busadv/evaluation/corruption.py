"""Corruption robustness as in ImageNet-C: accuracy under each scanner variation at each severity, and their mean.

ImageNet-C's mCE divides each corruption's errors by a reference model's (AlexNet). busadv has no
agreed reference model for breast ultrasound, so it reports the unnormalised form: the mean error over
corruptions and severities (1 - mean accuracy), and the mean drop from the clean score ("relative",
ImageNet-C's relative mCE without the normalisation). Both come for accuracy and balanced accuracy;
balanced accuracy first, as everywhere in busadv, because a collapsed model scores the majority rate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from busadv.attacks import ATTACKS, AttackContext, eval_mode
from busadv.attacks.scanner import corrupt, parse_corruptions, parse_severities, perturbation_size
from busadv.data.imageset import ImageSet
from busadv.evaluation.evaluate import CLEAN
from busadv.evaluation.metrics import ConditionResult
from busadv.progress import ProgressEvent, ProgressFn, ignore_progress

MEASURES = ("balanced_accuracy", "accuracy")


@dataclass(frozen=True)
class CorruptionCondition:
    """One corruption at one severity over the test set: the measures, and how big the change was."""

    corruption: str
    severity: int
    setting: str              # the physical setting of this level, e.g. '±6 dB'
    result: ConditionResult   # attack = the corruption, epsilon = its L-inf size over the test set
    linf: float               # largest pixel change over the test set (FGSM's epsilon is this size)
    l2: float                 # mean L2 size per image

    def measure(self, name: str) -> float:
        return float(getattr(self.result, name))


@dataclass(frozen=True)
class CorruptionReport:
    """Clean and corrupted results of one model on one test set, with ImageNet-C-style means."""

    clean: ConditionResult
    conditions: tuple[CorruptionCondition, ...]

    @property
    def corruptions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.corruption for c in self.conditions))

    def mean(self, measure: str = "balanced_accuracy", corruption: str | None = None) -> float:
        """The mean over severities (of one corruption) or over every corruption and severity."""
        values = [c.measure(measure) for c in self.conditions if corruption in (None, c.corruption)]
        return statistics.fmean(values) if values else math.nan

    def mean_error(self, measure: str = "balanced_accuracy") -> float:
        """mCE without a reference model: 1 - the mean measure over corruptions and severities."""
        return 1.0 - self.mean(measure)

    def relative_drop(self, measure: str = "balanced_accuracy", corruption: str | None = None) -> float:
        """How far the mean falls below the clean score (relative mCE without a reference model)."""
        return float(getattr(self.clean, measure)) - self.mean(measure, corruption)

    def summary(self) -> list[dict[str, float | str]]:
        """One line per corruption and one for all of them: means over severities, drops from clean."""
        lines: list[dict[str, float | str]] = []
        for name in (*self.corruptions, None):
            line: dict[str, float | str] = {"corruption": name or "all (mean)"}
            for measure in MEASURES:
                line[f"{measure}_mean"] = self.mean(measure, name)
                line[f"{measure}_drop"] = self.relative_drop(measure, name)
            lines.append(line)
        return lines

    def results(self) -> list[ConditionResult]:
        """The clean condition, then every corruption and severity, as ConditionResults (for result rows)."""
        return [self.clean, *(c.result for c in self.conditions)]

    def severities(self) -> list[int | None]:
        """The severity of each of results(): None for the clean condition."""
        return [None, *(c.severity for c in self.conditions)]


def evaluate_corruptions(model: nn.Module, dataset: ImageSet, corruptions: Sequence[str] | str | None = None,
                         severities: Sequence[int] | str | None = None, batch_size: int = 64, seed: int = 0,
                         device: torch.device | None = None,
                         progress: ProgressFn = ignore_progress) -> CorruptionReport:
    """Every (corruption, severity) over the test set in one pass over the batches, seeded per batch."""
    names = parse_corruptions(corruptions)
    levels = parse_severities(severities)
    device = device or next(model.parameters()).device
    k = len(dataset.classes)
    keys = [(CLEAN, 0)] + [(n, s) for n in names for s in levels]
    counts = {key: torch.zeros(k * k, dtype=torch.long) for key in keys}
    changed = dict.fromkeys(keys, 0)
    linf = dict.fromkeys(keys, 0.0)
    l2_sum = dict.fromkeys(keys, 0.0)
    batches = max(1, -(-len(dataset) // batch_size))
    with eval_mode(model), torch.no_grad():
        for b in range(batches):
            sl = slice(b * batch_size, (b + 1) * batch_size)
            x = dataset.floats(sl, device)
            y = dataset.labels[sl].to(device)
            context = AttackContext(model, x, y, seed=seed, batch=b)
            clean_pred = model(x).argmax(1)
            for key in keys:
                name, level = key
                pred = clean_pred
                if name != CLEAN:
                    corrupted = corrupt(context, name, level)
                    size, l2 = perturbation_size(x, corrupted)
                    linf[key] = max(linf[key], size)
                    l2_sum[key] += float(l2.sum())
                    pred = model(corrupted).argmax(1)
                counts[key] += torch.bincount((y * k + pred).cpu(), minlength=k * k)
                changed[key] += int((pred != clean_pred).sum())
            progress(ProgressEvent((b + 1) / batches, f"evaluated {min((b + 1) * batch_size, len(dataset))}"
                                   f"/{len(dataset)} test images under {len(keys) - 1} corruption settings"))

    def result(key: tuple[str, int]) -> ConditionResult:
        return ConditionResult(attack=key[0], epsilon=linf[key], confusion=counts[key].view(k, k).tolist(),
                               classes=dataset.classes, critical=dataset.spec.critical, changed=changed[key])

    conditions = tuple(CorruptionCondition(
        corruption=n, severity=s, setting=ATTACKS.get(n).severity_scale[s - 1], result=result((n, s)),
        linf=linf[(n, s)], l2=l2_sum[(n, s)] / max(len(dataset), 1)) for n, s in keys[1:])
    return CorruptionReport(clean=result((CLEAN, 0)), conditions=conditions)
