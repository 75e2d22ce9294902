"""Training modes behind one registry: what a model learns from, batch by batch.

A mode is one registration. It may perturb each batch (`perturb`, learned with cross-entropy and an
optional clean mix), bring a loss of its own (`loss`, as TRADES does), or transform the training set
once before training (`prepare`, the study's offline protocol). `defaults` fill the recipe settings a
user leaves unset, so `fgsm` can mean busadv's best FGSM recipe while `fgsm-study` keeps the study's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from busadv.attacks import AttackContext, eval_mode, fgsm, fgsm_random_start, pgd
from busadv.registry import Choice, Registry
from busadv.training.offline import perturb_training_set
from busadv.training.recipe import AdversarialRecipe

if TYPE_CHECKING:
    from busadv.data.imageset import ImageSet
    from busadv.progress import ProgressFn

Perturb = Callable[[nn.Module, torch.Tensor, torch.Tensor, "AdversarialRecipe", float, torch.Generator], torch.Tensor]
# (model, x, y, config, eps, generator, class weights) -> (loss, logits the batch's accuracy is read from)
BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, "AdversarialRecipe", float, torch.Generator,
                      "torch.Tensor | None"], tuple[torch.Tensor, torch.Tensor]]
# (config, training set, progress, the training function) -> the set to train on
Prepare = Callable[["AdversarialRecipe", "ImageSet", "ProgressFn", Callable[..., Any]], "ImageSet"]


@dataclass(frozen=True)
class TrainMode(Choice):
    perturb: Perturb | None = None
    loss: BatchLoss | None = None
    prepare: Prepare | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    cost: Callable[[AdversarialRecipe], float] = lambda config: 1.0  # epoch time relative to standard training
    single_step: bool = False  # learns from one-step (FGSM) perturbations: prone to catastrophic overfitting

    @property
    def adversarial(self) -> bool:
        return self.perturb is not None or self.loss is not None or self.prepare is not None

    @property
    def random_start_default(self) -> bool:
        return bool(self.defaults.get("random_start", False))

    @property
    def attacks_each_batch(self) -> bool:
        """Whether the model is attacked while it learns (so the per-epoch attack watch means something)."""
        return self.perturb is not None or self.loss is not None


MODES: Registry[TrainMode] = Registry("training mode")


def register_mode(mode: TrainMode, replace: bool = False) -> TrainMode:
    return MODES.register(mode, replace=replace)


def attack_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AdversarialRecipe) -> torch.Tensor:
    """The labels an adversarial batch attacks: the true ones (the study) or the model's own (eval mode)."""
    return y if config.adv_labels == "true" else AttackContext(model, x, None).clean_prediction


def _fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AdversarialRecipe, eps: float,
          generator: torch.Generator) -> torch.Tensor:
    labels = y if config.adv_labels == "true" else None  # None: the model's own answer, found in eval mode
    if config.random_start:
        return fgsm_random_start(model, x, labels, eps, generator=generator)
    return fgsm(model, x, labels, eps)


def _pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AdversarialRecipe, eps: float,
         generator: torch.Generator) -> torch.Tensor:
    labels = attack_labels(model, x, y, config)
    return pgd(model, x, labels, eps, steps=config.pgd_steps, random_start=bool(config.random_start),
               generator=generator)


def _trades(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AdversarialRecipe, eps: float,
            generator: torch.Generator, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """TRADES (Zhang et al. 2019): clean cross-entropy + beta * KL(adversarial || clean) predictions.

    The adversarial image maximises the KL term (PGD from a tiny random start, model in eval mode), so the
    model is taught to answer the same inside the eps ball rather than to fit perturbed labels.
    """
    x_adv = x.detach() + 0.001 * torch.randn(x.shape, generator=generator).to(x.device)
    if eps > 0:
        alpha = 2.5 * eps / config.pgd_steps
        with eval_mode(model), torch.enable_grad():
            clean_probs = F.softmax(model(x), dim=1).detach()
            for _ in range(config.pgd_steps):
                x_adv = x_adv.detach().requires_grad_(True)
                kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), clean_probs, reduction="sum")
                (grad,) = torch.autograd.grad(kl, x_adv)
                x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    logits = model(torch.cat([x, x_adv.detach()]))
    clean_logits, adv_logits = logits[: len(y)], logits[len(y):]
    robust = F.kl_div(F.log_softmax(adv_logits, dim=1), F.softmax(clean_logits, dim=1), reduction="batchmean")
    return F.cross_entropy(clean_logits, y, weight=weights) + float(config.trades_beta or 0.0) * robust, clean_logits


STUDY_RECIPE = {"adv_labels": "true", "random_start": False, "clean_mix": 0.0, "warmup_epochs": 0,
                "class_balance": "none"}

STANDARD = register_mode(TrainMode("standard", "Standard training", "learns from the clean images"))
FGSM = register_mode(TrainMode(
    "fgsm", "FGSM adversarial training (busadv's recipe)",
    "learns from FGSM-perturbed images from a random start, mixed with clean images, epsilon warmed up",
    perturb=_fgsm, cost=lambda config: 2.0, single_step=True,
    defaults={"adv_labels": "true", "random_start": True, "clean_mix": 0.5, "warmup_epochs": 3,
              "class_balance": "none"}))
FGSM_STUDY = register_mode(TrainMode(
    "fgsm-study", "FGSM adversarial training as in the study",
    "learns from plain FGSM-perturbed images (true labels, no random start, no clean images): the study's recipe",
    perturb=_fgsm, cost=lambda config: 2.0, single_step=True, defaults=STUDY_RECIPE))
FGSM_OFFLINE = register_mode(TrainMode(
    "fgsm-offline", "FGSM offline, as in the study",
    "perturbs the training set once with a standard model's gradients, then trains a fresh model on that fixed set",
    prepare=perturb_training_set, cost=lambda config: 2.1, single_step=True, defaults=STUDY_RECIPE))
PGD = register_mode(TrainMode(
    "pgd", "PGD adversarial training", "learns from PGD-perturbed images (several steps per batch; slower, stronger)",
    perturb=_pgd, cost=lambda config: 1.0 + config.pgd_steps, defaults={"random_start": True}))
TRADES = register_mode(TrainMode(
    "trades", "TRADES", "clean cross-entropy plus a penalty for answering differently inside the eps ball "
    "(Zhang et al. 2019)", loss=_trades, cost=lambda config: 2.0 + config.pgd_steps, defaults={"trades_beta": 6.0}))
