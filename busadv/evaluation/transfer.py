"""Transfer attacks: adversarial images crafted on one model and shown to another (the black-box threat).

A matrix over models: row = the source the attack was computed on, column = the target that is tested;
the diagonal is the white-box case and equals `evaluate()` of that model (same batches, same seeds).
An attacker who cannot see the deployed model can still train their own and attack that: a column whose
off-diagonal cells stay low says the deployed model falls to such stand-ins.

Models of different input sizes: the *perturbation* (adversarial minus clean image, at the source's
size) is resized to the target's size (bilinear with antialiasing, whose weights are non-negative and
sum to one, so the resized perturbation stays inside the same L-inf ball) and added to the target's own
clean image. Resizing the adversarial image instead would also change the clean content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from busadv.attacks import ATTACKS, AttackContext, check_epsilon, eval_mode
from busadv.data.imageset import ImageSet
from busadv.evaluation.metrics import ConditionResult
from busadv.progress import ProgressEvent, ProgressFn, ignore_progress


@dataclass(frozen=True)
class TransferMatrix:
    """Targets' results on each source's adversarial images of one shared test set."""

    models: tuple[str, ...]                        # names, in row (source) and column (target) order
    attack: str
    epsilon: float
    clean: tuple[ConditionResult, ...]             # each target on the clean shared images
    cells: tuple[tuple[ConditionResult, ...], ...]  # cells[source][target]

    @property
    def n(self) -> int:
        return self.clean[0].n if self.clean else 0

    def table(self, measure: str = "balanced_accuracy") -> list[list[float]]:
        """[source][target] values of one measure (a ConditionResult property)."""
        return [[float(getattr(cell, measure)) for cell in row] for row in self.cells]

    def clean_scores(self, measure: str = "balanced_accuracy") -> list[float]:
        return [float(getattr(c, measure)) for c in self.clean]

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a job result or a JSON file (confusion matrices kept, measures recomputed on load)."""
        first = self.clean[0]
        return {"models": list(self.models), "attack": self.attack, "epsilon": self.epsilon,
                "classes": list(first.classes), "critical": first.critical,
                "clean": [{"confusion": c.confusion, "changed": c.changed} for c in self.clean],
                "cells": [[{"confusion": c.confusion, "changed": c.changed} for c in row] for row in self.cells]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TransferMatrix:
        """The matrix back from to_dict(); ValueError when the shape does not add up."""
        try:
            models = tuple(str(m) for m in values["models"])
            classes, critical = tuple(str(c) for c in values["classes"]), str(values["critical"])
            attack, eps = str(values["attack"]), float(values["epsilon"])

            def result(cell: dict[str, Any], name: str, e: float) -> ConditionResult:
                confusion = [[int(v) for v in row] for row in cell["confusion"]]
                if len(confusion) != len(classes) or any(len(r) != len(classes) for r in confusion):
                    raise ValueError("a confusion matrix does not match the classes")
                return ConditionResult(attack=name, epsilon=e, confusion=confusion, classes=classes,
                                       critical=critical, changed=int(cell.get("changed", 0)))

            clean = tuple(result(c, "none", 0.0) for c in values["clean"])
            cells = tuple(tuple(result(c, attack, eps) for c in row) for row in values["cells"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a transfer matrix ({exc})") from None
        if len(clean) != len(models) or len(cells) != len(models) or any(len(r) != len(models) for r in cells):
            raise ValueError("not a transfer matrix (its rows and columns do not match its models)")
        return cls(models=models, attack=attack, epsilon=eps, clean=clean, cells=cells)


def carry_perturbation(adversarial: torch.Tensor, source_clean: torch.Tensor,
                       target_clean: torch.Tensor) -> torch.Tensor:
    """The source's perturbation on the target's clean images (resized when the sizes differ)."""
    if target_clean.shape == source_clean.shape and torch.equal(target_clean, source_clean):
        return adversarial
    delta = adversarial - source_clean
    if delta.shape[-2:] != target_clean.shape[-2:]:
        delta = F.interpolate(delta, size=tuple(target_clean.shape[-2:]), mode="bilinear", align_corners=False,
                              antialias=True)
    return (target_clean + delta).clamp(0.0, 1.0)


def _check_shared(test_sets: Sequence[ImageSet]) -> None:
    first = test_sets[0]
    for other in test_sets[1:]:
        if other.names != first.names or not torch.equal(other.labels, first.labels):
            raise ValueError("transfer needs the same test images, in the same order, at every model's size")
        if other.classes != first.classes:
            raise ValueError(f"the models tell different classes apart ({', '.join(first.classes)} vs "
                             f"{', '.join(other.classes)})")


def transfer_matrix(models: Sequence[nn.Module], test_sets: Sequence[ImageSet], names: Sequence[str],
                    attack: str = "pgd", epsilon: float = 8 / 255, batch_size: int = 64, pgd_steps: int = 10,
                    seed: int = 0, progress: ProgressFn = ignore_progress) -> TransferMatrix:
    """Every source's adversarial images shown to every target; test_sets[i] is the shared set at model i's size."""
    if len(models) < 2 or len(models) != len(test_sets) or len(models) != len(names):
        raise ValueError(f"transfer needs at least two models, each with its test images (got {len(models)})")
    _check_shared(test_sets)
    spec = ATTACKS.get(attack)
    eps = check_epsilon(epsilon)
    m, k = len(models), len(test_sets[0].classes)
    counts = [[torch.zeros(k * k, dtype=torch.long) for _ in range(m)] for _ in range(m)]
    changed = [[0] * m for _ in range(m)]
    clean_counts = [torch.zeros(k * k, dtype=torch.long) for _ in range(m)]
    devices = [next(model.parameters()).device for model in models]
    batches = max(1, -(-len(test_sets[0]) // batch_size))
    for b in range(batches):
        sl = slice(b * batch_size, (b + 1) * batch_size)
        y = test_sets[0].labels[sl]
        clean_x = [t.floats(sl, d) for t, d in zip(test_sets, devices, strict=True)]
        clean_pred = []
        for j, model in enumerate(models):
            with eval_mode(model), torch.no_grad():
                clean_pred.append(model(clean_x[j]).argmax(1).cpu())
            clean_counts[j] += torch.bincount(y * k + clean_pred[j], minlength=k * k)
        for i, source in enumerate(models):
            # The same context evaluate() builds for this batch: the diagonal is the white-box evaluation.
            context = AttackContext(source, clean_x[i], y.to(devices[i]), seed=seed, batch=b, pgd_steps=pgd_steps)
            adversarial = spec.perturb(context, eps)
            for j, target in enumerate(models):
                shown = carry_perturbation(adversarial.to(devices[j]), clean_x[i].to(devices[j]), clean_x[j])
                with eval_mode(target), torch.no_grad():
                    pred = target(shown).argmax(1).cpu()
                counts[i][j] += torch.bincount(y * k + pred, minlength=k * k)
                changed[i][j] += int((pred != clean_pred[j]).sum())
            done = (b * m + i + 1) / (batches * m)
            progress(ProgressEvent(done, f"transfer: batch {b + 1}/{batches}, attacked on {names[i]}"))

    def result(name: str, e: float, flat: torch.Tensor, flips: int) -> ConditionResult:
        return ConditionResult(attack=name, epsilon=e, confusion=flat.view(k, k).tolist(),
                               classes=test_sets[0].classes, critical=test_sets[0].spec.critical, changed=flips)

    return TransferMatrix(
        models=tuple(names), attack=spec.name, epsilon=eps,
        clean=tuple(result("none", 0.0, c, 0) for c in clean_counts),
        cells=tuple(tuple(result(spec.name, eps, counts[i][j], changed[i][j]) for j in range(m)) for i in range(m)))
