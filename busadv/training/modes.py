"""Training modes behind one registry: how a batch is perturbed before the model learns from it.

Adding a training recipe is one registration: a `perturb` function (None for standard training) and
its relative cost, which the job page's time estimate uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from busadv.attacks import AttackContext, fgsm, fgsm_random_start, pgd
from busadv.registry import Registry

if TYPE_CHECKING:
    from busadv.training.config import TrainConfig

Perturb = Callable[[nn.Module, torch.Tensor, torch.Tensor, "TrainConfig", float, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class TrainMode:
    name: str
    label: str
    description: str
    perturb: Perturb | None = None       # None: learn from the clean batch
    random_start_default: bool = False
    cost: Callable[[TrainConfig], float] = lambda config: 1.0  # epoch time relative to standard training

    @property
    def adversarial(self) -> bool:
        return self.perturb is not None


MODES: Registry[TrainMode] = Registry("training mode")


def register_mode(mode: TrainMode, replace: bool = False) -> TrainMode:
    return MODES.register(mode, replace=replace)


def attack_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The labels an adversarial batch attacks: the true ones (the study) or the model's own (eval mode)."""
    return y if config.adv_labels == "true" else AttackContext(model, x, None).clean_prediction


def _fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, eps: float,
          generator: torch.Generator) -> torch.Tensor:
    labels = y if config.adv_labels == "true" else None  # None: the model's own answer, found in eval mode
    if config.random_start:
        return fgsm_random_start(model, x, labels, eps, generator=generator)
    return fgsm(model, x, labels, eps)


def _pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, eps: float,
         generator: torch.Generator) -> torch.Tensor:
    labels = attack_labels(model, x, y, config)
    return pgd(model, x, labels, eps, steps=config.pgd_steps, random_start=bool(config.random_start),
               generator=generator)


STANDARD = register_mode(TrainMode("standard", "Standard training", "learns from the clean images"))
FGSM = register_mode(TrainMode(
    "fgsm", "FGSM adversarial training", "learns from FGSM-perturbed images (one gradient step per batch)",
    perturb=_fgsm, cost=lambda config: 2.0))
PGD = register_mode(TrainMode(
    "pgd", "PGD adversarial training", "learns from PGD-perturbed images (several steps per batch; slower, stronger)",
    perturb=_pgd, random_start_default=True, cost=lambda config: 1.0 + config.pgd_steps))
