"""Accuracy, per-class recall and confusion under attack, for many epsilons in one pass.

Per batch: one forward+backward gives the clean predictions and every single-step direction (FGSM);
each epsilon after that is one forward pass. Iterative attacks (PGD) run once per epsilon.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from busadv.attacks import ATTACKS, AttackContext, attack_label, check_epsilon, eval_mode, format_epsilon
from busadv.data.imageset import ImageSet
from busadv.evaluation.metrics import ConditionResult
from busadv.progress import ProgressEvent, ProgressFn, ignore_progress

CLEAN = "none"


def conditions_for(attacks: Iterable[str], epsilons: Sequence[float]) -> list[tuple[str, float]]:
    """The clean condition first, then every (attack, epsilon > 0); names are checked against the registry."""
    wanted = [ATTACKS.coerce(a) for a in attacks if str(a).strip().lower() != CLEAN]
    eps_list = sorted({check_epsilon(e) for e in epsilons if float(e) > 0})
    conditions = [(CLEAN, 0.0)]
    for attack in dict.fromkeys(wanted):
        conditions += [(attack, e) for e in eps_list]
    return conditions


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def evaluate(model: nn.Module, dataset: ImageSet, attacks: Iterable[str] = ("fgsm",),
             epsilons: Sequence[float] = (), batch_size: int = 64, pgd_steps: int = 10, seed: int = 0,
             device: torch.device | None = None, progress: ProgressFn = ignore_progress) -> list[ConditionResult]:
    """The clean condition first, then every (attack, epsilon); one gradient per batch serves all FGSM epsilons."""
    conditions = conditions_for(attacks, epsilons)
    device = device or _model_device(model)
    k = len(dataset.classes)
    counts = {c: torch.zeros(k * k, dtype=torch.long) for c in conditions}
    changed = dict.fromkeys(conditions, 0)
    batches = max(1, -(-len(dataset) // batch_size))
    with eval_mode(model):
        for b in range(batches):
            sl = slice(b * batch_size, (b + 1) * batch_size)
            x = dataset.floats(sl, device)
            y = dataset.labels[sl].to(device)
            context = AttackContext(model, x, y, seed=seed, batch=b, pgd_steps=pgd_steps)
            clean_pred = context.clean_prediction
            for i, (attack, eps) in enumerate(conditions):
                if attack != CLEAN:  # AutoAttack on a robust model takes minutes: say which condition runs
                    progress(ProgressEvent((b + i / len(conditions)) / batches,
                                           f"{attack_label(attack)} ε={format_epsilon(eps)}: test images "
                                           f"{sl.start + 1}-{min(sl.stop, len(dataset))} of {len(dataset)}"))
                pred = clean_pred if attack == CLEAN else _predict(model, ATTACKS.get(attack).perturb(context, eps))
                counts[(attack, eps)] += torch.bincount((y * k + pred).cpu(), minlength=k * k)
                changed[(attack, eps)] += int((pred != clean_pred).sum())
            progress(ProgressEvent((b + 1) / batches, f"evaluated {min((b + 1) * batch_size, len(dataset))}"
                                   f"/{len(dataset)} test images"))
    return [ConditionResult(attack=a, epsilon=e, confusion=counts[(a, e)].view(k, k).tolist(),
                            classes=dataset.classes, critical=dataset.spec.critical, changed=changed[(a, e)])
            for a, e in conditions]


def accuracy_under_attack(model: nn.Module, dataset: ImageSet, attack: str, eps: float,
                          device: torch.device | None = None, batch_size: int = 64, pgd_steps: int = 10) -> float:
    """One number, for quick checks."""
    return condition_under_attack(model, dataset, attack, eps, device, batch_size, pgd_steps).accuracy


def condition_under_attack(model: nn.Module, dataset: ImageSet, attack: str, eps: float,
                           device: torch.device | None = None, batch_size: int = 64,
                           pgd_steps: int = 10) -> ConditionResult:
    results = evaluate(model, dataset, [attack], [eps] if eps > 0 else [], batch_size=batch_size, device=device,
                       pgd_steps=pgd_steps)
    return results[-1]
