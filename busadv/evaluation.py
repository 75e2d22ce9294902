"""Accuracy, per-class recall and confusion under attack, for many epsilons in one pass.

Per batch: one forward+backward gives the clean predictions and the FGSM gradient sign; every epsilon
after that is one forward pass. Malignant cases called benign or normal are counted on their own:
that is the error that costs patients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from busadv.attacks import Attack, apply_sign, eval_mode, noise_sign, pgd
from busadv.data import CLASSES, MALIGNANT, ImageSet
from busadv.progress import ProgressEvent, ProgressFn, ignore_progress


@dataclass
class ConditionResult:
    """One test condition (attack at an epsilon) over one test set."""

    attack: str
    epsilon: float
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    classes: tuple[str, ...] = CLASSES
    changed: int = 0            # predictions that differ from the clean prediction
    extra: dict = field(default_factory=dict)

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
    def malignant_total(self) -> int:
        return sum(self.confusion[MALIGNANT])

    @property
    def malignant_missed(self) -> int:
        """Malignant images predicted benign or normal."""
        return self.malignant_total - self.confusion[MALIGNANT][MALIGNANT]

    @property
    def dominant_prediction(self) -> tuple[str, float]:
        """The most predicted class and its share: near 1.0 means the model answers one class for everything."""
        columns = [sum(row[j] for row in self.confusion) for j in range(len(self.classes))]
        top = max(range(len(columns)), key=columns.__getitem__)
        return self.classes[top], columns[top] / max(self.n, 1)

    def as_row(self) -> dict:
        row = {"attack": self.attack, "epsilon": self.epsilon, "accuracy": self.accuracy, "n": self.n,
               "malignant_missed": self.malignant_missed, "malignant_total": self.malignant_total,
               "malignant_missed_rate": self.malignant_missed / max(self.malignant_total, 1),
               "changed": self.changed, "dominant_class": self.dominant_prediction[0],
               "dominant_share": self.dominant_prediction[1]}
        row.update({f"recall_{c}": r for c, r in self.recall.items()})
        row["confusion"] = self.confusion
        return row


def _conditions(attacks: Iterable[str | Attack], epsilons: Sequence[float]) -> list[tuple[Attack, float]]:
    wanted = [Attack.coerce(a) for a in attacks]
    eps_list = sorted({float(e) for e in epsilons if float(e) > 0})
    for e in eps_list:
        if e > 1:
            raise ValueError(f"epsilon {e} is outside the [0, 1] pixel scale (8/255 = 0.031)")
    conditions = [(Attack.NONE, 0.0)]
    for attack in dict.fromkeys(wanted):
        if attack is not Attack.NONE:
            conditions += [(attack, e) for e in eps_list]
    return conditions


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def evaluate(model: nn.Module, dataset: ImageSet, attacks: Iterable[str | Attack] = ("fgsm",),
             epsilons: Sequence[float] = (), batch_size: int = 64, pgd_steps: int = 10, seed: int = 0,
             device: torch.device | None = None, progress: ProgressFn = ignore_progress) -> list[ConditionResult]:
    """The clean condition first, then every (attack, epsilon); one gradient per batch serves all FGSM epsilons."""
    conditions = _conditions(attacks, epsilons)
    device = device or _model_device(model)
    k = len(dataset.classes)
    counts = {c: torch.zeros(k * k, dtype=torch.long) for c in conditions}
    changed = {c: 0 for c in conditions}
    needs = {a for a, _ in conditions}
    batches = max(1, -(-len(dataset) // batch_size))
    with eval_mode(model):
        for b in range(batches):
            sl = slice(b * batch_size, (b + 1) * batch_size)
            x = dataset.floats(sl, device)
            y = dataset.labels[sl].to(device)
            signs: dict[Attack, torch.Tensor] = {}
            with torch.enable_grad():
                xg = x.clone().requires_grad_(True)
                logits = model(xg)
                clean_pred = logits.detach().argmax(1)
                targets = {Attack.FGSM: y, Attack.FGSM_PRED: clean_pred}
                wanted = [a for a in (Attack.FGSM, Attack.FGSM_PRED) if a in needs]
                for i, attack in enumerate(wanted):
                    loss = F.cross_entropy(logits, targets[attack], reduction="sum")
                    (grad,) = torch.autograd.grad(loss, xg, retain_graph=i + 1 < len(wanted))
                    signs[attack] = grad.sign()
            if Attack.NOISE in needs:
                signs[Attack.NOISE] = noise_sign(x.shape, seed + b, device)
            for attack, eps in conditions:
                if attack is Attack.NONE:
                    pred = clean_pred
                elif attack is Attack.PGD:
                    generator = torch.Generator().manual_seed(seed * 100003 + b)
                    pred = _predict(model, pgd(model, x, y, eps, steps=pgd_steps, generator=generator))
                else:
                    pred = _predict(model, apply_sign(x, signs[attack], eps))
                counts[(attack, eps)] += torch.bincount((y * k + pred).cpu(), minlength=k * k)
                changed[(attack, eps)] += int((pred != clean_pred).sum())
            progress(ProgressEvent((b + 1) / batches, f"evaluated {min((b + 1) * batch_size, len(dataset))}"
                                   f"/{len(dataset)} test images"))
    return [ConditionResult(attack=a.value, epsilon=e, confusion=counts[(a, e)].view(k, k).tolist(),
                            classes=dataset.classes, changed=changed[(a, e)]) for a, e in conditions]


def accuracy_under_attack(model: nn.Module, dataset: ImageSet, attack: str | Attack, eps: float,
                          device: torch.device | None = None, batch_size: int = 64, pgd_steps: int = 10) -> float:
    """One number, for per-epoch monitoring during training."""
    results = evaluate(model, dataset, [attack], [eps] if eps > 0 else [], batch_size=batch_size, device=device,
                       pgd_steps=pgd_steps)
    return results[-1].accuracy
